"""Binary screening metrics with bootstrap confidence intervals and operating points.

Point estimates come from scikit-learn; the intervals are percentile bootstrap intervals over
images (resampled with replacement, 2000 times by default). Images of one patient are not independent,
so these intervals are, if anything, too narrow; they are reported as the honest minimum.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "auc")


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


def _resamples(y_true: np.ndarray, n_boot: int, seed: int):
    """Index arrays of ``n_boot`` resamples with replacement; draws holding one class only are skipped
    (AUC, recall and specificity are undefined on them)."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    for _ in range(n_boot):
        index = rng.integers(0, n, n)
        if len(np.unique(y_true[index])) == 2:
            yield index


def _percentile_interval(values, alpha: float) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))


def bootstrap_ci(
    y_true, prob, threshold: float = 0.5, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap (1 - alpha) interval for every metric of :func:`binary_metrics`."""
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, dtype=float)
    draws = {name: [] for name in METRICS}
    for index in _resamples(y_true, n_boot, seed):
        for name, value in binary_metrics(y_true[index], prob[index], threshold).items():
            draws[name].append(value)
    return {name: _percentile_interval(values, alpha) for name, values in draws.items()}


def paired_bootstrap_difference(
    y_true, prob_a, prob_b, metric: str = "auc", threshold: float = 0.5, n_boot: int = 2000, alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``metric(a) - metric(b)`` on the same images, with a paired percentile bootstrap interval.

    Both models are scored on each resampled set of images, so the interval is that of the
    difference itself; it is much narrower than comparing the two models' separate intervals, which
    overlap even when one model is consistently better. An interval that contains 0 is a tie.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    y_true = np.asarray(y_true).astype(int)
    prob_a, prob_b = np.asarray(prob_a, dtype=float), np.asarray(prob_b, dtype=float)
    if not len(y_true) == len(prob_a) == len(prob_b):
        raise ValueError("labels and both models' probabilities must have the same length")
    estimate = binary_metrics(y_true, prob_a, threshold)[metric] - binary_metrics(y_true, prob_b, threshold)[metric]
    draws = [
        binary_metrics(y_true[index], prob_a[index], threshold)[metric]
        - binary_metrics(y_true[index], prob_b[index], threshold)[metric]
        for index in _resamples(y_true, n_boot, seed)
    ]
    return (float(estimate), *_percentile_interval(draws, alpha))


def threshold_for_sensitivity(y_true, prob, target: float = 0.95) -> float:
    """The highest threshold whose sensitivity on (validation) data is at least ``target``.

    Taking the highest such threshold keeps specificity as high as the sensitivity target allows.
    """
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, dtype=float)
    if not (y_true == 1).any():
        raise ValueError("cannot choose a sensitivity threshold without positive cases")
    positives = np.sort(prob[y_true == 1])[::-1]
    needed = int(np.ceil(target * len(positives)))
    return float(positives[max(needed, 1) - 1])


def roc_points(y_true, prob) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds of the ROC curve."""
    return roc_curve(np.asarray(y_true).astype(int), np.asarray(prob, dtype=float))


def confusion(y_true, prob, threshold: float = 0.5) -> np.ndarray:
    """2x2 confusion matrix, rows true class (negative, positive), columns predicted."""
    pred = (np.asarray(prob, dtype=float) >= threshold).astype(int)
    return confusion_matrix(np.asarray(y_true).astype(int), pred, labels=[0, 1])
