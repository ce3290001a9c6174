"""Seed 004's two-stage cascade, scored exactly like a 3-class model, and its fewest-missed operating point.

Seed 004 weighs one 3-class model (normal / covid / non-covid) against a cascade of two binary models:
stage 1 tells normal from infected, stage 2 tells covid from non-covid among the infected. Here the
cascade's two probabilities become three class probabilities,

    P(normal) = 1 - P(infected)
    P(covid) = P(infected) * P(covid | infected)
    P(non-covid) = P(infected) * (1 - P(covid | infected))

so that both designs return the same label set and go through the same multiclass metrics,
intervals and confusion matrices (:mod:`covidlens.evaluation.metrics`). The most probable of the three
is the stage-by-stage decision: normal when P(infected) < 0.5, else the stage-2 winner.

The report kept "the set of parameters which provide lowest false negative numbers". Its operating
point here: call an image infected when P(infected) = 1 - P(normal) reaches a threshold, and take the
highest threshold that misses no infected image of the validation split (no lower threshold misses
fewer, and the highest keeps the most normals right); an infected image is then assigned its most
probable infected class. It is chosen on validation and reported on test, with what it costs in
normals called infected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from covidlens.checkpoint import Checkpoint
from covidlens.errors import CovidlensError
from covidlens.evaluation.operating_points import choose_for_sensitivity
from covidlens.inference import class_probabilities

#: Column order of :func:`cascade_probabilities`, the order of the data set ``sutd-3class``.
CASCADE_CLASSES = ("normal", "covid", "non-covid")


def cascade_probabilities(p_infected, p_covid_given_infected) -> np.ndarray:
    """N x 3 probabilities (columns :data:`CASCADE_CLASSES`) from the two stages' probabilities."""
    p_infected = np.asarray(p_infected, dtype=float)
    p_covid = np.asarray(p_covid_given_infected, dtype=float)
    if p_infected.shape != p_covid.shape or p_infected.ndim != 1:
        raise ValueError("give one P(infected) and one P(covid | infected) per image")
    return np.stack([1.0 - p_infected, p_infected * p_covid, p_infected * (1.0 - p_covid)], axis=1)


def _column(ckpt: Checkpoint, name: str, stage: str) -> int:
    if name not in ckpt.info.classes or not ckpt.info.binary:
        raise CovidlensError(
            f"the {stage} model must be a binary model with a class {name!r}; its classes are "
            f"{', '.join(ckpt.info.classes)}."
        )
    return ckpt.info.classes.index(name)


def cascade_predict(stage1: Checkpoint, stage2: Checkpoint, samples, batch_size: int = 32) -> np.ndarray:
    """N x 3 cascade probabilities of ``samples``: stage 1 (classes ``normal`` and ``infected``) on
    every image, stage 2 (``covid`` and ``non-covid``) on every image too, so that each image gets all
    three probabilities and not only those of the branch it falls into."""
    infected = _column(stage1, "infected", "stage-1")
    covid = _column(stage2, "covid", "stage-2")
    p_infected = class_probabilities(stage1, samples, batch_size)[:, infected]
    p_covid = class_probabilities(stage2, samples, batch_size)[:, covid]
    return cascade_probabilities(p_infected, p_covid)


def infected_score(probs, normal: int = 0) -> np.ndarray:
    """P(infected) = 1 - P(normal) per image."""
    return 1.0 - np.asarray(probs, dtype=float)[:, normal]


def fewest_missed_threshold(y_true, probs, normal: int = 0) -> float:
    """The highest threshold on P(infected) that misses no infected image of ``y_true`` (validation)."""
    infected = (np.asarray(y_true) != normal).astype(int)
    if not infected.any():
        raise CovidlensError("cannot choose the fewest-missed threshold: the validation split has no infected image.")
    return choose_for_sensitivity(infected, infected_score(probs, normal), target=1.0)


def operating_point_predictions(probs, threshold: float, normal: int = 0) -> np.ndarray:
    """Class index per image: normal below ``threshold`` on P(infected), else its most probable other class."""
    probs = np.asarray(probs, dtype=float)
    others = probs.copy()
    others[:, normal] = -np.inf
    return np.where(infected_score(probs, normal) >= threshold, others.argmax(axis=1), normal)


def infected_counts(y_true, pred, normal: int = 0) -> dict[str, int]:
    """Infected-versus-normal counts of class predictions: missed infected (false negatives), normals
    called infected (false positives), and both kinds right."""
    truly = np.asarray(y_true) != normal
    called = np.asarray(pred) != normal
    return {
        "missed_infected": int((truly & ~called).sum()),
        "normal_called_infected": int((~truly & called).sum()),
        "infected_found": int((truly & called).sum()),
        "normal_cleared": int((~truly & ~called).sum()),
    }


def per_class_rates(matrix, class_names: Sequence[str]) -> dict[str, float]:
    """Precision and recall of each class from a K x K confusion matrix (rows true, columns predicted);
    NaN where a class is never predicted or has no images."""
    matrix = np.asarray(matrix, dtype=float)
    tp = np.diag(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(matrix.sum(axis=0) > 0, tp / matrix.sum(axis=0), np.nan)
        recall = np.where(matrix.sum(axis=1) > 0, tp / matrix.sum(axis=1), np.nan)
    out = {"accuracy": float(tp.sum() / matrix.sum())}
    for k, name in enumerate(class_names):
        out[f"precision/{name}"] = float(precision[k])
        out[f"recall/{name}"] = float(recall[k])
    return out
