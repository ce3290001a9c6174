"""Reading medical images from disk, keeping their physics.

:func:`read_scan` is the one reader. It returns a :class:`Scan` whose pixels are in the image's own
units: Hounsfield units for CT (DICOM through its modality LUT, CT NIfTI as stored), the stored values
for PNG/JPEG/BMP/TIFF/GIF (0..255, 0..65535) and for X-ray DICOM. Choosing a display window and making
8-bit images is not reading: that lives in :mod:`covidlens.data.intensity`, and :func:`read_image`
(the 8-bit grey ``PIL.Image`` the classifiers take) is just ``display_image(read_scan(path))``.

What it reads:

- PNG, JPEG, BMP, TIFF, GIF in any PIL mode (L, LA, RGB, RGBA, P, 16-bit I;16, I, F), found by content
  (the COVID-CT set has JPEGs named ``.png``); the first frame of a multi-page TIFF or GIF. Colour
  becomes grey luminance because CT and X-ray are grey by nature and colour in these sets is
  annotation; transparent pixels are laid on black.
- A DICOM slice (``DICM`` marker), decoded by pydicom (JPEG-Lossless and JPEG 2000 through pylibjpeg).
  MONOCHROME1 raw values are inverted so that bright always means dense.
- A folder holding one DICOM series: a 3-D volume ordered along the slice normal, head to feet.
- A NIfTI volume (``.nii``, ``.nii.gz``) through nibabel, in the file's slice order.

Every size is checked from the header before any pixel is decoded, so a hostile or broken file costs a
header read, not the machine's memory. Bad input raises :class:`CovidlensError` with one sentence.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from covidlens.data.intensity import LUNG_WINDOW, display_image, window
from covidlens.data.scan import Scan
from covidlens.errors import CovidlensError

__all__ = [
    "IMAGE_SUFFIXES",
    "LUNG_WINDOW",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MAX_VOXELS",
    "VOLUME_SUFFIXES",
    "Scan",
    "is_dicom",
    "list_images",
    "read_dicom_hu",
    "read_image",
    "read_scan",
    "source_layout",
    "window_hu",
]

#: Images above this many pixels are refused: far more than any CT slice or radiograph (a 4k x 4k
#: CXR detector image is 16.8 M), and below PIL's decompression-bomb limit.
MAX_PIXELS = 8192 * 8192

#: Volumes above this many voxels are refused: 2048 slices of 512 x 512 (2 GiB as float32), more than
#: a thin-slice chest CT (about 600 slices at 0.625 mm).
MAX_VOXELS = 512 * 512 * 2048

#: Files above this size are refused before they are opened: 1 GiB, more than any single CT or CXR file.
MAX_FILE_BYTES = 1 << 30

#: Suffixes of 2-D image files, the files :func:`read_image` and :func:`list_images` deal with.
#: NIfTI volumes are deliberately not here: they are 3-D, so a folder walk that feeds read_image must
#: not pick them up (masks and volumes sit next to images in several sets); see VOLUME_SUFFIXES.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".dcm", ".dicom"}

#: File name endings of the volumes :func:`read_scan` reads through nibabel.
VOLUME_SUFFIXES = (".nii", ".nii.gz")

#: Kept name: Hounsfield units to 0..255 through a window (see covidlens.data.intensity.window).
window_hu = window

_DICOM_SUFFIXES = {".dcm", ".dicom"}
# PIL's openers for the formats covidlens reads (a phone's JPEG may open as MPO through the JPEG opener).
_PIL_OPENERS = ("PNG", "JPEG", "BMP", "TIFF", "GIF")
_PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "BMP": "bmp", "TIFF": "tiff", "GIF": "gif"}
# pydicom and its decoders raise many types for broken headers or pixel data.
_DICOM_ERRORS = (EOFError, OSError, ValueError, KeyError, AttributeError, TypeError, IndexError, struct.error)
# A NIfTI volume is taken as CT in HU when its values go below this: air is -1000 HU, while masks,
# MR and probability maps are not negative.
_HU_FLOOR = -500.0
# Two slices of a series share an orientation when their direction cosines agree this closely.
_ORIENTATION_TOLERANCE = 1e-4


def source_layout(scan: Scan, volume: np.ndarray) -> np.ndarray:
    """A (D, H, W) array on the scan's grid laid out as the voxels of :attr:`Scan.affine`: the file's
    own axes for a NIfTI volume, (col, row, slice) for a DICOM series."""
    volume = np.asarray(volume)
    if volume.shape != scan.pixels.shape or scan.ndim != 3:
        raise CovidlensError(f"a mask of shape {volume.shape} does not match the volume {scan.pixels.shape} of {scan.path}.")
    if scan.layout is None:
        return np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))
    row_axis, col_axis, *flips = scan.layout
    order = [0, 0, 0]
    order[row_axis], order[col_axis], order[2] = 1, 2, 0
    data = np.transpose(volume, order)
    for axis in (0, 1):
        if flips[axis]:
            data = np.flip(data, axis=axis)
    return np.ascontiguousarray(data)


def _series_affine(headers, order: list[int], step: float | None, pixel_spacing) -> np.ndarray | None:
    """RAS affine of a series laid out (col, row, slice), slices head to feet as :func:`_read_series` stacks them."""
    first = headers[order[0]]
    if pixel_spacing is None or "ImagePositionPatient" not in first or "ImageOrientationPatient" not in first:
        return None
    cosines = [float(v) for v in first.ImageOrientationPatient]
    along_row, along_col = np.array(cosines[:3]), np.array(cosines[3:])
    if len(order) > 1:
        last = np.array([float(v) for v in headers[order[1]].ImagePositionPatient])
        slice_vector = last - np.array([float(v) for v in first.ImagePositionPatient])
    else:
        slice_vector = np.cross(along_row, along_col) * (step or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = along_row * pixel_spacing[1]
    lps[:3, 1] = along_col * pixel_spacing[0]
    lps[:3, 2] = slice_vector
    lps[:3, 3] = [float(v) for v in first.ImagePositionPatient]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def is_dicom(path: str | os.PathLike) -> bool:
    """True when the file carries the DICOM magic bytes ('DICM' at offset 128)."""
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def read_scan(path: str | os.PathLike) -> Scan:
    """Read an image file, a DICOM slice, a NIfTI volume or a folder holding one DICOM series."""
    path = Path(path)
    if not path.exists():
        raise CovidlensError(f"{path} does not exist.")
    if path.is_dir():
        return _read_series(path)
    _check_file_size(path)
    if is_dicom(path):
        return _read_dicom(path)
    if path.suffix.lower() in _DICOM_SUFFIXES:
        raise CovidlensError(
            f"{path} is named {path.suffix} but is not a DICOM file (no 'DICM' marker at byte 128); "
            "export it from the scanner or PACS as a DICOM Part 10 file."
        )
    if path.name.lower().endswith(VOLUME_SUFFIXES):
        return _read_nifti(path)
    return _read_picture(path)


def read_image(path: str | os.PathLike) -> Image.Image:
    """Read a 2-D image file as an 8-bit grey ``PIL.Image`` (mode ``L``): CT DICOM in the lung window,
    8-bit images as stored, other raw values stretched (see :func:`covidlens.data.intensity.to_uint8`).

    Raises :class:`CovidlensError` with one sentence when the path is missing, is a folder or a volume,
    is not an image, or is absurdly large.
    """
    path = Path(path)
    if path.is_dir():
        raise CovidlensError(f"{path} is a folder, not an image file.")
    return display_image(read_scan(path))


def read_dicom_hu(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float]]:
    """Kept for earlier callers: one DICOM slice in its modality units (HU for CT) and its (row, column)
    pixel spacing in mm, (1.0, 1.0) when the file has none. :func:`read_scan` says more."""
    scan = read_scan(path)
    if scan.format != "dicom":
        raise CovidlensError(f"{path} is not a DICOM slice; read it with read_scan.")
    return scan.pixels.astype(np.float64), scan.spacing or (1.0, 1.0)


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


def _check_file_size(path: Path) -> None:
    size = path.stat().st_size
    if size == 0:
        raise CovidlensError(f"{path} is empty (0 bytes).")
    if size > MAX_FILE_BYTES:
        raise CovidlensError(f"{path} is {size} bytes, more than covidlens accepts ({MAX_FILE_BYTES} bytes).")


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise CovidlensError(
            f"{path} has {width}x{height} pixels, more than covidlens accepts ({MAX_PIXELS} pixels)."
        )


def _check_voxels(path: Path, shape: tuple[int, ...]) -> None:
    if int(np.prod(shape, dtype=np.int64)) > MAX_VOXELS:
        dims = "x".join(str(n) for n in shape)
        raise CovidlensError(f"{path} holds {dims} voxels, more than covidlens accepts ({MAX_VOXELS} voxels).")


# --- PNG, JPEG, BMP, TIFF, GIF -------------------------------------------------------------------


def _read_picture(path: Path) -> Scan:
    try:
        with Image.open(path, formats=_PIL_OPENERS) as image:  # lazy: reads the header only
            _check_pixels(path, image.width, image.height)
            image.load()
            fmt, mode = _PIL_FORMATS[image.format], image.mode
            pixels, bits = _grey(image)
    except Image.DecompressionBombError as exc:
        raise CovidlensError(
            f"{path} declares more than {2 * Image.MAX_IMAGE_PIXELS} pixels, more than covidlens accepts "
            f"({MAX_PIXELS} pixels)."
        ) from exc
    except UnidentifiedImageError as exc:
        raise CovidlensError(
            f"{path} is not an image covidlens can read (expected PNG, JPEG, BMP, TIFF, GIF, DICOM or NIfTI)."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CovidlensError(f"{path} is damaged or truncated and cannot be decoded ({exc}).") from exc
    return Scan(pixels, spacing=None, modality="", units="raw", photometric=mode, format=fmt, path=path, bits=bits)


def _grey(image: Image.Image) -> tuple[np.ndarray, int]:
    """Grey values of a decoded PIL image as float32, and the stored bit depth."""
    if image.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(image).astype(np.float32), 16
    if image.mode in ("I", "F"):
        return np.asarray(image).astype(np.float32), 32
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels carry no signal: lay the image on black, the CT/CXR background.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    grey = image if image.mode == "L" else image.convert("L")
    return np.asarray(grey).astype(np.float32), 8


# --- DICOM ---------------------------------------------------------------------------------------


def _dicom_header(path: Path):
    """The DICOM data set up to (not including) the pixel data."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, *_DICOM_ERRORS) as exc:
        raise CovidlensError(f"{path} is not a readable DICOM file ({exc}).") from exc


def _check_dicom_header(path: Path, header) -> None:
    """Refuse what covidlens does not read, from the header alone."""
    rows, cols = int(header.get("Rows") or 0), int(header.get("Columns") or 0)
    if not rows or not cols:
        raise _no_pixel_data(path, header)
    frames = int(header.get("NumberOfFrames") or 1)
    if frames > 1:
        raise CovidlensError(
            f"{path} is a multi-frame DICOM ({frames} frames); covidlens reads one slice per file, so export "
            "the series as single-frame files."
        )
    _check_pixels(path, cols, rows)
    samples = int(header.get("SamplesPerPixel") or 1)
    if samples not in (1, 3):
        raise CovidlensError(f"{path} has {samples} samples per pixel; covidlens reads grey or RGB DICOM.")


def _no_pixel_data(path: Path, header) -> CovidlensError:
    rows, cols = header.get("Rows"), header.get("Columns")
    if rows and cols:  # an image whose pixel data are missing: pydicom stops at a cut-off file's end
        return CovidlensError(
            f"{path} declares a {cols}x{rows} DICOM image but has no pixel data, so it is truncated or incomplete."
        )
    kind = getattr(header.get("SOPClassUID"), "name", "") or "no SOP class"
    return CovidlensError(f"{path} is a DICOM file with no pixel data ({kind}); covidlens needs an image slice.")


def _read_dicom(path: Path) -> Scan:
    header = _dicom_header(path)
    _check_dicom_header(path, header)
    dataset = _dicom_dataset(path)
    pixels, inverted = _dicom_pixels(path, dataset)
    return Scan(
        pixels,
        spacing=_pixel_spacing(dataset),
        modality=str(dataset.get("Modality", "")),
        units=_dicom_units(dataset),
        photometric=str(dataset.get("PhotometricInterpretation", "")),
        format="dicom",
        path=path,
        window=_dicom_window(dataset, inverted),
        bits=int(dataset.get("BitsStored") or 8),
    )


def _dicom_dataset(path: Path):
    """The whole data set, pixel data still encoded; refused when it has no pixel data."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(str(path))
    except (InvalidDicomError, *_DICOM_ERRORS) as exc:
        raise CovidlensError(f"{path} is damaged or truncated and cannot be decoded ({exc}).") from exc
    if not any(tag in dataset for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise _no_pixel_data(path, dataset)
    return dataset


def _dicom_units(dataset) -> str:
    """CT values after the modality LUT are Hounsfield units (the CT image IOD requires it)."""
    if dataset.get("Modality") == "CT" or str(dataset.get("RescaleType", "")).upper() == "HU":
        return "HU"
    return "raw"


def _dicom_pixels(path: Path, dataset) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Decoded pixels through the modality LUT, as grey float32 with bright = dense.

    Returns the pixels and, when MONOCHROME1 raw values were inverted, the (low, high) range they were
    mirrored in (the file's window has to be mirrored the same way).
    """
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    try:
        stored = dataset.pixel_array
    except (RuntimeError, NotImplementedError) as exc:  # no decoder for this transfer syntax
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        raise CovidlensError(
            f"{path} holds {getattr(syntax, 'name', 'compressed')} pixel data that this installation cannot "
            "decode; install pylibjpeg with pylibjpeg-libjpeg (JPEG) and pylibjpeg-openjpeg (JPEG 2000)."
        ) from exc
    except _DICOM_ERRORS as exc:
        raise CovidlensError(f"{path} is damaged or truncated and cannot be decoded ({exc}).") from exc
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        stored = apply_color_lut(stored, dataset)
    if stored.ndim == 3:
        # Colour DICOM (secondary captures, screenshots): luminance with the ITU-R 601 weights of PIL "L".
        return (stored[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.float32), None
    if stored.ndim != 2:
        raise CovidlensError(f"{path} holds a {stored.ndim}-D pixel array; covidlens reads one 2-D slice per file.")
    values = np.asarray(apply_modality_lut(stored, dataset), dtype=np.float64)
    if photometric == "MONOCHROME1" and _dicom_units(dataset) == "raw":
        # MONOCHROME1 shows low values white; mirror raw values within their possible range so that
        # bright = dense like every other image. HU are physics already (dense is high) and stay.
        bits = int(dataset.get("BitsStored") or 16)
        signed = int(dataset.get("PixelRepresentation") or 0) == 1
        extremes = np.array([-(1 << (bits - 1)), (1 << (bits - 1)) - 1] if signed else [0, (1 << bits) - 1])
        low, high = sorted(float(v) for v in np.asarray(apply_modality_lut(extremes, dataset)).ravel())
        return (low + high - values).astype(np.float32), (low, high)
    return values.astype(np.float32), None


def _dicom_window(dataset, inverted: tuple[float, float] | None) -> tuple[float, float] | None:
    """The file's own VOI window (the first one when it lists several, as the standard says).

    A VOI LUT table is recorded as the window spanning its input range, its linear stand-in.
    """
    from pydicom.multival import MultiValue

    centre, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if centre is not None and width is not None:
        centre = float(centre[0] if isinstance(centre, MultiValue) else centre)
        width = float(width[0] if isinstance(width, MultiValue) else width)
    elif "VOILUTSequence" in dataset and len(dataset.VOILUTSequence):
        entries, first = (float(v) for v in dataset.VOILUTSequence[0].LUTDescriptor[:2])
        entries = entries or 65536.0  # the standard writes 2**16 entries as 0
        centre, width = first + entries / 2.0, entries
    else:
        return None
    if width <= 0:
        return None
    if inverted is not None:
        centre = inverted[0] + inverted[1] - centre
    return centre, width


def _pixel_spacing(dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm: PixelSpacing, else the detector's ImagerPixelSpacing (CR/DX)."""
    spacing = dataset.get("PixelSpacing") or dataset.get("ImagerPixelSpacing")
    if not spacing or len(spacing) != 2:
        return None
    return float(spacing[0]), float(spacing[1])


# --- a folder holding one DICOM series -----------------------------------------------------------


def _read_series(folder: Path) -> Scan:
    """A folder of single-frame DICOM slices as one volume, ordered head to feet.

    Slices are sorted by their position along the slice normal (ImagePositionPatient projected on the
    cross product of the two ImageOrientationPatient directions), descending: for an axial series that
    is superior to inferior, the order of InstanceNumber in most CT series and of slice-level labels
    such as COVID-CT-MD's. Without positions, InstanceNumber (ascending) orders them. The slice spacing
    is the step between positions.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.stat().st_size > 0 and is_dicom(p))
    if not files:
        raise CovidlensError(
            f"{folder} holds no DICOM files; covidlens reads a folder as one DICOM series "
            "(sub-folders are not searched)."
        )
    for path in files:
        _check_file_size(path)
    headers = [_dicom_header(path) for path in files]
    # Reports, presentation states and other non-image objects may sit beside the slices: not slices.
    images = [(p, h) for p, h in zip(files, headers) if h.get("Rows") and h.get("Columns")]
    if not images:
        raise CovidlensError(f"{folder} holds DICOM files but no DICOM images (none has Rows and Columns).")
    files, headers = [p for p, _ in images], [h for _, h in images]
    _check_one_series(folder, headers)
    for path, header in zip(files, headers):
        _check_dicom_header(path, header)
    rows, cols = _common(folder, headers, lambda h: (int(h.Rows), int(h.Columns)), "slice sizes", _size_text)
    _check_voxels(folder, (len(files), rows, cols))
    pixel_spacing = _common(folder, headers, _pixel_spacing, "pixel spacings", str, tolerance=1e-3)
    order, positions, step = _slice_order(folder, files, headers)

    volume = np.empty((len(order), rows, cols), dtype=np.float32)  # filled in place: one copy in memory
    first_inverted = None
    for rank, index in enumerate(order):
        volume[rank], inverted = _dicom_pixels(files[index], _dicom_dataset(files[index]))
        if rank == 0:
            first_inverted = inverted
    first = headers[order[0]]
    spacing = (step, *pixel_spacing) if step is not None and pixel_spacing is not None else None
    return Scan(
        volume,
        spacing=spacing,
        modality=str(first.get("Modality", "")),
        units=_dicom_units(first),
        photometric=str(first.get("PhotometricInterpretation", "")),
        format="dicom-series",
        path=folder,
        window=_dicom_window(first, first_inverted),
        bits=int(first.get("BitsStored") or 8),
        positions=positions,
        files=tuple(files[i] for i in order),
        affine=_series_affine(headers, order, step, pixel_spacing),
    )


def _check_one_series(folder: Path, headers) -> None:
    series = {}
    for header in headers:
        uid = str(header.get("SeriesInstanceUID", ""))
        series.setdefault(uid, str(header.get("SeriesDescription", "") or uid or "no series id"))
    if len(series) > 1:
        names = "; ".join(sorted(series.values()))
        raise CovidlensError(
            f"{folder} holds {len(series)} DICOM series ({names}); put each series in a folder of its own."
        )


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]}"


def _common(folder: Path, headers, key, what: str, text, tolerance: float = 0.0):
    """The value ``key`` gives for every slice, refusing a series whose slices disagree."""
    values = [key(h) for h in headers]
    first = values[0]
    for value in values[1:]:
        same = value == first or (
            value is not None and first is not None and np.allclose(value, first, rtol=0, atol=tolerance)
        )
        if not same:
            raise CovidlensError(
                f"{folder} mixes {what} ({text(first)} and {text(value)}); a series folder must hold the slices "
                "of one volume."
            )
    return first


def _slice_order(folder: Path, files, headers) -> tuple[list[int], tuple[float, ...] | None, float | None]:
    """Indices of the slices head to feet, their positions along the normal (mm) and the slice step."""
    have_geometry = all("ImagePositionPatient" in h and "ImageOrientationPatient" in h for h in headers)
    if have_geometry:
        orientation = _common(
            folder,
            headers,
            lambda h: tuple(float(v) for v in h.ImageOrientationPatient),
            "slice orientations",
            str,
            tolerance=_ORIENTATION_TOLERANCE,
        )
        normal = np.cross(orientation[:3], orientation[3:])
        along = np.array([float(np.dot([float(v) for v in h.ImagePositionPatient], normal)) for h in headers])
        order = [int(i) for i in np.argsort(-along, kind="stable")]
        positions = along[order]
        steps = -np.diff(positions)
        if len(steps) and steps.min() < 1e-3:
            twin = int(np.flatnonzero(steps < 1e-3)[0])
            raise CovidlensError(
                f"{folder} holds two slices at the same position ({files[order[twin]].name} and "
                f"{files[order[twin + 1]].name}), so it mixes acquisitions; put each in a folder of its own."
            )
        step = None
        if len(steps):
            step = float(np.median(steps))
            if steps.max() - steps.min() > 0.05 * step + 1e-3:
                raise CovidlensError(
                    f"{folder} has uneven slice steps ({steps.min():.3g} to {steps.max():.3g} mm), so slices are "
                    "missing; add the missing files or read the slices one by one."
                )
        return order, tuple(float(p) for p in positions), step
    if all("InstanceNumber" in h for h in headers):
        numbers = [int(h.InstanceNumber) for h in headers]
        if len(set(numbers)) != len(numbers):
            raise CovidlensError(
                f"{folder} holds slices without positions that share an InstanceNumber, so their order is unknown."
            )
        step = headers[0].get("SpacingBetweenSlices")
        return [int(i) for i in np.argsort(numbers)], None, float(step) if step else None
    raise CovidlensError(
        f"{folder} holds slices with neither ImagePositionPatient nor InstanceNumber, so their order is unknown."
    )


# --- NIfTI ---------------------------------------------------------------------------------------


def _read_nifti(path: Path) -> Scan:
    """A 3-D NIfTI volume as (slice, row, col), keeping the file's slice order on axis 0.

    Slice k of the result is slice k of the file (the third array axis), never re-sorted, so that
    per-slice labels indexed by the file's slices stay valid. In plane, the two other axes are turned
    to the radiological DICOM view: from the affine's axis codes (``nibabel.io_orientation``), each
    in-plane axis is flipped, if needed, to run towards patient Left, Posterior or Inferior, and the one
    along the earlier world axis (L-R before A-P before S-I) becomes the columns. For an axial volume
    that is rows anterior to posterior and columns patient right to left (patient right on the image
    left, like DICOM with ImageOrientationPatient 1,0,0,0,1,0); coronal and sagittal volumes get
    DICOM's usual views too. Spacing is the header zooms in the same order; positions are each slice's
    position along the slice normal in the DICOM (LPS) frame, comparable with a DICOM series'.
    """
    import nibabel
    from nibabel.filebasedimages import ImageFileError
    from nibabel.orientations import io_orientation

    try:
        image = nibabel.load(str(path))  # the header; data are read on demand
        shape = tuple(int(n) for n in image.shape)
        if len(shape) < 3 or any(n != 1 for n in shape[3:]):
            raise CovidlensError(
                f"{path} holds a {len(shape)}-D NIfTI image ({'x'.join(map(str, shape))}); covidlens reads 3-D "
                "volumes, so save one 3-D volume per file."
            )
        _check_voxels(path, shape[:3])
        data = np.asarray(image.get_fdata(dtype=np.float32)).reshape(shape[:3])
        zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
        affine = np.asarray(image.affine, dtype=np.float64)
        stored = image.get_data_dtype()
        cal = (float(image.header["cal_min"]), float(image.header["cal_max"]))
    except CovidlensError:
        raise
    except (ImageFileError, OSError, EOFError, ValueError, zlib.error) as exc:
        raise CovidlensError(f"{path} is not a readable NIfTI volume ({exc}).") from exc

    ornt = io_orientation(affine)
    flips = [False, False]
    if np.isnan(ornt[:2]).any():
        row_axis, col_axis = 1, 0  # no usable orientation: stored axes as they come
    else:
        flips = [bool(ornt[a, 1] > 0) for a in (0, 1)]  # +1 runs to R/A/S; we want L/P/I
        row_axis, col_axis = (0, 1) if ornt[0, 0] > ornt[1, 0] else (1, 0)
    for axis in (0, 1):
        if flips[axis]:
            data = np.flip(data, axis=axis)
    pixels = np.ascontiguousarray(np.transpose(data, (2, row_axis, col_axis)), dtype=np.float32)

    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
    directions = [lps[:, a] / (np.linalg.norm(lps[:, a]) or 1.0) * (-1.0 if flips[a] else 1.0) for a in (0, 1)]
    normal = np.cross(directions[col_axis], directions[row_axis])
    origin = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]
    positions = tuple(float(np.dot(origin + lps[:, 2] * k, normal)) for k in range(shape[2]))

    hu = pixels.size > 0 and float(pixels.min()) < _HU_FLOOR
    return Scan(
        pixels,
        spacing=(zooms[2], zooms[row_axis], zooms[col_axis]),
        modality="CT" if hu else "",
        units="HU" if hu else "raw",
        photometric="",
        format="nifti",
        path=path,
        window=((cal[0] + cal[1]) / 2.0, cal[1] - cal[0]) if cal[1] > cal[0] else None,
        bits=int(stored.itemsize * 8),
        positions=positions,
        affine=affine,
        layout=(row_axis, col_axis, flips[0], flips[1]),
    )
