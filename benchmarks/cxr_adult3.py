"""Benchmark: issue 24 item 3, an adult 3-class chest X-ray model (normal / other-pneumonia / COVID-19).

    python benchmarks/cxr_adult3.py --out reports/cxr_adult3 [--config configs/cxr_adult3_lite0.yaml]
        [--runs DIR] [--data-root DIR] [--bootstrap 2000] [--set KEY=VALUE ...]

Trains ``configs/cxr_adult3_lite0.yaml`` on ``cxr-adult-3class`` (reused when its run folder holds a
model) and scores the test split with ``covidlens.evaluation.evaluate``: the 3-class precision / recall
matrix, macro-F1 and the one-vs-rest AUC of COVID-19, with intervals that resample patients
(covid-chestxray) and near-duplicate groups (covid19-radiography normals), and the calibration of
P(COVID-19).

CONFOUNDER, said beside every figure: the normals come from another collection than the pneumonias,
so "normal against pneumonia" can be "covid19-radiography against covid-chestxray". The contrast without
that confounder is COVID-19 against the other pneumonias *inside* covid-chestxray: the script reports its
AUC on the test images of that collection alone, scoring each by P(COVID-19) / (P(COVID-19) +
P(other-pneumonia)), with patient-resampled intervals.

Writes ``results.json`` and ``results.md`` under ``--out`` (and evaluate's report folder under
``--out/test``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from covidlens.checkpoint import load_checkpoint
from covidlens.data.datasets import load_dataset
from covidlens.evaluation.evaluate import evaluate
from covidlens.evaluation.metrics import bootstrap_ci, json_safe
from covidlens.inference import class_probabilities
from covidlens.training.config import load_config
from covidlens.training.fit import MODEL_DIR, run_folder, train

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "cxr_adult3_lite0.yaml"
CONFOUNDER = (
    "CONFOUNDER: the normals come from covid19-radiography, every pneumonia from covid-chestxray, so the "
    "normal-against-pneumonia figures can be source against source; the COVID-19 against other-pneumonia "
    "AUC inside covid-chestxray has no such confounder."
)


def within_collection(ckpt, table, split: str, n_boot: int) -> dict:
    """COVID-19 against other-pneumonia on the covid-chestxray images of ``split`` alone."""
    covid, other = table.classes.index("COVID-19"), table.classes.index("other-pneumonia")
    samples = [s for s in table.split(split) if s.label in (covid, other) and s.meta.get("source") == "covid-chestxray"]
    probs = class_probabilities(ckpt, samples)
    order = [ckpt.info.classes.index(table.classes[k]) for k in (covid, other)]
    pair = probs[:, order]
    score = pair[:, 0] / np.clip(pair.sum(axis=1), 1e-12, None)
    y = np.array([int(s.label == covid) for s in samples])
    groups = [s.group for s in samples]
    ci = bootstrap_ci(y, score, 0.5, n_boot=n_boot, groups=groups)
    from sklearn.metrics import roc_auc_score

    return {
        "images": len(samples), "covid": int(y.sum()), "other_pneumonia": int((1 - y).sum()),
        "patients": len(set(groups)), "auc": float(roc_auc_score(y, score)), "auc_ci95": list(ci["auc"]),
    }


def report(result: dict) -> str:
    m = result["test"]["multiclass"]
    names = result["classes"]
    lines = [
        "# Adult 3-class CXR: normal / other-pneumonia / COVID-19", "", f"**{CONFOUNDER}**", "",
        f"Test split: {result['test']['class_counts']}; intervals resample {result['test']['bootstrap_resamples_what']}.",
        f"Training: {result['train_minutes']:.1f} min, {result['epochs']} epochs at {result['input_size']} px.", "",
        "| class | precision | recall | F1 | one-vs-rest AUC |", "|---|---|---|---|---|",
    ]

    def cell(key: str) -> str:
        value, ci = m["metrics"].get(key), m["ci95"].get(key)
        if value is None or value != value:
            return "n/a"
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else f"{value:.3f}"

    for n in names:
        lines.append(f"| {n} | {cell('precision/' + n)} | {cell('recall/' + n)} | {cell('f1/' + n)} | {cell('auc/' + n)} |")
    lines += ["", f"Accuracy {cell('accuracy')}; **macro-F1 {cell('macro_f1')}**; macro AUC {cell('macro_auc')}.", "",
              "Confusion matrix (rows true, columns predicted, most probable class):", "",
              "| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {names[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(m["confusion_matrix"])]
    w = result["within_collection"]
    lines += ["", f"**Inside covid-chestxray (no source confounder): COVID-19 against other pneumonia AUC "
              f"{w['auc']:.3f} [{w['auc_ci95'][0]:.3f}, {w['auc_ci95'][1]:.3f}]** on {w['covid']} COVID-19 and "
              f"{w['other_pneumonia']} other-pneumonia test images ({w['patients']} patients).", ""]
    cal = result["test"]["calibration"]
    metrics = cal.get("metrics", cal)
    lines.append("Calibration of the stored model on test: "
                 + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)) + ".")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--out", type=Path, default=Path("reports/cxr_adult3"))
    parser.add_argument("--runs", type=Path, default=None, help="run folder (default OUT/runs)")
    parser.add_argument("--data-root", type=Path, help="folder holding cxr/ (default $COVIDLENS_DATA)")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    runs = args.runs or args.out / "runs"
    values = {"trainer.out_dir": str(runs)}
    if args.data_root:
        values["data.root"] = str(args.data_root)
    config = load_config(args.config, args.overrides, values)
    run_dir = run_folder(config)
    print(CONFOUNDER, flush=True)
    if not (run_dir / MODEL_DIR / "model.json").is_file():
        print(f"== training {config.name} on {config.data.dataset} ({config.optim.epochs} epochs)", flush=True)
        train(config, progress=False)
    ckpt = load_checkpoint(run_dir / MODEL_DIR)
    root = str(args.data_root) if args.data_root else None
    table = load_dataset(config.data.dataset, root)
    test = evaluate([ckpt], config.data.dataset, root, split="test", n_boot=args.bootstrap, out_dir=args.out / "test")
    result = {
        "note": CONFOUNDER, "classes": ckpt.info.classes, "run": str(ckpt.path),
        "train_minutes": float((run_dir / "train_seconds.txt").read_text()) / 60,
        "epochs": config.optim.epochs, "input_size": config.model.input_size,
        "test": test, "within_collection": within_collection(ckpt, table, "test", args.bootstrap),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(json_safe(result), indent=2) + "\n")
    text = report(result)
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
