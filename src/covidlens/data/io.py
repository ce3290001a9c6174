"""Reading medical images from disk into one predictable form.

Every image that enters covidlens passes through :func:`read_image`, which returns an 8-bit
single-channel ``PIL.Image`` whatever the file held: PNG/JPEG in any mode (L, LA, RGB, RGBA, P, 16-bit
I;16 / I / F), a JPEG that is named ``.png`` (PIL sniffs the content, not the name), or a DICOM slice,
which is converted to Hounsfield units and windowed. Colour figures (the COVID-CT set is cropped from
papers) are converted to luminance because CT and X-ray are grey by nature; any colour is annotation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from covidlens.errors import CovidlensError

#: Images above this many pixels are refused: far more than any CT slice or radiograph (a 4k x 4k
#: CXR detector image is 16.8 M), and below PIL's decompression-bomb limit.
MAX_PIXELS = 8192 * 8192

#: Lung window (centre, width) in Hounsfield units used when a DICOM slice is turned into an image.
LUNG_WINDOW = (-600.0, 1500.0)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".dcm", ".dicom"}


def is_dicom(path: str | os.PathLike) -> bool:
    """True when the file carries the DICOM magic bytes ('DICM' at offset 128)."""
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Stretch an array of any numeric type to 0..255; constant images become black."""
    array = array.astype(np.float64)
    low, high = float(np.min(array)), float(np.max(array))
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.round((array - low) / (high - low) * 255.0).astype(np.uint8)


def window_hu(hu: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Map Hounsfield units to 0..255 through a display window (values outside are clipped)."""
    low = centre - width / 2.0
    scaled = (hu.astype(np.float64) - low) / width
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def read_dicom_hu(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float]]:
    """Read one DICOM slice as Hounsfield units and its (row, column) pixel spacing in mm."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(str(path))
        rows, cols = int(getattr(dataset, "Rows", 0)), int(getattr(dataset, "Columns", 0))
        frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
        if frames > 1:
            raise CovidlensError(f"{path} holds {frames} frames; covidlens reads one 2-D slice per file.")
        if rows * cols > MAX_PIXELS:
            raise CovidlensError(f"{path} has {cols}x{rows} pixels, more than covidlens accepts ({MAX_PIXELS} pixels).")
        pixels = dataset.pixel_array.astype(np.float64)
    except CovidlensError:
        raise
    except Exception as exc:  # pydicom raises many types for broken or undecodable files
        if not isinstance(exc, (InvalidDicomError, AttributeError, ValueError, OSError, RuntimeError, KeyError)):
            raise
        raise CovidlensError(f"{path} is not a readable DICOM image ({exc}).") from exc
    if pixels.ndim != 2:
        raise CovidlensError(
            f"{path} holds a {pixels.ndim}-D DICOM pixel array; covidlens reads one 2-D slice per file."
        )
    slope = float(getattr(dataset, "RescaleSlope", 1.0))
    intercept = float(getattr(dataset, "RescaleIntercept", 0.0))
    spacing = getattr(dataset, "PixelSpacing", None)
    spacing_mm = (float(spacing[0]), float(spacing[1])) if spacing is not None else (1.0, 1.0)
    return pixels * slope + intercept, spacing_mm


def read_image(path: str | os.PathLike) -> Image.Image:
    """Read any supported image file as an 8-bit grey ``PIL.Image`` (mode ``L``).

    Raises :class:`CovidlensError` with one sentence when the path is missing, is a folder, is not an
    image, or is absurdly large.
    """
    path = Path(path)
    if not path.exists():
        raise CovidlensError(f"{path} does not exist.")
    if path.is_dir():
        raise CovidlensError(f"{path} is a folder, not an image file.")
    if is_dicom(path):
        hu, _ = read_dicom_hu(path)
        return Image.fromarray(window_hu(hu, *LUNG_WINDOW), mode="L")
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise CovidlensError(
                    f"{path} has {image.width}x{image.height} pixels, more than covidlens accepts "
                    f"({MAX_PIXELS} pixels)."
                )
            image.load()
            return _to_grey(image)
    except Image.DecompressionBombError as exc:
        raise CovidlensError(f"{path} declares more pixels than covidlens accepts ({MAX_PIXELS} pixels).") from exc
    except UnidentifiedImageError as exc:
        raise CovidlensError(
            f"{path} is not an image covidlens can read (expected PNG, JPEG, BMP, TIFF or DICOM)."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CovidlensError(f"{path} is damaged or truncated and cannot be decoded ({exc}).") from exc


def _to_grey(image: Image.Image) -> Image.Image:
    if image.mode == "L":
        return image.copy()
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image)), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels carry no signal: lay the image on black, the CT/CXR background.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    return image.convert("L")


def list_images(path: str | os.PathLike) -> list[Path]:
    """The image files a path stands for: the file itself, or every image file under a folder, sorted."""
    path = Path(path)
    if not path.exists():
        raise CovidlensError(f"{path} does not exist.")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CovidlensError(f"{path} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    return files
