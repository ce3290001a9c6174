"""Screening metrics (binary and K-class) with bootstrap confidence intervals and operating points.

Point estimates come from scikit-learn. Intervals are percentile bootstrap intervals (2000 resamples
by default). Images of one patient are not independent: slices of one scan, or the same radiograph
in two collections, move together. Resampling single images then treats them as separate evidence
and gives intervals that are too narrow. Pass ``groups`` (one id per image, e.g. the patient) and
whole groups are resampled instead (a cluster bootstrap: draw as many groups as there are, with
replacement, and take every image of each drawn group). A class whose images all come from one group
raises CovidlensError: no resample could show how another patient of that class would score, and the
interval would look precise while measuring nothing.

How a resample is drawn, so that published figures reproduce from a seed:

- without groups: ``rng.integers(0, n_images, n_images)`` per resample, ``rng = default_rng(seed)``;
- with groups: ``rng.integers(0, n_groups, n_groups)`` per resample, groups numbered in order of
  first appearance.

A resample that lacks a class the data holds is skipped (recall, specificity and AUC of that class
are undefined on it); for two classes this is "one class only". Every interval is computed from the
resamples kept; a metric that is undefined (NaN) on some resample, such as precision when nothing
was called positive, is summarised over the resamples where it is defined.

The resampled metrics are computed for all resamples at once from per-image multiplicities (how
often each image was drawn), which is what makes 2000 resamples take milliseconds instead of the
seconds a scikit-learn call per resample takes; the tests check both give the same values.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve

from covidlens.errors import CovidlensError

METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "auc")
_BINARY_NAMES = ("negative", "positive")

# Resamples are processed in blocks of about this many (resample, image) cells, which bounds memory
# at a few tens of MB whatever the number of images.
_BLOCK_CELLS = 2_000_000


def binary_metrics(y_true, prob, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall (sensitivity), specificity, F1 and ROC AUC at ``threshold``.

    A case is called positive when ``prob >= threshold``. Undefined ratios (no predicted positives,
    one class only) are NaN rather than silently 0.
    """
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, dtype=float)
    pred = (prob >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, pred, labels=[0, 1]).ravel()

    def ratio(a, b):
        return float(a / b) if b else float("nan")

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = ratio(2 * precision * recall, precision + recall) if tp else (0.0 if (fp + fn) else float("nan"))
    auc = float(roc_auc_score(y_true, prob)) if len(np.unique(y_true)) == 2 else float("nan")
    return {
        "accuracy": ratio(tp + tn, len(y_true)),
        "precision": precision,
        "recall": recall,
        "specificity": ratio(tn, tn + fp),
        "f1": f1,
        "auc": auc,
    }


def multiclass_metrics(y_true, probs, class_names: Sequence[str]) -> dict[str, float]:
    """Accuracy and per-class precision, recall (sensitivity), F1 and one-vs-rest ROC AUC, with macro averages.

    ``probs`` is images x classes; the predicted class is the most probable one. Keys are
    ``accuracy``, ``macro_precision``, ``macro_recall``, ``macro_f1``, ``macro_auc`` and
    ``precision/<name>``, ``recall/<name>``, ``f1/<name>``, ``auc/<name>`` for every class name.
    A per-class value that is undefined is NaN, not 0: precision of a class never predicted, recall
    and AUC of a class with no images, AUC of a class that all images belong to. Macro averages are
    unweighted means over the classes whose value is defined (scikit-learn's ``zero_division=nan``
    convention); they are NaN only when no class has one.
    """
    y_true, probs = _multiclass_inputs(y_true, probs, class_names)
    labels = np.arange(len(class_names))
    pred = probs.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, pred, labels=labels, average=None, zero_division=np.nan
    )
    auc = np.array([
        roc_auc_score(y_true == k, probs[:, k]) if 0 < (y_true == k).sum() < len(y_true) else np.nan
        for k in labels
    ])
    columns = _multiclass_columns(
        class_names, np.array([accuracy_score(y_true, pred)]), precision[None], recall[None], f1[None], auc[None]
    )
    return {key: float(values[0]) for key, values in columns.items()}


def multiclass_bootstrap_ci(
    y_true, probs, class_names: Sequence[str], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0, *,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap (1 - alpha) interval for every value of :func:`multiclass_metrics`.

    With ``groups`` whole groups are resampled (see the module docstring). A class whose images all
    belong to one group has no between-group variation to measure, so that raises
    :class:`CovidlensError` rather than returning an interval that looks precise.
    """
    y_true, probs = _multiclass_inputs(y_true, probs, class_names)
    num_classes = len(class_names)
    empty = np.zeros((0, num_classes))
    blocks = [_multiclass_columns(class_names, np.zeros(0), empty, empty, empty, empty)]
    cells = _multiclass_cells(y_true, probs, num_classes)
    for weights in _resample_weights(y_true, n_boot, seed, groups, np.arange(num_classes), class_names):
        blocks.append(_multiclass_draws(weights, cells, probs, class_names))
    return {key: _percentile_interval(np.concatenate([b[key] for b in blocks]), alpha) for key in blocks[0]}


def paired_multiclass_difference(
    y_true, probs_a, probs_b, class_names: Sequence[str], metric: str = "macro_f1", n_boot: int = 2000,
    alpha: float = 0.05, seed: int = 0, *, groups: Sequence[Hashable] | None = None,
) -> tuple[float, float, float]:
    """``metric(a) - metric(b)`` of two K-class models on the same images (any key of
    :func:`multiclass_metrics`), with a paired percentile bootstrap interval: both are scored on every
    resample, as in :func:`paired_bootstrap_difference`. With ``groups`` whole groups are resampled."""
    y_true, probs_a = _multiclass_inputs(y_true, probs_a, class_names)
    _, probs_b = _multiclass_inputs(y_true, probs_b, class_names)
    if len(probs_a) != len(probs_b):
        raise ValueError("both models' probabilities must cover the same images")
    a, b = multiclass_metrics(y_true, probs_a, class_names), multiclass_metrics(y_true, probs_b, class_names)
    if metric not in a:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(a)}")
    k = len(class_names)
    cells_a, cells_b = _multiclass_cells(y_true, probs_a, k), _multiclass_cells(y_true, probs_b, k)
    draws = [
        _multiclass_draws(w, cells_a, probs_a, class_names)[metric] - _multiclass_draws(w, cells_b, probs_b, class_names)[metric]
        for w in _resample_weights(y_true, n_boot, seed, groups, np.arange(k), class_names)
    ]
    return (float(a[metric] - b[metric]), *_percentile_interval(np.concatenate(draws) if draws else [], alpha))


def _multiclass_cells(y_true: np.ndarray, probs: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image, its (true, predicted) confusion cell as a one-hot row, and its true class one-hot:
    computed once, then weighted by every block of resamples."""
    cell = np.zeros((len(y_true), num_classes * num_classes))
    cell[np.arange(len(y_true)), y_true * num_classes + probs.argmax(axis=1)] = 1.0
    return cell, np.eye(num_classes)[y_true]


def _multiclass_draws(weights: np.ndarray, cells: tuple[np.ndarray, np.ndarray], probs: np.ndarray,
                      class_names) -> dict[str, np.ndarray]:
    """Every value of :func:`multiclass_metrics` for each resample (row) of ``weights``."""
    num_classes = len(class_names)
    cell, one_hot = cells
    counts = (weights @ cell).reshape(-1, num_classes, num_classes)
    tp = np.diagonal(counts, axis1=1, axis2=2)
    true_count, pred_count = counts.sum(axis=2), counts.sum(axis=1)
    auc = np.stack([_weighted_auc(weights, one_hot[:, k], probs[:, k]) for k in range(num_classes)], axis=1)
    return _multiclass_columns(
        class_names, tp.sum(axis=1) / weights.sum(axis=1), _divide(tp, pred_count), _divide(tp, true_count),
        _divide(2 * tp, true_count + pred_count), auc,
    )


def multiclass_confusion(y_true, probs_or_pred, num_classes: int) -> np.ndarray:
    """K x K confusion counts, rows the true class, columns the predicted one.

    ``probs_or_pred`` is either images x classes probabilities (the most probable class is the
    prediction) or one predicted class index per image.
    """
    y_true = np.asarray(y_true)
    values = np.asarray(probs_or_pred)
    if values.ndim == 2:
        if values.shape[1] != num_classes:
            raise ValueError(f"probabilities have {values.shape[1]} columns but there are {num_classes} classes")
        pred = values.argmax(axis=1)
    elif values.ndim == 1 and (values.size == 0 or np.array_equal(values, np.round(values))):
        pred = values.astype(int)
    else:
        raise ValueError("give images x classes probabilities or one integer predicted class per image")
    if len(pred) != len(y_true):
        raise ValueError("labels and predictions must have the same length")
    _check_labels(y_true, num_classes)
    return confusion_matrix(y_true.astype(int), pred, labels=np.arange(num_classes))


def bootstrap_ci(
    y_true, prob, threshold: float = 0.5, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0, *,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap (1 - alpha) interval for every metric of :func:`binary_metrics`.

    With ``groups`` whole groups are resampled (see the module docstring); a class held by a single
    group raises :class:`CovidlensError`, as in :func:`multiclass_bootstrap_ci`.
    """
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, dtype=float)
    if len(prob) != len(y_true):
        raise ValueError("labels and probabilities must have the same length")
    blocks = [
        _binary_draws(weights, y_true, prob, threshold)
        for weights in _resample_weights(y_true, n_boot, seed, groups, np.array([0, 1]), _BINARY_NAMES)
    ]
    return {name: _percentile_interval([v for block in blocks for v in block[name]], alpha) for name in METRICS}


def paired_bootstrap_difference(
    y_true, prob_a, prob_b, metric: str = "auc", threshold: float = 0.5, n_boot: int = 2000, alpha: float = 0.05,
    seed: int = 0, *, groups: Sequence[Hashable] | None = None,
) -> tuple[float, float, float]:
    """``metric(a) - metric(b)`` on the same images, with a paired percentile bootstrap interval.

    Both models are scored on each resampled set of images, so the interval is that of the
    difference itself; it is much narrower than comparing the two models' separate intervals, which
    overlap even when one model is consistently better. An interval that contains 0 is a tie. With
    ``groups`` whole groups are resampled (see the module docstring).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    y_true = np.asarray(y_true).astype(int)
    prob_a, prob_b = np.asarray(prob_a, dtype=float), np.asarray(prob_b, dtype=float)
    if not len(y_true) == len(prob_a) == len(prob_b):
        raise ValueError("labels and both models' probabilities must have the same length")
    estimate = binary_metrics(y_true, prob_a, threshold)[metric] - binary_metrics(y_true, prob_b, threshold)[metric]
    draws = [
        _binary_draws(weights, y_true, prob_a, threshold)[metric]
        - _binary_draws(weights, y_true, prob_b, threshold)[metric]
        for weights in _resample_weights(y_true, n_boot, seed, groups, np.array([0, 1]), _BINARY_NAMES)
    ]
    return (float(estimate), *_percentile_interval(np.concatenate(draws) if draws else [], alpha))


def roc_points(y_true, prob) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds of the ROC curve."""
    return roc_curve(np.asarray(y_true).astype(int), np.asarray(prob, dtype=float))


def confusion(y_true, prob, threshold: float = 0.5) -> np.ndarray:
    """2x2 confusion matrix, rows true class (negative, positive), columns predicted."""
    pred = (np.asarray(prob, dtype=float) >= threshold).astype(int)
    return confusion_matrix(np.asarray(y_true).astype(int), pred, labels=[0, 1])


def _resample_weights(
    y_true: np.ndarray, n_boot: int, seed: int, groups: Sequence[Hashable] | None, classes: np.ndarray,
    class_names: Sequence[str],
) -> Iterator[np.ndarray]:
    """Blocks of resamples as (resamples x images) multiplicities, resamples lacking a class of the data dropped.

    An image drawn twice counts twice, so a metric computed with these weights equals the metric of
    the resampled image list. Draws follow the scheme in the module docstring.
    """
    rng = np.random.default_rng(seed)
    n = len(y_true)
    if groups is None:
        units, n_units = np.arange(n), n
    else:
        units, n_units = _group_codes(y_true, groups, classes, class_names)
    present = classes[np.isin(classes, y_true)]
    membership = (y_true[:, None] == present[None, :]).astype(float)
    rows = max(1, _BLOCK_CELLS // max(n, n_units, 1))
    for start in range(0, n_boot, rows):
        draws = np.stack([rng.integers(0, n_units, n_units) for _ in range(min(rows, n_boot - start))])
        offsets = np.arange(len(draws))[:, None] * n_units
        unit_counts = np.bincount((draws + offsets).ravel(), minlength=draws.size).reshape(draws.shape)
        weights = unit_counts[:, units].astype(float)
        kept = weights[(weights @ membership > 0).all(axis=1) & (len(present) >= 2)]
        if len(kept):
            yield kept


def _group_codes(
    y_true: np.ndarray, groups: Sequence[Hashable], classes: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, int]:
    """Each image's group number (in order of first appearance) and the number of groups.

    Refuses a class held by one group: every kept resample would then contain that same group, and
    the interval would look precise while measuring nothing about other patients.
    """
    groups = list(groups)
    if len(groups) != len(y_true):
        raise ValueError(f"groups has {len(groups)} entries but there are {len(y_true)} images; give one per image")
    numbers: dict[Hashable, int] = {}
    codes = np.array([numbers.setdefault(g, len(numbers)) for g in groups], dtype=int)
    for k in classes[np.isin(classes, y_true)]:
        held_by = np.unique(codes[y_true == k])
        if len(held_by) < 2 and len(np.unique(y_true)) >= 2:
            only = groups[np.flatnonzero(y_true == k)[0]]
            raise CovidlensError(
                f"every {class_names[int(k)]!r} image belongs to one group ({only!r}), "
                "so a group bootstrap cannot estimate its uncertainty; score data with more patients of that class "
                "or leave out groups for an image-level interval, which is too narrow."
            )
    return codes, len(numbers)


def _binary_draws(weights: np.ndarray, y_true: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Every metric of :func:`binary_metrics` for each resample (row) of ``weights``."""
    positive = y_true == 1
    called = prob >= threshold
    outcome = np.stack([positive & called, ~positive & called, positive & ~called, ~positive & ~called], axis=1)
    tp, fp, fn, tn = (weights @ outcome.astype(float)).T
    precision, recall = _divide(tp, tp + fp), _divide(tp, tp + fn)
    return {
        "accuracy": _divide(tp + tn, weights.sum(axis=1)),
        "precision": precision,
        "recall": recall,
        "specificity": _divide(tn, tn + fp),
        # binary_metrics' rule: 2PR/(P+R) = 2tp/(2tp+fp+fn) when tp > 0; 0 when only errors; NaN when empty
        "f1": _divide(2 * tp, 2 * tp + fp + fn),
        "auc": _weighted_auc(weights, positive.astype(float), prob),
    }


def _weighted_auc(weights: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of each resample (row of multiplicities) as the Mann-Whitney statistic, ties counting half.

    This is the area under the (trapezoidal) ROC curve that scikit-learn computes; NaN for a
    resample without positives or without negatives.
    """
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    w = weights[:, order]
    pos_w = w * positive[order]
    pos_tied = np.add.reduceat(pos_w, starts, axis=1)
    neg_tied = np.add.reduceat(w - pos_w, starts, axis=1)
    neg_below = np.cumsum(neg_tied, axis=1) - neg_tied
    wins = (pos_tied * (neg_below + 0.5 * neg_tied)).sum(axis=1)
    return _divide(wins, pos_tied.sum(axis=1) * neg_tied.sum(axis=1))


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b elementwise, NaN where b is 0 (an undefined ratio, never silently 0)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = np.full(np.broadcast(a, b).shape, np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _multiclass_inputs(y_true, probs, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=float)
    num_classes = len(class_names)
    if num_classes < 2 or len(set(class_names)) != num_classes:
        raise ValueError(f"need at least two distinct class names, got {list(class_names)}")
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise ValueError(f"probabilities must be images x {num_classes} classes, got shape {probs.shape}")
    if len(y_true) != len(probs):
        raise ValueError("labels and probabilities must have the same length")
    _check_labels(y_true, num_classes)
    return y_true.astype(int), probs


def _check_labels(y_true: np.ndarray, num_classes: int) -> None:
    integral = np.array_equal(y_true, np.round(y_true))
    if len(y_true) and (not integral or y_true.min() < 0 or y_true.max() >= num_classes):
        raise ValueError(f"labels must be class indices 0..{num_classes - 1}")


def _multiclass_columns(class_names, accuracy, precision, recall, f1, auc) -> dict[str, np.ndarray]:
    """Every key of :func:`multiclass_metrics` -> its value per resample, from (resamples,) accuracy and
    (resamples x classes) per-class arrays."""
    per_class = {"precision": precision, "recall": recall, "f1": f1, "auc": auc}
    columns = {"accuracy": np.asarray(accuracy, dtype=float)}
    columns.update({f"macro_{name}": _nanmean_rows(values) for name, values in per_class.items()})
    for name, values in per_class.items():
        columns.update({f"{name}/{c}": values[:, k] for k, c in enumerate(class_names)})
    return columns


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Row means over the defined (non-NaN) entries; NaN for a row with none, without a warning."""
    defined = ~np.isnan(values)
    return _divide(np.where(defined, values, 0.0).sum(axis=1), defined.sum(axis=1))


def _percentile_interval(values, alpha: float) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))


def json_safe(value):
    """Undefined values (NaN) become JSON null, so that a metrics.json is valid JSON."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
