"""Does the heat fall on the lesions? Measurements of explanation maps against expert masks.

* pointing game: the map's maximum lies inside the lesion mask dilated by ``tolerance`` pixels; its
  chance level is the dilated mask's share of the image (where a uniformly random point lands).
* energy in mask: the share of the map's total heat inside the (undilated) mask, against the mask's
  share of the image, which is what a flat, uninformative map scores.
* randomisation check (Adebayo et al. 2018): maps of the same architecture with re-initialised
  weights should not resemble the trained model's; reported as the Spearman rank correlation.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation
from scipy.stats import spearmanr


def pointing_hit(heat: np.ndarray, mask: np.ndarray, tolerance: int = 5) -> tuple[bool, float]:
    """(hit, chance) for one map and a boolean mask of the same shape.

    A map with no positive value (no evidence for the class anywhere) points nowhere: a miss.
    """
    grown = binary_dilation(mask, iterations=tolerance) if tolerance > 0 else mask
    if not np.any(heat > 0):
        return False, float(grown.mean())
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool(grown[r, c]), float(grown.mean())


def energy_in_mask(heat: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(share of heat inside the mask, share of the image the mask covers)."""
    total = float(heat.sum())
    inside = float(heat[mask].sum()) / total if total > 0 else float("nan")
    return inside, float(mask.mean())


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps; NaN when either is constant (undefined, not zero)."""
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def mean_ci(values, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(n_boot)]
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))
