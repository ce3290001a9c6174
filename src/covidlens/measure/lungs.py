"""A classical lung mask for CT in Hounsfield units.

Why classical: on CT in HU the lungs are the only large body of aerated tissue inside the body, so a
threshold plus connected components finds them without a trained model, runs in seconds on a CPU and
fails in ways one can reason about. It is the mask used to drop lesion predictions outside the lungs
and to turn lesion volume into a percentage of lung.

The method, slice geometry (row, col) or (slice, row, col) as in :class:`covidlens.data.io.Scan`:

1. Air-like voxels: HU below :data:`LUNG_THRESHOLD_HU` (-320 HU, between aerated lung, about
   -850, and soft tissue, about 0 to 60).
2. Air outside the body: every air-like region that touches the edge of its slice (room air, the
   scanner's -2048/-3024 padding outside the field of view) is removed, slice by slice, so air
   under the table or beside the arms does not join the lungs through the volume's top or bottom.
3. Connected components of what is left (2-D for a slice, 3-D for a volume). A component counts as
   lung when it is of lung size (at least :data:`MIN_LUNG_AREA_MM2` in a slice,
   :data:`MIN_LUNG_VOLUME_ML` in a volume) and is aerated tissue rather than gas: its first quartile
   is above :data:`GAS_QUARTILE_HU`. Gas in the stomach, the bowel or the trachea is nearly pure air,
   while the vessels and the interstitium keep the first quartile of a lung higher (docs/results.md,
   section 5, gives the quartiles measured on the real scans). In a volume, an air body of at least
   :data:`CERTAIN_LUNG_VOLUME_ML` is lung whatever its values: bowel or stomach gas is rarely that
   large, and an emphysematous lung, darker than the gas rule allows, is kept. All such components
   are kept: usually the two lungs (or both joined through the trachea in a volume), sometimes
   pieces of one lung cut apart by dense consolidation.
4. Each 2-D piece of the mask in each slice, on its own, is closed with a disc of
   :data:`CLOSING_RADIUS_MM` and hole-filled, so vessels, nodules and lesions enclosed by lung are
   kept, while the two lungs are never joined into a ring that would fill the mediastinum.

Slices without lungs (abdomen only) give an empty mask. Known limits: dense consolidation that
touches the chest wall is not enclosed by aerated lung and is left out; in a single slice, severe
emphysema (a quarter of a lung below -915 HU) is taken for gas; the trachea and main bronchi stay in
a volume's mask.

8-bit slices carry no HU: :func:`segment_lungs_hu` refuses arrays without negative values and
:func:`segment_lungs_grey` maps grey levels back through a stated display window first.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from covidlens.data.intensity import LUNG_WINDOW
from covidlens.data.morphology import filled_convex_hull, otsu_threshold
from covidlens.errors import CovidlensError

LUNG_THRESHOLD_HU = -320.0
GAS_QUARTILE_HU = -915.0
MIN_LUNG_AREA_MM2 = 300.0
MIN_LUNG_VOLUME_ML = 20.0
CERTAIN_LUNG_VOLUME_ML = 1000.0
CLOSING_RADIUS_MM = 2.0
# Used only to size the thresholds above in pixels when a scan records no spacing: a typical chest
# CT (2.5 mm slices, 0.75 mm pixels). The mask is still right; only what "lung size" means shifts.
_ASSUMED_SPACING = (2.5, 0.75, 0.75)
# In-plane neighbours only: components that do not reach into the next or previous slice.
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndi.generate_binary_structure(2, 1)


def segment_lungs_hu(hu, spacing=None) -> np.ndarray:
    """Boolean lung mask of a CT slice (H, W) or volume (D, H, W) in Hounsfield units.

    ``spacing`` is (row, col) or (slice, row, col) in mm; it sets what "lung size" and the closing
    radius mean in pixels (a typical chest CT is assumed when it is None). The module docstring
    describes the method and its limits. Raises :class:`CovidlensError` for arrays that are not 2-D
    or 3-D, or that hold no negative value (8-bit grey levels, see :func:`segment_lungs_grey`, or
    stored DICOM values before the rescale to HU).
    """
    array = np.asarray(hu)
    if array.ndim not in (2, 3) or min(array.shape) < 3:
        raise CovidlensError(
            f"Lung segmentation needs a CT slice (H, W) or volume (D, H, W), not an array of shape {array.shape}."
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise CovidlensError(f"Lung segmentation needs Hounsfield units as real numbers, not {array.dtype} values.")
    finite = array[np.isfinite(array)]
    if finite.size and float(finite.min()) >= 0.0:
        if float(finite.max()) <= 255.0:
            raise CovidlensError(
                "These values lie within 0..255, which looks like an 8-bit grey image rather than Hounsfield units "
                "(air is -1000 HU); read the CT in HU, or use segment_lungs_grey for a lung-window 8-bit slice."
            )
        raise CovidlensError(
            "These values hold nothing below 0, so they are not Hounsfield units (air is -1000 HU) but probably "
            "stored DICOM values; apply RescaleSlope and RescaleIntercept (covidlens.data.io.read_scan does)."
        )
    volume = array[None] if array.ndim == 2 else array
    slice_mm, row_mm, col_mm = _spacing(spacing, array.ndim)

    air = np.nan_to_num(volume.astype(np.float32, copy=False), nan=0.0) < LUNG_THRESHOLD_HU
    candidates = air & ~_touching_slice_edge(air)
    if array.ndim == 2:
        min_voxels, certain_voxels = MIN_LUNG_AREA_MM2 / (row_mm * col_mm), np.inf
        labels, count = ndi.label(candidates, structure=_IN_PLANE)
    else:
        voxel_ml = slice_mm * row_mm * col_mm / 1000.0
        min_voxels, certain_voxels = MIN_LUNG_VOLUME_ML / voxel_ml, CERTAIN_LUNG_VOLUME_ML / voxel_ml
        labels, count = ndi.label(candidates)
    lung = np.isin(labels, _lung_labels(volume, labels, count, min_voxels, certain_voxels))

    radius = max(1, int(round(CLOSING_RADIUS_MM / min(row_mm, col_mm))))
    lung = _close_and_fill_each_piece(lung, radius)
    return lung[0] if array.ndim == 2 else lung


def segment_lungs_grey(grey, spacing=None, window: tuple[float, float] = LUNG_WINDOW) -> np.ndarray:
    """Lung mask of an 8-bit grey CT slice or volume, for images that carry no Hounsfield units.

    The grey levels are mapped back to approximate HU through the display window they were made with
    (``window`` = (centre, width); the default is covidlens's lung window, -1350 HU black to 150 HU
    white, in which the -320 HU threshold is grey level 175), then :func:`segment_lungs_hu` runs.
    This is only as right as the window: for images of unknown windowing (figures cropped from
    papers) the mask is a rough guide, and images cropped to the lungs break step 2 of the method
    (lung reaching the image edge is taken for outside air): on MedSeg's lung crops the mask is mostly
    empty (docs/results.md, section 5); for such crops see :func:`segment_lungs_cropped`. Values
    outside 0..255 raise :class:`CovidlensError`.
    """
    array = np.asarray(grey)
    if not np.issubdtype(array.dtype, np.number) or array.size == 0:
        raise CovidlensError(f"segment_lungs_grey needs an 8-bit grey image, not {array.dtype} values.")
    if float(array.min()) < 0.0 or float(array.max()) > 255.0:
        raise CovidlensError(
            f"segment_lungs_grey needs grey levels 0..255, but the values run from {array.min()} to {array.max()}; "
            "use segment_lungs_hu for CT in Hounsfield units."
        )
    centre, width = float(window[0]), float(window[1])
    if not width > 0:
        raise CovidlensError(f"A display window needs a positive width, got {width}.")
    hu = centre - width / 2.0 + array.astype(np.float32) / 255.0 * width
    return segment_lungs_hu(hu, spacing)


#: Dark components smaller than this fraction of a lung-cropped slice are not lung (vessels, noise).
CROPPED_MIN_FRACTION = 0.02


def segment_lungs_cropped(grey, hull: bool = True) -> np.ndarray:
    """Lung mask of an 8-bit grey slice that is already cropped to the lung box (the MedSeg slices).

    For such crops :func:`segment_lungs_grey` fails (the lungs reach the image edge and are taken for
    outside air), and their windows differ from slice to slice, so no HU threshold applies. This rule
    uses the slice's own contrast instead: pixels darker than the slice's Otsu threshold, connected
    pieces of at least :data:`CROPPED_MIN_FRACTION` of the slice, each closed, hole-filled and (with
    ``hull``) replaced by its convex hull, which takes in dense lesions on the lung's edge at the
    price of some mediastinum. As a lesion filter it still removes true lesion, more so without the
    hull (docs/results.md, section 5, ``benchmarks/medseg_lung_filter.py``). Returns a boolean mask of
    the slice's shape.
    """
    array = np.asarray(grey)
    if array.ndim != 2 or min(array.shape) < 8:
        raise CovidlensError(f"segment_lungs_cropped needs one 2-D grey slice, not an array of shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.number) or float(array.min()) < 0.0 or float(array.max()) > 255.0:
        raise CovidlensError("segment_lungs_cropped needs grey levels 0..255; use segment_lungs_hu for Hounsfield units.")
    dark = array < otsu_threshold(array)
    labels, count = ndi.label(dark)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    lung = np.isin(labels, np.flatnonzero(sizes >= CROPPED_MIN_FRACTION * array.size))
    lung = _close_and_fill_each_piece(lung[None], max(2, round(min(array.shape) / 80)))[0]
    if hull and lung.any():
        pieces, n = ndi.label(lung)
        for k in range(1, n + 1):
            lung |= filled_convex_hull(pieces == k)
    return lung


def _spacing(spacing, ndim: int) -> tuple[float, float, float]:
    if spacing is None:
        return _ASSUMED_SPACING
    values = tuple(float(v) for v in spacing)
    if len(values) != ndim or not all(np.isfinite(v) and v > 0 for v in values):
        raise CovidlensError(
            f"Spacing {values} does not fit a {ndim}-D image; give {ndim} positive values in mm "
            f"({'(row, col)' if ndim == 2 else '(slice, row, col)'}) or None."
        )
    return (_ASSUMED_SPACING[0], *values) if ndim == 2 else values


def _touching_slice_edge(air: np.ndarray) -> np.ndarray:
    """Air regions connected, within their own slice, to that slice's edge."""
    labels, _ = ndi.label(air, structure=_IN_PLANE)
    edge = np.concatenate([labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]], axis=None)
    edge_labels = np.unique(edge[edge > 0])
    return np.isin(labels, edge_labels)


def _lung_labels(hu: np.ndarray, labels: np.ndarray, count: int, min_voxels: float, certain_voxels: float) -> list[int]:
    """The component labels of lung size whose first quartile is aerated tissue, not gas, and those
    so large that they can only be lung."""
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    big = [int(k) for k in np.flatnonzero(sizes >= min_voxels) if k > 0]
    if not big:
        return []
    slices = ndi.find_objects(labels)
    kept = []
    for k in big:
        if sizes[k] >= certain_voxels:
            kept.append(k)
            continue
        box = slices[k - 1]
        values = hu[box][labels[box] == k]
        if float(np.percentile(values, 25)) > GAS_QUARTILE_HU:
            kept.append(k)
    return kept


def _disc(radius: int) -> np.ndarray:
    grid = np.arange(-radius, radius + 1)
    return (grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2


def _close_and_fill_each_piece(mask: np.ndarray, radius: int) -> np.ndarray:
    """Close, then fill the holes of, every 2-D connected piece of every slice on its own.

    Done piece by piece so that the closing never bridges the thin pleural line where the two lungs
    meet in front of and behind the mediastinum; bridged twice, the mediastinum would become a hole
    and be filled as lung.
    """
    disc = _disc(radius)
    result = np.zeros_like(mask)
    height, width = mask.shape[1:]
    for index in range(mask.shape[0]):
        labels, _ = ndi.label(mask[index])
        for k, box in enumerate(ndi.find_objects(labels), start=1):
            if box is None:
                continue
            rows = slice(max(box[0].start - radius - 1, 0), min(box[0].stop + radius + 1, height))
            cols = slice(max(box[1].start - radius - 1, 0), min(box[1].stop + radius + 1, width))
            piece = labels[rows, cols] == k
            piece = ndi.binary_fill_holes(ndi.binary_closing(piece, structure=disc) | piece)
            result[index, rows, cols] |= piece
    return result
