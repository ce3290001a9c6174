"""``evaluate``: score one or more checkpoints on a split and write a report folder.

Several checkpoints are evaluated as an ensemble (their probabilities averaged). A model with a named
positive class gets two operating points: the conventional 0.5, and the threshold that reached the
target sensitivity on the validation split (chosen there; when the validation split itself is scored
the report says so). A K-class model gets per-class precision, recall (sensitivity), F1 and
one-vs-rest AUC, their macro averages and the K x K confusion matrix; when it also names a positive
class, that class's one-vs-rest operating points are reported as for a binary model.

Intervals resample patients (or source figures, near-duplicate groups) wherever the data set knows
them, images only where it does not; the report says which.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from covidlens.checkpoint import Checkpoint, ModelInfo, load_checkpoint
from covidlens.data.datasets import SampleTable, is_covid_class, load_dataset
from covidlens.errors import CovidlensError
from covidlens.evaluation.metrics import (
    METRICS,
    binary_metrics,
    bootstrap_ci,
    confusion,
    json_safe,
    multiclass_bootstrap_ci,
    multiclass_confusion,
    multiclass_metrics,
)
from covidlens.evaluation.operating_points import choose_for_sensitivity
from covidlens.inference import class_probabilities


def ensemble_probabilities(checkpoints: list[Checkpoint], samples, tta: bool | None = None) -> np.ndarray:
    """N x K class probabilities averaged over the checkpoints."""
    probs = [class_probabilities(c, samples, tta=c.info.tta if tta is None else tta) for c in checkpoints]
    return np.mean(probs, axis=0)


def _same_class(a: str, b: str) -> bool:
    return a.lower() == b.lower() or (is_covid_class(a) and is_covid_class(b))


def parse_class_renames(items: list[str] | None) -> dict[str, str]:
    """``DATA=MODEL`` strings (``--class-map NonCOVID=Normal``) as a mapping of data class to model class."""
    renames: dict[str, str] = {}
    for item in items or []:
        data, sep, model = item.partition("=")
        if not sep or not data.strip() or not model.strip():
            raise CovidlensError(f"--class-map {item!r} must read DATA_CLASS=MODEL_CLASS, e.g. NonCOVID=Normal.")
        renames[data.strip()] = model.strip()
    return renames


def class_map(info: ModelInfo, table: SampleTable, renames: dict[str, str] | None = None) -> list[int]:
    """For each class of the data, the index of the model class it is (one sentence when they differ).

    Names match when equal but for case, or when both name COVID-19; anything else, such as a model's
    "Normal" against the data's "NonCOVID", is refused unless ``renames`` maps the data's class onto the
    model's explicitly."""
    if renames:
        unknown = sorted(set(renames) - set(table.classes))
        if unknown:
            raise CovidlensError(f"--class-map names {unknown[0]!r}, which is not a class of the data "
                                 f"({', '.join(table.classes)}).")
        table = replace(table, classes=[renames.get(c, c) for c in table.classes],
                        positive_class=renames.get(table.positive_class, table.positive_class)
                        if table.positive_class else None)
    if info.binary:
        if len(table.classes) != 2:
            raise CovidlensError(
                f"data set {table.name!r} has {len(table.classes)} classes ({', '.join(table.classes)}); "
                f"this binary model needs two, one of them its positive class {info.positive_class!r}."
            )
        data_positive = table.positive_class
        if data_positive is None:
            matches = [c for c in table.classes if _same_class(c, info.positive_class)]
            data_positive = matches[0] if len(matches) == 1 else None
        if data_positive is None or not _same_class(data_positive, info.positive_class):
            raise CovidlensError(
                f"the model's positive class is {info.positive_class!r} but the data's is "
                f"{data_positive or 'not named'}; name the COVID class folder or label 'covid' so the two line up."
            )
        negative = 1 - info.positive_index
        data_negative = next(c for c in table.classes if c != data_positive)
        if not _same_class(data_negative, info.classes[negative]):
            raise CovidlensError(
                f"the model's other class is {info.classes[negative]!r} but the data's is {data_negative!r}; "
                f"if they are the same thing, say so with --class-map {data_negative}={info.classes[negative]}."
            )
        return [info.positive_index if c == data_positive else negative for c in table.classes]
    mapping = []
    for name in table.classes:
        matches = [i for i, c in enumerate(info.classes) if _same_class(c, name)]
        if len(matches) != 1 or len(table.classes) != len(info.classes):
            raise CovidlensError(
                f"the model's classes are {', '.join(info.classes)} but the data's are {', '.join(table.classes)}; "
                "a K-class model is scored on data with the same class names."
            )
        mapping.append(matches[0])
    return mapping


def resampling_groups(table: SampleTable, samples, y: np.ndarray) -> tuple[list[str] | None, str]:
    """The groups the bootstrap resamples, and a phrase saying what they are.

    A class held by a single patient has no between-patient variation to resample; then the
    intervals fall back to images and the phrase says that they are too narrow.
    """
    if table.group_kind == "image":
        return None, "images (the data set records no patients)"
    groups = [s.group for s in samples]
    for k in np.unique(y):
        if len({g for g, label in zip(groups, y) if label == k}) < 2:
            return None, (f"images, because one class comes from a single {table.group_kind} group "
                          "(too few patients: these intervals are too narrow)")
    return groups, f"{table.group_kind} groups ({len(set(groups))} of them)"


#: Images of an unregistered data set (a folder or CSV) put through the modality check before scoring.
MODALITY_SAMPLE = 12


def check_data_modality(info: ModelInfo, table: SampleTable, dataset: str) -> None:
    """Refuse, in one sentence, data of another modality than the model's.

    A registered data set says its modality; a folder or CSV does not, so a few of its images (evenly
    spread) go through the modality check, and the data are refused when most of them are confidently
    the other modality. Not sampled: the data set the model was trained on, and the inputs of a model
    that sees lung-masked images (black outside the lungs, which the check was not made for)."""
    from covidlens.data.datasets import list_datasets

    if dataset in list_datasets():
        if table.modality != info.modality:
            raise CovidlensError(
                f"this is a {info.modality.upper()} model but data set {table.name!r} is registered as "
                f"{table.modality.upper()}; score it on {info.modality.upper()} data (left out, --data is the data "
                "set it was trained on)."
            )
        return
    if dataset == info.dataset or info.preprocessing.get("lungs", "raw") != "raw":
        return
    from collections import Counter

    from covidlens.modality import check_modality

    labelled = [s for s in table.samples if s.label >= 0]
    step = max(1, len(labelled) // MODALITY_SAMPLE)
    kinds = Counter()
    for sample in labelled[::step][:MODALITY_SAMPLE]:
        try:
            kinds[check_modality(sample.path).kind] += 1
        except CovidlensError:
            kinds["unreadable"] += 1
    found, count = kinds.most_common(1)[0] if kinds else ("", 0)
    if found in ("ct", "cxr") and found != info.modality and count * 2 > sum(kinds.values()):
        raise CovidlensError(
            f"this is a {info.modality.upper()} model but {count} of {sum(kinds.values())} sampled images of "
            f"{table.name!r} are found to be {found.upper()}; score it on {info.modality.upper()} data "
            "(--no-modality-check if they are)."
        )


def evaluate(
    checkpoints: list[str | Path] | list[Checkpoint],
    dataset: str | None = None,
    root: str | None = None,
    split: str = "test",
    tta: bool | None = None,
    out_dir: str | Path | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    class_renames: dict[str, str] | None = None,
    check_modality: bool = True,
) -> dict:
    """Metrics with 95% bootstrap intervals; writes a report folder if ``out_dir`` is given.

    ``dataset`` defaults to the one recorded in the (first) checkpoint. Data of another modality, or whose
    class names differ from the model's, are refused unless ``class_renames`` maps them explicitly
    (``check_modality=False`` skips the modality refusal)."""
    if not checkpoints:
        raise CovidlensError("evaluate needs at least one checkpoint.")
    if n_boot < 10:
        raise CovidlensError(f"the bootstrap needs at least 10 resamples, got {n_boot}.")
    ckpts = [c if isinstance(c, Checkpoint) else load_checkpoint(c) for c in checkpoints]
    info = ckpts[0].info
    for c in ckpts[1:]:
        if c.info.classes != info.classes or c.info.positive_class != info.positive_class:
            raise CovidlensError(f"checkpoints disagree on classes: {info.classes} vs {c.info.classes}.")
    if info.task != "classification":
        raise CovidlensError(f"{ckpts[0].path} is a {info.task} model; evaluate scores classifiers.")
    if not dataset:
        dataset = info.dataset
        if not dataset:
            raise CovidlensError(f"{ckpts[0].path} records no data set it was trained on; name one with --data.")
    table = load_dataset(dataset, root)
    if check_modality:
        check_data_modality(info, table, dataset)
    mapping = class_map(info, table, class_renames)
    samples = [s for s in table.split(split) if s.label >= 0]
    if not samples:
        raise CovidlensError(f"the {split!r} split of {table.name!r} has no labelled images to score.")
    y = np.array([mapping[s.label] for s in samples])
    probs = ensemble_probabilities(ckpts, samples, tta)
    groups, resampled = resampling_groups(table, samples, y)
    result = {
        "dataset": dataset,
        "split": split,
        "n_images": int(len(y)),
        "classes": info.classes,
        "positive_class": info.positive_class,
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(info.classes)},
        "checkpoints": [str(c.path) for c in ckpts],
        "models": [c.info.model for c in ckpts],
        "tta": tta if tta is not None else [c.info.tta for c in ckpts],
        "bootstrap_resamples": n_boot,
        "bootstrap_resamples_what": resampled,
    }
    result["calibration"] = _calibration(y, probs, info, groups, n_boot, seed, ckpts)
    if not info.binary:
        result["multiclass"] = _multiclass(y, probs, info.classes, groups, n_boot, seed)
    if info.positive_index is not None:
        result["n_positive"] = int((y == info.positive_index).sum())
        val = [s for s in table.samples if s.split == "val" and s.label >= 0]
        result.update(_operating_points(ckpts, info, y, probs, val, mapping, groups, split, tta, n_boot, seed))
    if out_dir is not None:
        write_report(result, samples, y, probs, Path(out_dir))
    return result


def _calibration(y, probs, info: ModelInfo, groups, n_boot, seed, ckpts) -> dict:
    """ECE and Brier with intervals, and the reliability bins, of P(positive) (or the top label)."""
    from covidlens.evaluation.calibration import calibration_ci, calibration_metrics, confidences, reliability

    positive = info.positive_index
    p, hit = confidences(y, probs, positive)
    temperatures = sorted({c.info.temperature for c in ckpts})
    return {
        "judged": f"P({info.positive_class})" if positive is not None else "the most probable class",
        "temperature": temperatures[0] if len(temperatures) == 1 else temperatures,
        "fitted_on": [c.info.calibration or "not calibrated" for c in ckpts],
        "metrics": calibration_metrics(y, probs, positive),
        "ci95": {k: list(v) for k, v in calibration_ci(y, probs, positive, groups, n_boot, seed).items()},
        "reliability": reliability(p, hit),
    }


def _multiclass(y, probs, classes, groups, n_boot, seed) -> dict:
    return {
        "metrics": multiclass_metrics(y, probs, classes),
        "ci95": {k: list(v) for k, v in multiclass_bootstrap_ci(y, probs, classes, n_boot=n_boot, seed=seed, groups=groups).items()},
        "confusion_matrix": multiclass_confusion(y, probs, len(classes)).tolist(),
    }


def _operating_points(ckpts, info, y, probs, val, mapping, groups, split, tta, n_boot, seed) -> dict:
    """One-vs-rest metrics of the positive class at 0.5 and at the validation-chosen sensitivity."""
    positive = info.positive_index
    y_pos, p_pos = (y == positive).astype(int), probs[:, positive]
    target = info.target_sensitivity or 0.95
    same_tta = tta is None or tta == info.tta
    if len(ckpts) == 1 and info.sensitivity_threshold is not None and same_tta:
        sens_threshold, source = info.sensitivity_threshold, "validation split at training time"
    elif val and any(mapping[s.label] == positive for s in val):
        y_val = np.array([int(mapping[s.label] == positive) for s in val])
        sens_threshold = choose_for_sensitivity(y_val, ensemble_probabilities(ckpts, val, tta)[:, positive], target)
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
        ci = bootstrap_ci(y_pos, p_pos, threshold, n_boot=n_boot, seed=seed, groups=groups)
        points[key] = {
            "threshold": float(threshold),
            "metrics": binary_metrics(y_pos, p_pos, threshold),
            "ci95": {k: list(v) for k, v in ci.items()},
            "confusion_matrix": confusion(y_pos, p_pos, threshold).tolist(),
        }
    return {"sensitivity_threshold_source": source, "operating_points": points}


def _cell(value: float, interval) -> str:
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def format_table(result: dict) -> str:
    """Markdown tables: per class (K-class models), then one row per operating point of the positive class."""
    rows = []
    if "multiclass" in result:
        m, ci = result["multiclass"]["metrics"], result["multiclass"]["ci95"]
        rows += ["| class | precision | recall (sensitivity) | F1 | AUC (one vs rest) |", "|---|---|---|---|---|"]
        for name in result["classes"]:
            cells = [_cell(m[f"{k}/{name}"], ci[f"{k}/{name}"]) for k in ("precision", "recall", "f1", "auc")]
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
        macro = [_cell(m[f"macro_{k}"], ci[f"macro_{k}"]) for k in ("precision", "recall", "f1", "auc")]
        rows.append("| macro average | " + " | ".join(macro) + " |")
        rows += ["", f"accuracy {_cell(m['accuracy'], ci['accuracy'])}", ""]
    if "operating_points" in result:
        rows += [f"{result['positive_class']} against the rest:", ""] if "multiclass" in result else []
        rows += ["| operating point | threshold | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 2)]
        for key, point in result["operating_points"].items():
            cells = [_cell(point["metrics"][k], point["ci95"][k]) for k in METRICS]
            rows.append(f"| {key} | {point['threshold']:.3f} | " + " | ".join(cells) + " |")
    if "calibration" in result:
        c = result["calibration"]
        rows += ["", f"calibration of {c['judged']} (temperature {c['temperature']}): "
                 f"ECE {_cell(c['metrics']['ece'], c['ci95']['ece'])}, Brier {_cell(c['metrics']['brier'], c['ci95']['brier'])}"]
    return "\n".join(rows).rstrip()


def _confusion_markdown(matrix, names: list[str]) -> list[str]:
    lines = ["| | " + " | ".join(f"pred {n}" for n in names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| true {n} | " + " | ".join(str(v) for v in row) + " |" for n, row in zip(names, matrix)]
    return lines + [""]


def write_report(result: dict, samples, y, probs, out_dir: Path) -> None:
    from covidlens.evaluation.plots import plot_confusion, plot_roc, plot_roc_one_vs_rest

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(json_safe(result), indent=2) + "\n")
    classes = result["classes"]
    counts = ", ".join(f"{n} {c}" for c, n in result["class_counts"].items())
    text = [
        f"# Evaluation on {result['dataset']} / {result['split']} ({result['n_images']} images: {counts})",
        "",
        f"Checkpoints: {', '.join(result['checkpoints'])}",
        "",
        f"Values with 95% percentile-bootstrap intervals ({result['bootstrap_resamples']} resamples of "
        f"{result['bootstrap_resamples_what']}).",
    ]
    if "operating_points" in result:
        text.append(f"The sensitivity operating point was chosen on the {result['sensitivity_threshold_source']}.")
    text += ["", format_table(result), ""]
    if "multiclass" in result:
        text += ["Confusion matrix, most probable class (rows true, columns predicted):", ""]
        text += _confusion_markdown(result["multiclass"]["confusion_matrix"], classes)
        plot_confusion(np.array(result["multiclass"]["confusion_matrix"]), classes, out_dir / "confusion_argmax.png",
                       title="most probable class")
        plot_roc_one_vs_rest(y, probs, classes, out_dir / "roc.png",
                             title=f"ROC one vs rest on {result['dataset']} {result['split']}")
    positive = result.get("positive_class")
    if "operating_points" in result:
        names = [f"not {positive}", positive]
        for key, point in result["operating_points"].items():
            text += [f"Confusion matrix of {positive} at {key} (rows true, columns predicted):", ""]
            text += _confusion_markdown(point["confusion_matrix"], names)
            plot_confusion(np.array(point["confusion_matrix"]), names, out_dir / f"confusion_{key}.png",
                           title=f"{key} (t = {point['threshold']:.3f})")
        if "multiclass" not in result:
            index = classes.index(positive)
            plot_roc({"model": ((y == index).astype(int), probs[:, index])}, out_dir / "roc.png",
                     title=f"ROC on {result['dataset']} {result['split']}")
    if "calibration" in result:
        from covidlens.evaluation.plots import plot_reliability

        plot_reliability({"model": result["calibration"]["reliability"]}, out_dir / "reliability.png",
                         title=f"reliability of {result['calibration']['judged']} on {result['dataset']} {result['split']}")
    (out_dir / "metrics.md").write_text("\n".join(text))
    with (out_dir / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true_class", "group", *[f"p_{c}" for c in classes]])
        for sample, label, p in zip(samples, y, probs):
            writer.writerow([str(sample.path), classes[label], sample.group, *[f"{v:.6f}" for v in p]])
