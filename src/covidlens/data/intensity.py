"""Turning the physical values of a :class:`~covidlens.data.scan.Scan` into grey levels for display and
for the 8-bit image models.

Reading keeps pixels in their own units (Hounsfield units, raw detector values); choosing what part of
that range to show is a separate, deliberate step. Keeping it here means a model or a lung segmenter
can work in HU while the viewer, the CAM overlays and the ImageNet-style models get 8-bit images
produced one way.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from covidlens.data.scan import Scan
from covidlens.errors import CovidlensError

#: Lung window (centre, width) in Hounsfield units: -1350..150 HU, air black and soft tissue white,
#: so ground-glass (-700..-300 HU) and consolidation (-100..100 HU) fall on the visible range.
LUNG_WINDOW = (-600.0, 1500.0)


def window(pixels: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Map values through a display window to 0..255 (``uint8``); values outside it are clipped.

    The mapping is linear from ``centre - width/2`` (black) to ``centre + width/2`` (white), the same
    for every image, so one grey level always means the same Hounsfield unit.
    """
    if width <= 0:
        raise CovidlensError(f"A display window needs a positive width, got {width}.")
    low = centre - width / 2.0
    scaled = (np.asarray(pixels, dtype=np.float64) - low) / width
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def _stretch(pixels: np.ndarray) -> np.ndarray:
    """Min-max stretch to 0..255 for raw values that carry no unit; constant images become black."""
    array = np.asarray(pixels, dtype=np.float64)
    low, high = float(np.min(array)), float(np.max(array))
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.round((array - low) / (high - low) * 255.0).astype(np.uint8)


def to_uint8(scan: Scan) -> np.ndarray:
    """The 8-bit grey levels of a scan, chosen by what its values mean.

    - Hounsfield units: the lung window (:data:`LUNG_WINDOW`), the same for every CT.
    - 8-bit raw images (PNG/JPEG, 8-bit DICOM): the stored values as they are.
    - other raw values with the file's own window (X-ray DICOM): that window, which the modality
      chose for display; a min-max stretch would be dominated by collimator edges and burnt-in labels.
    - other raw values (16-bit PNG/TIFF): a min-max stretch, since they carry no unit to window on.
    """
    if scan.units == "HU":
        return window(scan.pixels, *LUNG_WINDOW)
    if scan.bits <= 8:
        return np.clip(np.round(scan.pixels), 0, 255).astype(np.uint8)
    if scan.window is not None:
        return window(scan.pixels, *scan.window)
    return _stretch(scan.pixels)


def display_image(scan: Scan) -> Image.Image:
    """A 2-D scan as an 8-bit grey ``PIL.Image`` (mode ``L``), through :func:`to_uint8`."""
    if scan.ndim != 2:
        raise CovidlensError(
            f"{scan.path} is a {scan.ndim}-D volume, not an image; read it with covidlens.data.io.read_scan and "
            "take one slice of covidlens.data.intensity.to_uint8(scan)."
        )
    return Image.fromarray(to_uint8(scan), mode="L")
