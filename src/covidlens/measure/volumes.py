"""Areas, volumes and involvement from binary masks and voxel spacing.

Spacing follows :class:`covidlens.data.io.Scan`: millimetres, ``(row, col)`` for a 2-D slice and
``(slice, row, col)`` for a (D, H, W) volume. The functions named ``..._mm2`` / ``..._ml`` need a
spacing and raise :class:`CovidlensError` without one, because a number in mm from a guessed pixel
size would look trustworthy and is not. :func:`measure_areas` and :func:`measure_volume` accept
``spacing=None`` and then answer in pixels / voxels, with the unit carried in the result so that a
report can never print a pixel count as mm².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from covidlens.errors import CovidlensError

# MosMedData (Morozov et al. 2020) grades involvement of the lung parenchyma as CT-0 (none), CT-1
# (< 25 %), CT-2 (25-50 %), CT-3 (50-75 %) and CT-4 (> 75 %). The published ranges share their end
# points; here every class but CT-0 is half-open on the right: CT-1 is 0 < p < 25, CT-2 25 <= p < 50,
# CT-3 50 <= p < 75 and CT-4 75 <= p <= 100, so exactly 25 % is CT-2 and exactly 75 % is CT-4.
SEVERITY_CLASSES = ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")
_SEVERITY_LOWER_BOUNDS = (25.0, 50.0, 75.0)


@dataclass(frozen=True)
class Quantity:
    """A measured amount with its unit: ``"mm2"`` or ``"pixels"`` for areas, ``"mL"`` or ``"voxels"``
    for volumes. ``value`` is a float, or a float array (one area per slice) for per-slice areas."""

    value: float | np.ndarray
    units: str

    @property
    def calibrated(self) -> bool:
        """True when the value is in physical units (mm² or mL), False when in pixels or voxels."""
        return self.units in ("mm2", "mL")


def pixel_area_mm2(spacing) -> float:
    """Area of one pixel in mm² from a (row, col) or (slice, row, col) spacing (the last two are used)."""
    values = _spacing(spacing, None, "a pixel area in mm²")
    if len(values) not in (2, 3):
        raise CovidlensError(
            f"Spacing {tuple(values)} has {len(values)} values; give (row, col) or (slice, row, col) in mm."
        )
    return values[-2] * values[-1]


def voxel_volume_mm3(spacing) -> float:
    """Volume of one voxel in mm³ from a (slice, row, col) spacing."""
    values = _spacing(spacing, 3, "a voxel volume in mm³")
    return values[0] * values[1] * values[2]


def mask_area_mm2(mask2d, spacing) -> float:
    """Area of a 2-D mask in mm²: pixel count times pixel area."""
    mask = _mask(mask2d, 2, "mask2d")
    return float(np.count_nonzero(mask)) * pixel_area_mm2(_spacing(spacing, 2, "an area in mm²"))


def per_slice_areas_mm2(mask3d, spacing) -> np.ndarray:
    """Area in mm² of each slice (axis 0) of a (D, H, W) mask, as a float array of length D."""
    mask = _mask(mask3d, 3, "mask3d")
    area = pixel_area_mm2(_spacing(spacing, 3, "per-slice areas in mm²"))
    return np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1).astype(np.float64) * area


def lesion_volume_ml(mask3d, spacing) -> float:
    """Volume of a (D, H, W) mask in mL: voxel count times voxel volume in mm³, divided by 1000.

    Works for any binary mask (lesion or lung). Slices are taken as contiguous with the slice
    spacing as their thickness, which is how MosMedData and COVID-CT-MD volumes are stored.
    """
    mask = _mask(mask3d, 3, "mask3d")
    return float(np.count_nonzero(mask)) * voxel_volume_mm3(spacing) / 1000.0


def measure_areas(mask, spacing=None) -> Quantity:
    """Area of a 2-D mask (a float) or of each slice of a 3-D mask (an array), in mm² when spacing is
    known and in pixels (``units="pixels"``) when it is None."""
    mask = _mask(mask, (2, 3), "mask")
    if spacing is None:
        counts = np.count_nonzero(mask.reshape(-1, *mask.shape[-2:]), axis=(1, 2)).astype(np.float64)
        return Quantity(float(counts[0]) if mask.ndim == 2 else counts, "pixels")
    if mask.ndim == 2:
        return Quantity(mask_area_mm2(mask, spacing), "mm2")
    return Quantity(per_slice_areas_mm2(mask, spacing), "mm2")


def measure_volume(mask3d, spacing=None) -> Quantity:
    """Volume of a (D, H, W) mask in mL when spacing is known, in voxels (``units="voxels"``) when None."""
    mask = _mask(mask3d, 3, "mask3d")
    if spacing is None:
        return Quantity(float(np.count_nonzero(mask)), "voxels")
    return Quantity(lesion_volume_ml(mask, spacing), "mL")


def restrict_to_lung(lesion, lung) -> np.ndarray:
    """The lesion mask with every pixel outside the lung mask removed (a boolean array).

    A lesion model sees the whole slice and fires on things that only look like lesions (bowel,
    the heart's edge, the table); the lung mask is the cheapest way to drop them.
    """
    lesion_mask, lung_mask = _pair(lesion, lung)
    return lesion_mask & lung_mask


def percent_involved(lesion, lung) -> float:
    """Percentage of the lung occupied by lesion: |lesion ∩ lung| / |lung| x 100.

    Lesion pixels outside the lung do not count. Both masks share one grid, so the ratio needs no
    spacing. An empty lung mask raises :class:`CovidlensError`: there is nothing to grade.
    """
    lesion_mask, lung_mask = _pair(lesion, lung)
    lung_count = np.count_nonzero(lung_mask)
    if lung_count == 0:
        raise CovidlensError(
            "The lung mask is empty, so no percentage of lung involvement exists; check that the image "
            "shows the lungs and that the lung segmentation ran on Hounsfield units."
        )
    return 100.0 * float(np.count_nonzero(lesion_mask & lung_mask)) / float(lung_count)


def severity_class(percent: float) -> str:
    """MosMedData severity class for a percentage of lung involved: "CT-0" for exactly 0 %, "CT-1"
    for 0 < p < 25, "CT-2" for 25 <= p < 50, "CT-3" for 50 <= p < 75 and "CT-4" for 75 <= p <= 100."""
    try:
        value = float(percent)
    except (TypeError, ValueError):
        raise CovidlensError(f"Percent involved must be a number from 0 to 100, not {percent!r}.") from None
    if not math.isfinite(value) or value < 0.0 or value > 100.0:
        raise CovidlensError(f"Percent involved must be a number from 0 to 100, not {percent!r}.")
    if value == 0.0:
        return SEVERITY_CLASSES[0]
    return SEVERITY_CLASSES[1 + sum(value >= bound for bound in _SEVERITY_LOWER_BOUNDS)]


def _pair(lesion, lung) -> tuple[np.ndarray, np.ndarray]:
    lesion_mask = _mask(lesion, (2, 3), "lesion")
    lung_mask = _mask(lung, (2, 3), "lung")
    if lesion_mask.shape != lung_mask.shape:
        raise CovidlensError(
            f"The lesion mask has shape {lesion_mask.shape} but the lung mask has shape {lung_mask.shape}; "
            "both must come from the same image grid."
        )
    return lesion_mask, lung_mask


def _mask(mask, ndim: int | tuple[int, ...], name: str) -> np.ndarray:
    """A boolean view of a mask, after checking it is an array of the expected dimension holding
    only 0/1 (or bool): a class-index or 0/255 mask would otherwise be counted silently wrong."""
    dims = (ndim,) if isinstance(ndim, int) else ndim
    array = np.asarray(mask)
    wanted = " or ".join(f"{d}-D" for d in dims)
    if array.ndim not in dims:
        raise CovidlensError(
            f"{name} has shape {array.shape} ({array.ndim}-D) but a {wanted} mask is needed "
            f"({'(H, W)' if dims == (2,) else '(D, H, W)' if dims == (3,) else '(H, W) or (D, H, W)'})."
        )
    if array.dtype == bool:
        return array
    if not (np.issubdtype(array.dtype, np.number)) or not ((array == 0) | (array == 1)).all():
        raise CovidlensError(
            f"{name} must be a binary mask holding only 0 and 1 (or True/False); convert it first "
            "(for example mask > 0 for a 0/255 image, or mask == k for one class of a label map)."
        )
    return array.astype(bool)


def _spacing(spacing, length: int | None, purpose: str) -> tuple[float, ...]:
    if spacing is None:
        raise CovidlensError(
            f"The image has no voxel spacing, so {purpose} cannot be computed; use a file that records "
            "its spacing (DICOM PixelSpacing, NIfTI header) or measure in pixels with spacing=None."
        )
    try:
        values = tuple(float(v) for v in spacing)
    except (TypeError, ValueError):
        raise CovidlensError(f"Spacing must be a sequence of numbers in mm, not {spacing!r}.") from None
    if length is not None and len(values) != length:
        raise CovidlensError(
            f"Spacing {values} has {len(values)} values but {purpose} needs {length} "
            f"({'(row, col)' if length == 2 else '(slice, row, col)'} in mm)."
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise CovidlensError(f"Spacing {values} must hold positive, finite millimetre values.")
    return values
