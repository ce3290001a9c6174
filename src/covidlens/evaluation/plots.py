"""Figures for reports: ROC curves, confusion matrices, reliability diagrams and training curves
(matplotlib, no screen)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402


def plot_roc(curves: dict[str, tuple], path: Path, title: str = "ROC") -> None:
    """One ROC curve per entry ``name -> (y_true, probability)``, with its AUC in the legend."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    for name, (y, prob) in curves.items():
        fpr, tpr, _ = roc_curve(y, prob)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, prob):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_reliability(curves: dict[str, list[dict]], path: Path, title: str = "reliability") -> None:
    """Reliability diagram: per model, the observed frequency against the mean predicted probability of
    each non-empty bin (:func:`covidlens.evaluation.calibration.reliability`), marker area by image count;
    the diagonal is perfect calibration."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfectly calibrated")
    for name, bins in curves.items():
        shown = [b for b in bins if b["n"]]
        total = sum(b["n"] for b in shown) or 1
        xs, ys = [b["predicted"] for b in shown], [b["observed"] for b in shown]
        line = ax.plot(xs, ys, marker="", linewidth=1.2, label=f"{name} ({total} images)")[0]
        ax.scatter(xs, ys, s=[20 + 400 * b["n"] / total for b in shown], color=line.get_color(), alpha=0.7)
    ax.set(xlabel="predicted probability (bin mean)", ylabel="observed frequency", title=title,
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_roc_one_vs_rest(
    y_true, probs, class_names: Sequence[str], path: Path, title: str = "ROC, one class vs the rest"
) -> None:
    """One ROC curve per class (that class against all others), its AUC and image count in the legend.

    A class with no images, or holding every image, has no ROC curve; it is listed in the legend
    as undefined instead of being dropped silently.
    """
    y_true, probs = np.asarray(y_true).astype(int), np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(f"probabilities must be images x {len(class_names)} classes, got shape {probs.shape}")
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    for k, name in enumerate(class_names):
        is_k = y_true == k
        if 0 < is_k.sum() < len(y_true):
            fpr, tpr, _ = roc_curve(is_k, probs[:, k])
            ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(is_k, probs[:, k]):.3f}, n={is_k.sum()})")
        else:
            ax.plot([], [], linestyle="none", label=f"{name} (AUC undefined, n={is_k.sum()})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """Confusion counts for any number of classes: rows true, columns predicted, each count in its cell.

    The figure grows with the number of classes so that cells and names stay readable.
    """
    matrix = np.asarray(matrix)
    k = len(class_names)
    if matrix.shape != (k, k):
        raise ValueError(f"a confusion matrix for {k} classes must be {k} x {k}, got shape {matrix.shape}")
    side = 2.0 + 0.7 * k
    fig, ax = plt.subplots(figsize=(side + 0.6, side), dpi=120)
    ax.imshow(matrix, cmap="Blues", vmin=0)
    fontsize = max(6, 12 - k // 2)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=fontsize,
                color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks(range(k), class_names, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_training_curves(metrics_csv: Path, path: Path) -> None:
    """Loss and validation AUC/accuracy per epoch from Lightning's CSV log."""
    epochs: dict[int, dict[str, float]] = {}
    with Path(metrics_csv).open(newline="") as handle:
        for row in csv.DictReader(handle):
            if not row.get("epoch"):
                continue
            entry = epochs.setdefault(int(float(row["epoch"])), {})
            for key, value in row.items():
                if value not in ("", None) and key not in ("epoch", "step"):
                    entry[key] = float(value)
    xs = sorted(epochs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=120)
    for key in ("train_loss", "val_loss"):
        pts = [(x, epochs[x][key]) for x in xs if key in epochs[x]]
        if pts:
            left.plot(*zip(*pts), marker="o", label=key)
    for key in ("val_auc", "val_acc"):
        pts = [(x, epochs[x][key]) for x in xs if key in epochs[x]]
        if pts:
            right.plot(*zip(*pts), marker="o", label=key)
    left.set(xlabel="epoch", title="loss")
    right.set(xlabel="epoch", title="validation", ylim=(0, 1))
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
