"""``covidlens models``: the registered models with their task, modalities and weights."""

from __future__ import annotations

from covidlens.kinds import MODALITIES, TASKS


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("--task", choices=TASKS, help="only models of this task")
    p.add_argument("--modality", choices=MODALITIES, help="only models meant for this modality")
    p.set_defaults(run=run)


def run(args) -> int:
    from covidlens.models import get_model_spec, list_models

    for name in list_models(task=args.task, modality=args.modality):
        spec = get_model_spec(name)
        weights = spec.pretrained_source or "from scratch"
        print(f"{name:<26} {spec.task:<14} {'/'.join(spec.modalities):<7} {spec.input_size:>4}px  "
              f"{weights:<45} {spec.description}")
    return 0
