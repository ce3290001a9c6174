"""Lesion segmentation metrics with bootstrap intervals, and the ``segment evaluate`` report.

For every foreground class (``infection``; or ``ground-glass`` and ``consolidation``) each slice is
scored one class against the rest at the mask's own resolution: Dice, IoU (Jaccard), sensitivity
(recall) and specificity. Two summaries over a set:

- ``mean`` — the mean over slices of the per-slice value. Mean Dice over slices is the headline
  figure: it is Inf-Net's convention on the 48 MedSeg test slices (0.682 Inf-Net, 0.739 Semi-Inf-Net).
- ``pooled`` — the value from the pixel counts summed over all slices (large lesions weigh more).

Slices whose truth holds no pixel of a class (the 3-class masks often lack consolidation) are
handled by ``empty_truth``: ``"score"`` (default) gives Dice and IoU 1 when the prediction is empty
too and 0 when it is not, so a false alarm on a clean slice counts (MONAI's ``ignore_empty=False``);
``"skip"`` leaves them out of the mean Dice and IoU. Sensitivity of such a slice is undefined and
always left out of the mean; specificity of a slice that is all lesion likewise. The report gives the
number of slices that enter each mean. Pooled values are unaffected by either choice.

Intervals are percentile bootstrap intervals over slices: whole groups (``Sample.group``: patients
where the set knows them; for MedSeg each slice is its own group) are drawn with replacement,
``rng.integers(0, n_groups, n_groups)`` per resample with ``rng = default_rng(seed)``, the scheme
of :mod:`covidlens.evaluation.metrics` (whose helpers resample class labels, not slices).

Boundary distances (MONAI's ``compute_hausdorff_distance``, in pixels of the mask's own grid): the
Hausdorff distance (the worst boundary error) and its 95th percentile (HD95, robust to a stray
pixel), per slice and foreground class, averaged over the slices where both truth and prediction hold
the class (a distance to nothing is undefined); the report says how many slices that is.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Callable

import numpy as np

from covidlens.errors import CovidlensError
from covidlens.evaluation.metrics import json_safe

METRICS = ("dice", "iou", "sensitivity", "specificity")
EMPTY_TRUTH = ("score", "skip")


def confusion_counts(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """K x 4 pixel counts (tp, fp, fn, tn) of each class against the rest, for one slice."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    if truth.shape != pred.shape:
        raise CovidlensError(f"the truth mask is {truth.shape} but the prediction is {pred.shape}; they must match.")
    out = np.zeros((num_classes, 4), dtype=np.int64)
    n = truth.size
    for k in range(num_classes):
        t, p = truth == k, pred == k
        tp = int(np.count_nonzero(t & p))
        fp, fn = int(np.count_nonzero(p)) - tp, int(np.count_nonzero(t)) - tp
        out[k] = (tp, fp, fn, n - tp - fp - fn)
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = np.full(np.broadcast(a, b).shape, np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


def ratios(counts: np.ndarray, empty_truth: str = "score") -> dict[str, np.ndarray]:
    """Dice, IoU, sensitivity, specificity from ``(..., 4)`` counts; NaN where undefined (see module doc)."""
    if empty_truth not in EMPTY_TRUTH:
        raise CovidlensError(f"empty_truth must be one of {', '.join(EMPTY_TRUTH)}, got {empty_truth!r}.")
    counts = np.asarray(counts, dtype=float)
    tp, fp, fn, tn = np.moveaxis(counts, -1, 0)
    dice, iou = _ratio(2 * tp, 2 * tp + fp + fn), _ratio(tp, tp + fp + fn)
    empty = (tp + fn) == 0
    if empty_truth == "score":
        clean = np.where(fp == 0, 1.0, 0.0)
        dice, iou = np.where(empty, clean, dice), np.where(empty, clean, iou)
    else:
        dice, iou = np.where(empty, np.nan, dice), np.where(empty, np.nan, iou)
    return {"dice": dice, "iou": iou, "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp)}


def summarise(counts: np.ndarray, class_names: Sequence[str], empty_truth: str = "score") -> dict[str, float]:
    """``mean_<metric>/<class>`` (over slices, NaN slices left out), ``pooled_<metric>/<class>`` and
    ``n_<metric>/<class>`` (slices in the mean) from ``N x K x 4`` counts; foreground classes only."""
    counts = np.asarray(counts)
    per_slice = ratios(counts, empty_truth)
    pooled = ratios(counts.sum(axis=0), empty_truth)
    out: dict[str, float] = {}
    for k, name in enumerate(class_names):
        if k == 0:
            continue
        for metric in METRICS:
            values = per_slice[metric][:, k]
            defined = ~np.isnan(values)
            out[f"mean_{metric}/{name}"] = float(values[defined].mean()) if defined.any() else float("nan")
            out[f"pooled_{metric}/{name}"] = float(pooled[metric][k])
            out[f"n_{metric}/{name}"] = int(defined.sum())
    return out


def _group_weights(groups: Sequence[Hashable], n_boot: int, seed: int) -> np.ndarray:
    """n_boot x N multiplicities: how often each slice is in each resample of whole groups."""
    numbers: dict[Hashable, int] = {}
    codes = np.array([numbers.setdefault(g, len(numbers)) for g in groups], dtype=int)
    rng = np.random.default_rng(seed)
    n_groups = len(numbers)
    draws = np.stack([np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups) for _ in range(n_boot)])
    return draws[:, codes].astype(float)


def bootstrap_intervals(
    counts: np.ndarray, class_names: Sequence[str], groups: Sequence[Hashable] | None = None, n_boot: int = 2000,
    alpha: float = 0.05, seed: int = 0, empty_truth: str = "score",
) -> dict[str, tuple[float, float]]:
    """Percentile (1 - alpha) interval for every ``mean_`` and ``pooled_`` value of :func:`summarise`.

    ``groups`` (one id per slice) are resampled whole; ``None`` resamples single slices.
    """
    counts = np.asarray(counts, dtype=float)
    n = len(counts)
    groups = list(groups) if groups is not None else list(range(n))
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries but there are {n} slices; give one per slice")
    if n < 2:
        raise CovidlensError("a bootstrap interval needs at least two slices.")
    weights = _group_weights(groups, n_boot, seed)
    per_slice = ratios(counts, empty_truth)
    pooled = ratios(np.einsum("bn,nkc->bkc", weights, counts), empty_truth)
    out: dict[str, tuple[float, float]] = {}
    for k, name in enumerate(class_names):
        if k == 0:
            continue
        for metric in METRICS:
            values = per_slice[metric][:, k]
            defined = ~np.isnan(values)
            means = _ratio(weights @ np.where(defined, values, 0.0), weights @ defined.astype(float))
            out[f"mean_{metric}/{name}"] = _interval(means, alpha)
            out[f"pooled_{metric}/{name}"] = _interval(pooled[metric][:, k], alpha)
    return out


DISTANCES = ("hd95", "hausdorff")


def boundary_distances(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """K x 2 (HD95, Hausdorff) in pixels for one slice; row 0 (background) and classes missing from
    the truth or the prediction are NaN."""
    import warnings

    import torch
    from monai.metrics import compute_hausdorff_distance

    out = np.full((num_classes, 2), np.nan)
    t = torch.as_tensor(np.asarray(truth, dtype=np.int64))
    p = torch.as_tensor(np.asarray(pred, dtype=np.int64))
    for k in range(1, num_classes):
        tk, pk = (t == k)[None, None], (p == k)[None, None]
        if not tk.any() or not pk.any():
            continue
        for j, percentile in enumerate((95, None)):
            with warnings.catch_warnings():  # MONAI 1.5 warns about its own internal argument
                warnings.simplefilter("ignore", FutureWarning)
                value = compute_hausdorff_distance(pk, tk, include_background=True, percentile=percentile)
            out[k, j] = float(value[0, 0])
    return out


def distance_summary(
    distances: np.ndarray, class_names: Sequence[str], groups: Sequence[Hashable], n_boot: int, seed: int = 0,
    alpha: float = 0.05,
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Mean HD95 and Hausdorff per foreground class over the slices where they are defined, with
    percentile-bootstrap intervals resampling whole groups, and the number of such slices."""
    weights = _group_weights(groups, n_boot, seed)
    values: dict[str, float] = {}
    ci: dict[str, tuple[float, float]] = {}
    for k, name in enumerate(class_names):
        if k == 0:
            continue
        for j, metric in enumerate(DISTANCES):
            d = distances[:, k, j]
            defined = ~np.isnan(d)
            values[f"mean_{metric}/{name}"] = float(d[defined].mean()) if defined.any() else float("nan")
            means = _ratio(weights @ np.where(defined, d, 0.0), weights @ defined.astype(float))
            ci[f"mean_{metric}/{name}"] = _interval(means, alpha)
        values[f"distance_slices/{name}"] = int((~np.isnan(distances[:, k, 0])).sum())
    return values, ci


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))


def evaluate_segmentation(
    checkpoint,
    dataset: str = "medseg-infnet",
    root: str | None = None,
    split: str = "test",
    out_dir: str | Path | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    empty_truth: str = "score",
    lung_mask: Callable[[np.ndarray], np.ndarray] | None = None,
    overlays: bool = True,
    limit: int | None = None,
    tta: bool | None = None,
) -> dict:
    """Score a segmentation checkpoint on a split of a segmentation set, with 95% intervals.

    Each slice is segmented at its own size by :func:`covidlens.segmentation.segment_batch` and scored
    against its mask (both turned by ``Sample.rot90``). ``lung_mask`` is the hook for lung filtering:
    a function from the 8-bit slice to a boolean lung mask; lesion pixels predicted outside it become
    background before scoring. None is given by default: :func:`covidlens.measure.lungs.segment_lungs_grey`
    returns empty masks on most MedSeg crops, which are already cropped to the lungs. With
    ``out_dir``: ``metrics.json``, ``metrics.md``, ``per_slice.csv`` and, with ``overlays``, one PNG per
    slice (image, truth, prediction) under ``overlays/`` and ``index.html`` showing them all.
    ``limit`` scores only the first that many slices (quick checks; a report of all slices needs None).
    ``tta``: average with the mirrored slice (default: as the checkpoint says).
    """
    from covidlens.checkpoint import Checkpoint, load_checkpoint
    from covidlens.data.datamodule import read_image_and_mask
    from covidlens.data.datasets import load_dataset
    from covidlens.segmentation.render import render_panel, write_gallery
    from covidlens.segmentation.predict import segment_batch

    if n_boot < 10:
        raise CovidlensError(f"the bootstrap needs at least 10 resamples, got {n_boot}.")
    if empty_truth not in EMPTY_TRUTH:
        raise CovidlensError(f"empty_truth must be one of {', '.join(EMPTY_TRUTH)}, got {empty_truth!r}.")
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    info = ckpt.info
    if info.task != "segmentation":
        raise CovidlensError(f"{ckpt.path} is a {info.task} model; segment evaluate scores segmentation models.")
    table = load_dataset(dataset, root)
    if table.task != "segmentation" or not table.mask_classes:
        raise CovidlensError(f"data set {table.name!r} is a {table.task} set without mask classes; choose a segmentation set.")
    if list(table.mask_classes) != list(info.classes):
        raise CovidlensError(
            f"the model segments {', '.join(info.classes)} but {table.name!r} has masks of "
            f"{', '.join(table.mask_classes)}; score it on a set with the same mask classes."
        )
    if limit is not None and limit < 2:
        raise CovidlensError(f"limit must be at least 2 slices for an interval, got {limit}.")
    samples = [s for s in table.split(split) if s.mask is not None][:limit]
    if not samples:
        raise CovidlensError(f"the {split!r} split of {table.name!r} has no slices with masks.")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and overlays:
        (out / "overlays").mkdir(parents=True, exist_ok=True)
    k = len(info.classes)
    counts = np.zeros((len(samples), k, 4), dtype=np.int64)
    distances = np.full((len(samples), k, 2), np.nan)
    figures = []
    for start in range(0, len(samples), 8):
        chunk = samples[start : start + 8]
        pairs = [read_image_and_mask(s, k) for s in chunk]
        probs = segment_batch(ckpt, [image for image, _ in pairs], lung_mask, tta=tta)
        for i, (sample, (image, truth), p) in enumerate(zip(chunk, pairs, probs), start=start):
            pred = p.argmax(0)
            counts[i] = confusion_counts(truth, pred, k)
            distances[i] = boundary_distances(truth, pred, k)
            if out is not None and overlays:
                png = f"overlays/{i:03d}_{sample.path.stem}.png"
                dice = ratios(counts[i], empty_truth)["dice"][1:]
                caption = ", ".join(f"Dice {c} {d:.3f}" for c, d in zip(info.classes[1:], dice))
                render_panel(np.asarray(image), truth, pred, info.classes, out / png, title=f"{sample.group}  {caption}")
                figures.append((sample.group, png, caption))
    groups = [s.group for s in samples]
    distance_values, distance_ci = distance_summary(distances, info.classes, groups, n_boot, seed=seed)
    result = {
        "dataset": table.name,
        "split": split,
        "n_slices": len(samples),
        "classes": list(info.classes),
        "checkpoint": str(ckpt.path),
        "model": info.model,
        "empty_truth": empty_truth,
        "lung_mask": getattr(lung_mask, "__name__", "given") if lung_mask is not None else None,
        "tta": info.tta if tta is None else tta,
        "empty_truth_slices": {c: int((counts[:, j, 0] + counts[:, j, 2] == 0).sum()) for j, c in enumerate(info.classes) if j},
        "bootstrap_resamples": n_boot,
        "bootstrap_resamples_what": f"{table.group_kind} groups ({len(set(groups))} of them)",
        "metrics": summarise(counts, info.classes, empty_truth),
        "ci95": {key: list(v) for key, v in bootstrap_intervals(counts, info.classes, groups, n_boot, seed=seed, empty_truth=empty_truth).items()},
        "distances": distance_values,
        "distances_ci95": {key: list(v) for key, v in distance_ci.items()},
    }
    per_slice = ratios(counts, empty_truth)
    if out is not None:
        _write_report(result, samples, counts, per_slice, out, distances)
        if overlays:
            write_gallery(figures, out / "index.html", f"{info.model} on {table.name} / {split}",
                          note="Each row: slice, truth, prediction. Red: class 1, blue: class 2. "
                               f"Mean Dice {format_headline(result)}.")
    return result


def format_headline(result: dict) -> str:
    """Mean Dice over slices with its interval, per foreground class."""
    m, ci = result["metrics"], result["ci95"]
    return "; ".join(
        f"{c} {m[f'mean_dice/{c}']:.3f} [{ci[f'mean_dice/{c}'][0]:.3f}, {ci[f'mean_dice/{c}'][1]:.3f}]"
        for c in result["classes"][1:]
    )


def format_table(result: dict) -> str:
    """Markdown: one row per foreground class and summary, each metric with its interval."""
    m, ci = result["metrics"], result["ci95"]
    rows = ["| class | summary | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for c in result["classes"][1:]:
        for summary in ("mean", "pooled"):
            cells = []
            for metric in METRICS:
                key = f"{summary}_{metric}/{c}"
                value, (lo, hi) = m[key], ci[key]
                cells.append("n/a" if value != value else f"{value:.3f} [{lo:.3f}, {hi:.3f}]")
            rows.append(f"| {c} | {summary} over {'slices' if summary == 'mean' else 'pixels'} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def format_distances(result: dict) -> str:
    """Markdown: mean HD95 and Hausdorff distance (pixels) per foreground class, with intervals."""
    d, ci = result["distances"], result["distances_ci95"]
    rows = ["| class | slices with both | mean HD95 (px) | mean Hausdorff (px) |", "|---|---|---|---|"]
    for c in result["classes"][1:]:
        cells = []
        for metric in DISTANCES:
            key = f"mean_{metric}/{c}"
            cells.append("n/a" if d[key] != d[key] else f"{d[key]:.1f} [{ci[key][0]:.1f}, {ci[key][1]:.1f}]")
        rows.append(f"| {c} | {d[f'distance_slices/{c}']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _write_report(result: dict, samples, counts: np.ndarray, per_slice: dict, out: Path, distances: np.ndarray) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(json_safe(result), indent=2) + "\n")
    empty = ", ".join(f"{c} {n}" for c, n in result["empty_truth_slices"].items())
    text = [
        f"# Segmentation of {result['dataset']} / {result['split']} ({result['n_slices']} slices)",
        "",
        f"Checkpoint: {result['checkpoint']} ({result['model']}). Lung filter: {result['lung_mask'] or 'none'}.",
        "",
        f"Headline, mean Dice over slices: {format_headline(result)}.",
        "",
        f"95% percentile-bootstrap intervals ({result['bootstrap_resamples']} resamples of "
        f"{result['bootstrap_resamples_what']}). Slices whose truth lacks the class: {empty}; "
        f"they are {'scored 1 if the prediction is empty too, else 0' if result['empty_truth'] == 'score' else 'left out of mean Dice and IoU'}"
        " (sensitivity leaves them out).",
        "",
        format_table(result),
        "",
        "Boundary distances in pixels of the mask's grid, over the slices where truth and prediction both hold the class:",
        "",
        format_distances(result),
        "",
    ]
    (out / "metrics.md").write_text("\n".join(text))
    classes = result["classes"]
    with (out / "per_slice.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["path", "group"]
        for c in classes[1:]:
            header += [f"{m}/{c}" for m in METRICS] + [f"{m}/{c}" for m in DISTANCES]
            header += [f"truth_pixels/{c}", f"predicted_pixels/{c}"]
        writer.writerow(header)
        for i, sample in enumerate(samples):
            row = [str(sample.path), sample.group]
            for j in range(1, len(classes)):
                row += ["" if np.isnan(per_slice[m][i, j]) else f"{per_slice[m][i, j]:.6f}" for m in METRICS]
                row += ["" if np.isnan(distances[i, j, m]) else f"{distances[i, j, m]:.3f}" for m in range(len(DISTANCES))]
                tp, fp, fn, _ = counts[i, j]
                row += [int(tp + fn), int(tp + fp)]
            writer.writerow(row)
