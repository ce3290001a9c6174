"""Benchmark: train configurations on the official COVID-CT split and score them on val and test.

    python benchmarks/covid_ct_accuracy.py configs/covid_ct_lite0_b.yaml [more configs] \
        --out reports/bench [--ensemble]

For every config: train it (skipped when its run folder already holds a model), record the training
wall time, evaluate on the validation split (used for choosing between configurations) and on the
203-image official test split (reported, never used for choosing). With --ensemble the checkpoints
of all the given configs are also scored as one averaged ensemble. Writes ``summary.md`` and
``summary.json`` under --out. Needs the COVID-CT data under $COVIDLENS_DATA (or --data).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from covidlens.data.datasets import dataset_folder
from covidlens.evaluation.evaluate import evaluate
from covidlens.training.config import load_config
from covidlens.training.fit import MODEL_DIR, run_folder, train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--out", default="reports/bench")
    parser.add_argument("--data", default=None, help="data root (default $COVIDLENS_DATA)")
    parser.add_argument("--runs", default="runs/bench", help="where the training runs go")
    parser.add_argument("--ensemble", action="store_true")
    args = parser.parse_args()

    if not dataset_folder("covid-ct", args.data).is_dir():
        print(f"skipped: COVID-CT not found at {dataset_folder('covid-ct', args.data)}", file=sys.stderr)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    rows, models = [], []
    for config_path in args.configs:
        overrides = [f"trainer.out_dir={args.runs}"] + ([f"data.root={args.data}"] if args.data else [])
        config = load_config(config_path, overrides)
        run_dir = run_folder(config)
        if not (run_dir / MODEL_DIR / "model.safetensors").is_file():
            started = time.time()
            train(config, resume=(run_dir / "checkpoints" / "last.ckpt").is_file(), progress=False)
            print(f"{config.name}: trained in {time.time() - started:.0f} s", flush=True)
        seconds = float((run_dir / "train_seconds.txt").read_text())
        model = run_dir / MODEL_DIR
        models.append(model)
        val = evaluate([model], "covid-ct", args.data, "val", n_boot=200)
        test = evaluate([model], "covid-ct", args.data, "test", out_dir=out / config.name)
        rows.append({"name": config.name, "config": config_path, "train_seconds": seconds, "val": val, "test": test})
        print(json.dumps({"name": config.name, "val_auc": val["operating_points"]["threshold_0.5"]["metrics"]["auc"],
                          "test": test["operating_points"]["threshold_0.5"]["metrics"]}), flush=True)
    if args.ensemble and len(models) > 1:
        val = evaluate(models, "covid-ct", args.data, "val", n_boot=200)
        test = evaluate(models, "covid-ct", args.data, "test", out_dir=out / "ensemble")
        seconds = sum(r["train_seconds"] for r in rows)
        rows.append({"name": "ensemble(" + " + ".join(r["name"] for r in rows) + ")", "config": "+".join(args.configs),
                     "train_seconds": seconds, "val": val, "test": test})
    write_summary(rows, out, machine)
    return 0


def write_summary(rows: list[dict], out: Path, machine: str) -> None:
    def cell(point, metric):
        m, (lo, hi) = point["metrics"][metric], point["ci95"][metric]
        return f"{m:.3f} [{lo:.3f}, {hi:.3f}]"

    lines = [f"Machine: {machine}", "",
             "| configuration | train min | val AUC | val acc | test accuracy | test precision | test recall | test specificity | test F1 | test AUC |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        v = r["val"]["operating_points"]["threshold_0.5"]["metrics"]
        t = r["test"]["operating_points"]["threshold_0.5"]
        lines.append(f"| {r['name']} | {r['train_seconds'] / 60:.1f} | {v['auc']:.3f} | {v['accuracy']:.3f} | "
                     + " | ".join(cell(t, m) for m in ("accuracy", "precision", "recall", "specificity", "f1", "auc")) + " |")
    lines += ["", "At the validation-chosen sensitivity operating point:", "",
              "| configuration | threshold | test sensitivity | test specificity | test accuracy |", "|---|---|---|---|---|"]
    for r in rows:
        key = [k for k in r["test"]["operating_points"] if k.startswith("sensitivity")][0]
        t = r["test"]["operating_points"][key]
        lines.append(f"| {r['name']} | {t['threshold']:.3f} | {cell(t, 'recall')} | {cell(t, 'specificity')} | {cell(t, 'accuracy')} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
