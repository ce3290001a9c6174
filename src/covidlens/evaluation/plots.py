"""Figures for reports: ROC curves, confusion matrices and training curves (matplotlib, no screen)."""

from __future__ import annotations

import csv
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


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=120)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black", fontsize=12)
    ax.set_xticks(range(len(classes)), [f"pred {c}" for c in classes])
    ax.set_yticks(range(len(classes)), [f"true {c}" for c in classes])
    ax.set_title(title)
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
