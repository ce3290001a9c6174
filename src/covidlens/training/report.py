"""Figures written next to a finished training run."""

from __future__ import annotations

from pathlib import Path

from covidlens.evaluation.plots import plot_training_curves


def write_training_curves(run_dir: str | Path) -> Path | None:
    """Plot ``logs/metrics.csv`` of a run to ``training_curves.png``; None when there is no log."""
    run_dir = Path(run_dir)
    log = run_dir / "logs" / "metrics.csv"
    if not log.is_file():
        return None
    target = run_dir / "training_curves.png"
    plot_training_curves(log, target)
    return target
