"""What :func:`covidlens.data.io.read_scan` returns: one image or volume with its units and geometry.

Its own module so that reading (:mod:`covidlens.data.io`) and turning values into grey levels
(:mod:`covidlens.data.intensity`) both depend on it, and not on each other both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Scan:
    """One image or volume as read from disk, in its own units.

    ``pixels`` is float32, (H, W) for a slice or radiograph and (D, H, W) for a volume; bright always
    means dense. ``spacing`` is in mm, (row, col) or (slice, row, col), None when the file does not say.
    ``units`` is ``"HU"`` (CT) or ``"raw"``; ``photometric`` is the photometric interpretation (DICOM) or
    PIL mode as stored; ``window`` is the file's own display window (centre, width) in the units of
    ``pixels``; ``positions`` are, for a volume, each slice's position along the stacking axis in mm.
    """

    pixels: np.ndarray
    spacing: tuple[float, ...] | None
    modality: str
    units: str
    photometric: str
    format: str
    path: Path
    window: tuple[float, float] | None = None
    bits: int = 8
    positions: tuple[float, ...] | None = None
    #: A DICOM series' files in the order of axis 0 (what a DICOM SEG must reference, slice by slice).
    files: tuple[Path, ...] | None = None
    #: A volume's 4 x 4 voxel-to-world (RAS, mm) matrix for the array
    #: :func:`covidlens.data.io.source_layout` returns, so masks written as NIfTI lie on the scan in any
    #: viewer; None when the file gives no geometry.
    affine: np.ndarray | None = None
    #: How a NIfTI file's axes became (slice, row, col): (row_axis, col_axis, flip_axis0, flip_axis1).
    layout: tuple[int, int, bool, bool] | None = None

    @property
    def ndim(self) -> int:
        return self.pixels.ndim
