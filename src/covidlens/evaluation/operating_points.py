"""Operating points: where a score becomes a decision, chosen on validation and named the same everywhere.

A model's score (P(COVID), a lesion burden) only turns into a decision at a threshold. Thresholds are
chosen on validation data, never on the data they are reported on, and stored with the model; users
pick one by name. The CLI (``--operating-point``), the Python API and the web service
(``operating_point=``) take the same names, and every decision carries the sentence that says what the
threshold means, so a report can never show a verdict without its rule.

- ``default``: the model's own threshold (0.5 for a classifier trained with a balanced loss);
- ``sensitivity``: the highest threshold whose validation sensitivity reaches the model's target
  (fewer missed cases, more false alarms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidlens.errors import CovidlensError

#: The names a user may ask for, in the CLI and the API alike.
NAMES = ("default", "sensitivity")


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    #: Decision threshold on the score; None for a K-class model deciding by its most probable class.
    threshold: float | None
    #: What the threshold means, in one sentence a reader of a report understands.
    statement: str


def check_name(name: str) -> str:
    """``name`` if it is an operating point's name; one sentence otherwise."""
    if name not in NAMES:
        raise CovidlensError(f"Unknown operating point {name!r}; choose one of {', '.join(NAMES)}.")
    return name


def classifier_point(info, name: str = "default") -> OperatingPoint:
    """The named operating point of a classifier checkpoint (:class:`~covidlens.checkpoint.ModelInfo`)."""
    check_name(name)
    if info.positive_class is None:
        return OperatingPoint(name, None, "The most probable class is the decision (this model names no positive class).")
    score = f"P({info.positive_class})"
    if name == "sensitivity":
        if info.sensitivity_threshold is None:
            raise CovidlensError("this model has no validation-chosen sensitivity threshold; use the default operating point.")
        target = f"{info.target_sensitivity:.0%} " if info.target_sensitivity is not None else ""
        return OperatingPoint(name, float(info.sensitivity_threshold), (
            f"{info.positive_class} when {score} >= {info.sensitivity_threshold:.3f}, the threshold chosen on validation "
            f"for {target}sensitivity (more false alarms, fewer missed cases)."))
    return OperatingPoint(name, float(info.threshold),
                          f"{info.positive_class} when {score} >= {info.threshold:.3f}, the model's default threshold.")


def choose_for_sensitivity(y_val, scores_val, target: float = 0.95) -> float:
    """The highest threshold whose sensitivity on validation labels ``y_val`` (1 = positive) is at least
    ``target``: the highest such threshold keeps specificity as high as the target allows."""
    y_true = np.asarray(y_val).astype(int)
    prob = np.asarray(scores_val, dtype=float)
    if not (y_true == 1).any():
        raise ValueError("cannot choose a sensitivity threshold without positive cases")
    positives = np.sort(prob[y_true == 1])[::-1]
    needed = int(np.ceil(target * len(positives)))
    return float(positives[max(needed, 1) - 1])


def choose_for_specificity(y_val, scores_val, target: float) -> float:
    """The lowest threshold whose validation specificity is at least ``target``: negatives scoring at or
    above it are false alarms, so it sits just above the ``target`` quantile of the negatives' scores."""
    y = np.asarray(y_val).astype(int)
    negatives = np.sort(np.asarray(scores_val, dtype=float)[y == 0])
    if negatives.size == 0:
        raise CovidlensError("cannot choose a specificity threshold without negative cases.")
    # Negatives that may score at or above it; the tolerance keeps (1 - 0.9) * 10 from rounding to 0.
    allowed = int(np.floor((1.0 - target) * negatives.size + 1e-9))
    above = negatives[negatives.size - allowed - 1]
    return float(np.nextafter(above, np.inf))
