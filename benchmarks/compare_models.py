"""Benchmark: the models of seed 000's Table 5.1 (plus seed 003's ResNet50 pair) under one budget.

    python benchmarks/compare_models.py --config configs/compare_budget.yaml --out reports/compare \
        [--models simple_cnn vgg unet_classifier resunet_classifier resunet_ecsa_classifier \
                  resunet_fprm_classifier dresunet_classifier resnet50 resnet50_fpn_attention]

    # the mixing ablation: one model, same budget, no mixing vs mixup vs CutMix vs Mosaic
    python benchmarks/compare_models.py --models resunet_fprm_classifier --mixing none mixup cutmix mosaic \
        --out reports/compare_mixing

Each model is trained with the same budget config (only ``model.name`` and ``name`` change) on the
official COVID-CT split, the epoch with the best validation AUC is kept, and the official test split
is scored once. The table has Table 5.1's columns (input size, accuracy, precision, AUC, recall, F1)
with 95% bootstrap intervals, plus parameters, GFLOPs per image, training minutes and inference
images/s on this machine's CPU (batch 16, after warm-up) and on a GPU when one is present. One ROC
plot holds every model. The last two columns are paired bootstrap differences (same test images
resampled for both) in AUC and accuracy against the reference row (``--reference``, default the
first): an interval containing 0 is a tie.

With ``--mixing``, each model is trained once per batch-mixing variant (``none`` is the plain run,
shared with the main table; the others are run folders ``<model>-<variant>`` with
``augment.mixing_prob`` from ``--mixing-prob``). Finished runs are reused by name, so a rerun only
scores; after changing the budget, pass a new ``--runs`` folder (or delete the old runs), or the old
models are scored again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from covidlens.checkpoint import load_checkpoint
from covidlens.data.datasets import dataset_folder, load_dataset
from covidlens.evaluation.evaluate import evaluate
from covidlens.inference import predict_arrays
from covidlens.evaluation.metrics import paired_bootstrap_difference
from covidlens.evaluation.plots import plot_roc
from covidlens.runtime.flops import gmacs
from covidlens.training.config import load_config
from covidlens.training.fit import MODEL_DIR, run_folder, train

TABLE_5_1 = [
    "simple_cnn",
    "vgg",
    "unet_classifier",
    "resunet_classifier",
    "resunet_ecsa_classifier",
    "resunet_fprm_classifier",
    "dresunet_classifier",
]
SEED_003 = ["resnet50", "resnet50_fpn_attention"]
MIXING = ("none", "mixup", "cutmix", "mosaic")


def images_per_second(model: torch.nn.Module, size: int, device: str, batch: int = 16, repeats: int = 5) -> float:
    model = model.to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        for _ in range(2):
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/compare_budget.yaml")
    parser.add_argument("--models", nargs="+", default=TABLE_5_1 + SEED_003)
    parser.add_argument("--mixing", nargs="+", default=["none"], choices=MIXING, help="batch-mixing variants to train")
    parser.add_argument("--mixing-prob", type=float, default=0.5, help="share of batches mixed (variants other than none)")
    parser.add_argument("--reference", default=None, help="row the differences are taken against (default: the first)")
    parser.add_argument("--out", default="reports/compare")
    parser.add_argument("--runs", default="runs/compare")
    parser.add_argument("--data", default=None, help="data root (default $COVIDLENS_DATA)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()
    if not dataset_folder("covid-ct", args.data).is_dir():
        print(f"skipped: COVID-CT not found at {dataset_folder('covid-ct', args.data)}", file=sys.stderr)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = load_dataset("covid-ct", args.data)
    test = table.split("test")
    y = np.array([int(s.label == table.positive_index) for s in test])
    rows, curves = [], {}
    for name in args.models:
        for mixing in args.mixing:
            label = name if mixing == "none" else f"{name}-{mixing}"
            overrides = [f"name={label}", f"model.name={name}", f"trainer.out_dir={args.runs}", *args.overrides]
            if mixing != "none":
                overrides += [f"augment.mixing={mixing}", f"augment.mixing_prob={args.mixing_prob}"]
            if args.data:
                overrides.append(f"data.root={args.data}")
            rows.append(run_one(load_config(args.config, overrides), label, test, out))
            curves[label] = (y, rows[-1].pop("prob"))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "test"}), flush=True)
    reference = args.reference or rows[0]["model"]
    if reference not in curves:
        print(f"error: reference {reference!r} is not one of the rows", file=sys.stderr)
        return 2
    for row in rows:
        for metric in ("auc", "accuracy"):
            row[f"delta_{metric}"] = paired_bootstrap_difference(y, curves[row["model"]][1], curves[reference][1], metric)
    plot_roc(curves, out / "roc_all.png", title="COVID-CT official test split")
    lines = [
        "| model | input | accuracy | precision | AUC | recall | F1 | params (M) | GFLOPs | train min | CPU img/s "
        f"| GPU img/s | ΔAUC vs {reference} | Δacc vs {reference} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, ci = r["test"]["metrics"], r["test"]["ci95"]
        cell = lambda k: "undefined" if np.isnan(m[k]) else f"{m[k]:.3f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]"  # noqa: E731
        delta = lambda d: "-" if r["model"] == reference else f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"  # noqa: E731
        gpu = f"{r['gpu_images_per_s']:.0f}" if r["gpu_images_per_s"] else "-"
        lines.append(
            f"| {r['model']} | {r['input_size']} | {cell('accuracy')} | {cell('precision')} | {cell('auc')} | "
            f"{cell('recall')} | {cell('f1')} | {r['params_m']:.2f} | {r['gflops']:.2f} | {r['train_minutes']:.1f} | "
            f"{r['cpu_images_per_s']:.1f} | {gpu} | {delta(r['delta_auc'])} | {delta(r['delta_accuracy'])} |"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))
    return 0


def run_one(config, label: str, test, out: Path) -> dict:
    """Train ``config`` unless its run already finished, score the test split, time the model."""
    run_dir = run_folder(config)
    if not (run_dir / MODEL_DIR / "model.safetensors").is_file():
        train(config, resume=(run_dir / "checkpoints" / "last.ckpt").is_file(), progress=False)
    ckpt = load_checkpoint(run_dir / MODEL_DIR)
    size = ckpt.info.input_size
    result = evaluate([ckpt], "covid-ct", config.data.root, "test", out_dir=out / label)
    return {
        "model": label,
        "mixing": config.augment.mixing,
        "input_size": size,
        "params_m": sum(p.numel() for p in ckpt.model.parameters()) / 1e6,
        "gflops": gmacs(ckpt.model, size, ckpt.info.in_channels),
        "train_minutes": float((run_dir / "train_seconds.txt").read_text()) / 60,
        "cpu_images_per_s": images_per_second(ckpt.model, size, "cpu"),
        "gpu_images_per_s": images_per_second(ckpt.model, size, "cuda") if torch.cuda.is_available() else None,
        "test": result["operating_points"]["threshold_0.5"],
        "prob": predict_arrays(ckpt, test),
    }


if __name__ == "__main__":
    raise SystemExit(main())
