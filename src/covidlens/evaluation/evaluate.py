"""``evaluate``: score one or more checkpoints on a split and write a report folder.

Several checkpoints are evaluated as an ensemble (their probabilities averaged). Two operating points
are reported: the conventional 0.5, and the threshold that reached the target sensitivity on the
validation split (chosen there; when the validation split itself is scored the report says so).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from covidlens.checkpoint import Checkpoint, load_checkpoint
from covidlens.data.datasets import is_covid_class, load_dataset
from covidlens.errors import CovidlensError
from covidlens.evaluation.metrics import METRICS, binary_metrics, bootstrap_ci, confusion, threshold_for_sensitivity
from covidlens.inference import predict_arrays


def ensemble_probability(checkpoints: list[Checkpoint], samples, tta: bool | None = None) -> np.ndarray:
    probs = [predict_arrays(c, samples, tta=c.info.tta if tta is None else tta) for c in checkpoints]
    return np.mean(probs, axis=0)


def evaluate(
    checkpoints: list[str | Path] | list[Checkpoint],
    dataset: str,
    root: str | None = None,
    split: str = "test",
    tta: bool | None = None,
    out_dir: str | Path | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Metrics with 95% bootstrap intervals at both operating points; writes a report if ``out_dir``."""
    if not checkpoints:
        raise CovidlensError("evaluate needs at least one checkpoint.")
    if n_boot < 10:
        raise CovidlensError(f"the bootstrap needs at least 10 resamples, got {n_boot}.")
    ckpts = [c if isinstance(c, Checkpoint) else load_checkpoint(c) for c in checkpoints]
    info = ckpts[0].info
    for c in ckpts[1:]:
        if c.info.classes != info.classes:
            raise CovidlensError(f"checkpoints disagree on classes: {info.classes} vs {c.info.classes}.")
    if info.num_outputs != 1:
        raise CovidlensError("evaluate currently scores binary models (one output logit).")
    table = load_dataset(dataset, root)
    if len(table.classes) != 2:
        raise CovidlensError(
            f"data set {table.name!r} has classes {', '.join(table.classes)}; a binary model needs two "
            f"(its positive class, {info.classes[info.positive_index]}, matched to the data's {table.classes[-1]!r})."
        )
    data_pos, model_pos = table.classes[table.positive_index], info.classes[info.positive_index]
    if is_covid_class(data_pos) != is_covid_class(model_pos):
        raise CovidlensError(
            f"the model's positive class is {model_pos!r} but the data's would be {data_pos!r}; name the "
            "COVID class folder or label 'covid' so the two line up."
        )
    samples = table.split(split)
    y = np.array([int(s.label == table.positive_index) for s in samples])
    prob = ensemble_probability(ckpts, samples, tta)

    target = info.target_sensitivity or 0.95
    same_tta = tta is None or tta == info.tta
    val = [s for s in table.samples if s.split == "val"]
    if len(ckpts) == 1 and info.sensitivity_threshold is not None and same_tta:
        sens_threshold, source = info.sensitivity_threshold, "validation split at training time"
    elif val and any(s.label == table.positive_index for s in val):
        y_val = np.array([int(s.label == table.positive_index) for s in val])
        sens_threshold = threshold_for_sensitivity(y_val, ensemble_probability(ckpts, val, tta), target)
        source = "validation split"
    else:
        sens_threshold, source = None, "nowhere: the data has no validation split with positives"
    if split == "val" and sens_threshold is not None:
        source += " (the split being scored, so this operating point is optimistic)"
    operating = [("threshold_0.5", 0.5)]
    if sens_threshold is not None:
        operating.append((f"sensitivity_{target:g}", sens_threshold))
    points = {}
    for key, threshold in operating:
        values = binary_metrics(y, prob, threshold)
        ci = bootstrap_ci(y, prob, threshold, n_boot=n_boot, seed=seed)
        points[key] = {
            "threshold": float(threshold),
            "metrics": values,
            "ci95": {k: list(v) for k, v in ci.items()},
            "confusion_matrix": confusion(y, prob, threshold).tolist(),
        }
    result = {
        "dataset": dataset,
        "split": split,
        "n_images": int(len(y)),
        "n_positive": int(y.sum()),
        "classes": info.classes,
        "checkpoints": [str(c.path) for c in ckpts],
        "models": [c.info.model for c in ckpts],
        "tta": tta if tta is not None else [c.info.tta for c in ckpts],
        "sensitivity_threshold_source": source,
        "bootstrap_resamples": n_boot,
        "operating_points": points,
    }
    if out_dir is not None:
        write_report(result, samples, y, prob, Path(out_dir))
    return result


def format_table(result: dict) -> str:
    """Markdown table: one row per operating point, each metric as 'value [low, high]'."""
    head = "| operating point | threshold | " + " | ".join(METRICS) + " |"
    rule = "|" + "---|" * (len(METRICS) + 2)
    rows = [head, rule]
    for key, point in result["operating_points"].items():
        cells = [f"{point['metrics'][m]:.3f} [{point['ci95'][m][0]:.3f}, {point['ci95'][m][1]:.3f}]" for m in METRICS]
        rows.append(f"| {key} | {point['threshold']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def write_report(result: dict, samples, y, prob, out_dir: Path) -> None:
    from covidlens.evaluation.plots import plot_confusion, plot_roc

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    neg, pos = result["classes"][0], result["classes"][1]
    text = [
        f"# Evaluation on {result['dataset']} / {result['split']} ({result['n_images']} images, "
        f"{result['n_positive']} {pos})",
        "",
        f"Checkpoints: {', '.join(result['checkpoints'])}",
        "",
        f"Values with 95% percentile-bootstrap intervals over images ({result['bootstrap_resamples']} resamples). The sensitivity "
        f"operating point was chosen on the {result['sensitivity_threshold_source']}.",
        "",
        format_table(result),
        "",
    ]
    for key, point in result["operating_points"].items():
        (tn, fp), (fn, tp) = point["confusion_matrix"]
        text += [f"Confusion matrix at {key} (rows true, columns predicted):", "",
                 f"| | pred {neg} | pred {pos} |", "|---|---|---|",
                 f"| true {neg} | {tn} | {fp} |", f"| true {pos} | {fn} | {tp} |", ""]
    (out_dir / "metrics.md").write_text("\n".join(text))
    with (out_dir / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "probability"])
        for sample, label, p in zip(samples, y, prob):
            writer.writerow([str(sample.path), int(label), f"{p:.6f}"])
    plot_roc({"model": (y, prob)}, out_dir / "roc.png", title=f"ROC on {result['dataset']} {result['split']}")
    for key, point in result["operating_points"].items():
        plot_confusion(np.array(point["confusion_matrix"]), [neg, pos], out_dir / f"confusion_{key}.png",
                       title=f"{key} (t = {point['threshold']:.3f})")
