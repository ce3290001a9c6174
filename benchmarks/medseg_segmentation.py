"""Benchmark: every registered segmentation model on MedSeg (Inf-Net's split) under one CPU budget.

    python benchmarks/medseg_segmentation.py --data-root ../shared/data --out reports/medseg \
        [--models unet_seg ...] [--minutes 60] [--threads 2]

Budget: each model trains for at most ``--minutes`` (default 60) of wall-clock training on
``--threads`` CPU threads (default 2), once on the binary infection masks (``configs/medseg_unet.yaml``)
and once on the 3-class masks (``configs/medseg_unet_multiclass.yaml``); only ``model.name`` (and the
model's own ``model.kwargs``, which stay those of the config only for the config's model) change
between models. A run stops at the end of the epoch in which its budget runs out, or after
``optim.epochs``; the cosine schedule is planned over ``optim.epochs``, so give an epoch count the
budget can hold. The best epoch is chosen on the validation slices carved from train (``data.val_slices``);
the 48 test slices are scored once, at their own resolution: mean Dice over slices with its 95%
bootstrap interval (the headline; Inf-Net 0.682, Semi-Inf-Net 0.739 on the same slices), IoU,
sensitivity and specificity, and Dice of ground-glass and consolidation from the 3-class run.

Finished runs are reused by name (``<runs>/<model>-binary``, ``<model>-multiclass``): a rerun only scores.
Writes ``results.md`` and ``results.json`` under ``--out`` and one evaluation folder per run (overlays,
per-slice CSV).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch

from covidlens.errors import CovidlensError
from covidlens.evaluation.metrics import json_safe
from covidlens.evaluation.segmentation import evaluate_segmentation
from covidlens.models import get_model_spec, list_models
from covidlens.training.config import load_config
from covidlens.training.fit import MODEL_DIR, run_folder, train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"binary": REPO / "configs" / "medseg_unet.yaml", "multiclass": REPO / "configs" / "medseg_unet_multiclass.yaml"}
ANCHORS = "Inf-Net 0.682, Semi-Inf-Net 0.739 (Fan et al., IEEE TMI 2020), same 48 test slices"


class TimeBudget(L.Callback):
    """Stop training at the end of the epoch in which ``seconds`` of training have passed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = 0.0

    def on_train_start(self, trainer, module):
        self.started = time.time()

    def on_train_epoch_end(self, trainer, module):
        if time.time() - self.started >= self.seconds:
            print(f"time budget of {self.seconds / 60:.1f} min reached after epoch {trainer.current_epoch + 1}", flush=True)
            trainer.should_stop = True


def run_config(kind: str, model: str, args):
    base = load_config(CONFIGS[kind])
    values = {
        "name": f"{model}-{kind}",
        "trainer.out_dir": str(args.runs),
        "trainer.accelerator": "cpu",
        "model.name": model,
    }
    if not any(item.split("=", 1)[0].strip() == "model.pretrained" for item in args.overrides):
        # Pretrained where the registry knows a source, unless --set model.pretrained=... says otherwise
        # (torchvision's DeepLabV3 weights download at run time, which an offline machine cannot do).
        values["model.pretrained"] = bool(get_model_spec(model).pretrained_source)
    if args.data_root:
        values["data.root"] = str(args.data_root)
    if model != base.model.name:
        values["model.kwargs"] = {}
    return load_config(CONFIGS[kind], args.overrides, values)


def train_and_score(kind: str, model: str, args) -> dict:
    config = run_config(kind, model, args)
    run_dir = run_folder(config)
    if not (run_dir / MODEL_DIR / "model.json").is_file():
        print(f"== training {config.name} (budget {args.minutes:g} min on {args.threads} threads)", flush=True)
        train(config, callbacks=[TimeBudget(args.minutes * 60)], progress=False)
    seconds = float((run_dir / "train_seconds.txt").read_text())
    result = evaluate_segmentation(
        run_dir / MODEL_DIR, config.data.dataset, config.data.root, "test", args.out / config.name, args.bootstrap
    )
    result["train_minutes"] = seconds / 60
    return result


def _cell(result: dict, key: str) -> str:
    value, (lo, hi) = result["metrics"][key], result["ci95"][key]
    if value is None or value != value or lo is None or hi is None:  # undefined, or null once stored as JSON
        return "n/a"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def table(results: dict[str, dict[str, dict]]) -> str:
    rows = [
        "| model | train min (binary / 3-class) | mean Dice | IoU | sensitivity | specificity | pooled Dice "
        "| ground-glass Dice | consolidation Dice |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, by_kind in results.items():
        b, m = by_kind.get("binary"), by_kind.get("multiclass")
        cells = [f"{b['train_minutes']:.1f}" if b else "-", f"{m['train_minutes']:.1f}" if m else "-"]
        binary = [_cell(b, f"mean_{k}/infection") for k in ("dice", "iou", "sensitivity", "specificity")] if b else ["-"] * 4
        pooled = [_cell(b, "pooled_dice/infection")] if b else ["-"]
        multi = [_cell(m, f"mean_dice/{c}") for c in ("ground-glass", "consolidation")] if m else ["-", "-"]
        rows.append(f"| {model} | {' / '.join(cells)} | " + " | ".join(binary + pooled + multi) + " |")
    return "\n".join(rows)


def merge_previous(path: Path, results: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """Rows of earlier invocations with the same --out (other models or mask kinds, other overrides)
    stay in the table; this invocation's runs replace theirs."""
    merged: dict[str, dict[str, dict]] = {}
    if path.is_file():
        try:
            merged = json.loads(path.read_text())
        except json.JSONDecodeError:
            merged = {}
    for model, by_kind in results.items():
        merged.setdefault(model, {}).update(by_kind)
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, help="folder holding ct/medseg-infnet (default $COVIDLENS_DATA)")
    parser.add_argument("--out", type=Path, default=Path("reports/medseg"), help="report folder")
    parser.add_argument("--runs", type=Path, default=None, help="run folder (default OUT/runs)")
    parser.add_argument("--models", nargs="+", help="segmentation models (default: every registered one)")
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget per run in minutes (default 60)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for training and scoring (default 2)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--only", choices=["binary", "multiclass"], help="train only one of the two mask kinds")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every run, e.g. --set model.input_size=64 (repeatable)")
    args = parser.parse_args(argv)
    args.runs = args.runs or args.out / "runs"
    torch.set_num_threads(args.threads)
    models = args.models or list_models(task="segmentation")
    if not models:
        print("no segmentation model is registered", file=sys.stderr)
        return 2
    kinds = [args.only] if args.only else ["binary", "multiclass"]
    results: dict[str, dict[str, dict]] = {}
    failures: dict[str, str] = {}
    for model in models:
        try:
            results[model] = {kind: train_and_score(kind, model, args) for kind in kinds}
        except CovidlensError as exc:  # e.g. ImageNet weights not cached on an offline machine
            print(f"{model}: not benchmarked: {exc}", file=sys.stderr, flush=True)
            failures[model] = str(exc)
    args.out.mkdir(parents=True, exist_ok=True)
    results = merge_previous(args.out / "results.json", results)
    text = [
        "# Lesion segmentation on MedSeg (Inf-Net split), 48 test slices",
        "",
        f"Budget of this invocation: at most {args.minutes:g} min of training per run on {args.threads} CPU threads "
        "(rows kept from earlier invocations with the same --out had their own; see each run's config.yaml). "
        f"Mean over slices with 95% bootstrap intervals ({args.bootstrap} resamples of slices). "
        f"Anchors: {ANCHORS}.",
        "",
        table(results),
        "",
        *[f"- {model} not benchmarked: {reason}" for model, reason in failures.items()],
    ]
    (args.out / "results.md").write_text("\n".join(text))
    (args.out / "results.json").write_text(json.dumps(json_safe(results), indent=2) + "\n")
    print("\n".join(text))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
