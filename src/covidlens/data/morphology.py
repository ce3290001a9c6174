"""Shape rules on 8-bit grey slices shared by the body cut-out (:mod:`covidlens.data.body`) and the
classical lung masks (:mod:`covidlens.measure.lungs`): where a slice splits into dark and light, and
the filled convex hull of a piece of a mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def otsu_threshold(grey: np.ndarray) -> float:
    """The grey level that best splits the slice's histogram into two classes (Otsu 1979)."""
    hist = np.bincount(np.clip(np.asarray(grey), 0, 255).astype(np.int64).ravel(), minlength=256).astype(float)
    p = hist / hist.sum()
    weight = np.cumsum(p)
    mean = np.cumsum(p * np.arange(256))
    between = (mean[-1] * weight - mean) ** 2 / np.maximum(weight * (1.0 - weight), 1e-12)
    return float(np.argmax(between)) + 0.5


def filled_convex_hull(piece: np.ndarray) -> np.ndarray:
    """The filled convex hull of one 2-D boolean piece (the piece itself when it is a line)."""
    from scipy.spatial import ConvexHull, Delaunay, QhullError

    points = np.argwhere(piece)
    try:
        # Triangulate the hull's corners only: a Delaunay of every pixel of a grid is very slow.
        triangulation = Delaunay(points[ConvexHull(points).vertices])
    except (QhullError, ValueError):
        return piece
    rows, cols = ndi.find_objects(piece.astype(np.int32))[0]
    grid = np.mgrid[rows, cols].reshape(2, -1).T
    inside = (triangulation.find_simplex(grid) >= 0).reshape(rows.stop - rows.start, cols.stop - cols.start)
    out = piece.copy()
    out[rows, cols] |= inside
    return out
