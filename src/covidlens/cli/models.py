"""``covidlens models``: the registered architectures, and the store of ready-to-use named models.

``covidlens models`` alone lists the registry as it always did; ``list``, ``card``, ``pack`` and
``pull`` work on the store (:mod:`covidlens.store`).
"""

from __future__ import annotations

import json

from covidlens.kinds import MODALITIES, TASKS
from covidlens.store.store import NAMES as STORE_NAMES


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the registered models; list, pack, pull and read the store's models")
    p.add_argument("--task", choices=TASKS, help="only models of this task")
    p.add_argument("--modality", choices=MODALITIES, help="only models meant for this modality")
    p.set_defaults(run=run_registry)
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    s = actions.add_parser("list", help="registered architectures and installed store models side by side")
    s.add_argument("--task", choices=TASKS, help="only architectures of this task")
    s.add_argument("--modality", choices=MODALITIES, help="only architectures meant for this modality")
    s.set_defaults(run=run_list)

    s = actions.add_parser("card", help="print the model card of an installed store model")
    s.add_argument("name", choices=STORE_NAMES, help="the store model whose card to print")
    s.set_defaults(run=run_card)

    s = actions.add_parser("pack", help="write NAME.tar.gz of an installed model and its SHA-256, for publishing")
    s.add_argument("name", choices=STORE_NAMES, help="the installed store model to pack")
    s.add_argument("--out", required=True, help="folder for NAME.tar.gz and NAME.tar.gz.sha256")
    s.set_defaults(run=run_pack)

    s = actions.add_parser("build", help="train named models from the committed recipes (configs/store/) into the store")
    s.add_argument("name", nargs="?", choices=STORE_NAMES, help="the store model to build (or --all)")
    s.add_argument("--all", action="store_true", help="every model with a recipe, in dependency order")
    s.add_argument("--recipe", choices=("demo", "full"), default="demo",
                   help="demo: minutes on a 2-core CPU; full: the benchmarked recipe (default demo)")
    s.add_argument("--force", action="store_true", help="rebuild a model that is already installed")
    s.add_argument("--data-root", help="folder holding the data sets (default: $COVIDLENS_DATA)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set optim.epochs=1 (repeatable)")
    s.set_defaults(run=run_build)

    s = actions.add_parser("pull", help="download a model from a manifest, verify its SHA-256, install it")
    s.add_argument("name", choices=STORE_NAMES, help="the store model to download and install")
    s.add_argument("--manifest", help="manifest file or http(s) URL (default: the one shipped with covidlens)")
    s.add_argument("--force", action="store_true", help="replace an installed model")
    s.set_defaults(run=run_pull)


def run_build(args) -> int:
    from covidlens.errors import CovidlensError
    from covidlens.store.build import build, build_all

    extra = list(args.overrides) + ([f"data.root={args.data_root}"] if args.data_root else [])
    if args.all == bool(args.name):
        raise CovidlensError("name one model to build, or pass --all.")
    if args.all:
        build_all(args.recipe, args.force, extra)
    else:
        build(args.name, args.recipe, args.force, extra)
    return 0


def run_registry(args) -> int:
    from covidlens.models import get_model_spec, list_models

    for name in list_models(task=args.task, modality=args.modality):
        spec = get_model_spec(name)
        weights = spec.pretrained_source or "from scratch"
        print(f"{name:<26} {spec.task:<14} {'/'.join(spec.modalities):<7} {spec.input_size:>4}px  "
              f"{weights:<45} {spec.description}")
    return 0


def run_list(args) -> int:
    from covidlens.store import store_entries, store_root

    print("Registered architectures")
    run_registry(args)
    print(f"\nStore models ({store_root()})")
    print(f"{'name':<15} {'installed':<9} {'architecture':<26} {'data set':<32} {'built':<20} card")
    for e in store_entries():
        print(f"{e.name:<15} {'yes' if e.installed else 'no':<9} {e.architecture or '-':<26} {e.dataset or '-':<32} "
              f"{e.built or '-':<20} {e.card or '-'}")
    return 0


def run_card(args) -> int:
    from covidlens.store import is_installed, model_dir, not_installed_message

    card = model_dir(args.name) / "card.md"
    if not is_installed(args.name):
        print(not_installed_message(args.name) + ".")
    elif not card.is_file():
        print(f"the installed {args.name} model has no card; rebuild it with 'covidlens models build {args.name} --force'.")
    else:
        print(card.read_text(), end="")
    return 0


def run_pack(args) -> int:
    from covidlens.store import pack_model

    archive, digest = pack_model(args.name, args.out)
    print(f"{digest}  {archive}")
    print(f"manifest entry: {json.dumps({args.name: {'url': 'URL', 'sha256': digest, 'size': archive.stat().st_size}})}")
    return 0


def run_pull(args) -> int:
    from covidlens.errors import CovidlensError
    from covidlens.store import is_installed, pull

    if is_installed(args.name) and not args.force:
        raise CovidlensError(f"a {args.name} model is already installed; pass --force to replace it.")
    folder = pull(args.name, args.manifest)
    print(f"installed {args.name} in {folder} (SHA-256 verified, checkpoint loaded)")
    return 0
