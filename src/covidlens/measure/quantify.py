"""How much of the lung a COVID-19 lesion model finds affected, per slice and per scan.

:func:`quantify_scan` reads a CT (a NIfTI volume, a folder holding one DICOM series, or one DICOM /
PNG / JPEG slice), finds the lungs (:func:`covidlens.measure.lungs.segment_lungs_hu` on Hounsfield
units; on 8-bit slices :func:`~covidlens.measure.lungs.segment_lungs_grey`, only as right as its guess
of their window), runs a lesion checkpoint slice by slice, drops lesion outside the lungs and writes a
per-slice CSV, a summary JSON (volumes, percent of lung involved, MosMedData severity class) and
overlays of the most affected slices.

Each slice reaches the model as the MedSeg training slices did, since those are all it has seen: in
the lung window, cropped to the slice's lung box grown by :data:`CROP_MARGIN`, through the model's own
resize, its probabilities pasted back; slices without lung get no lesion. Lesion is any class but
background (ground-glass and consolidation both count). docs/results.md, section 5, gives how the
preprocessing was checked against MedSeg.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from covidlens.checkpoint import Checkpoint, load_checkpoint
from covidlens.data.intensity import LUNG_WINDOW, to_uint8, window
from covidlens.data.io import Scan, read_scan
from covidlens.errors import CovidlensError
from covidlens.measure.lungs import segment_lungs_grey, segment_lungs_hu
from covidlens.measure.volumes import restrict_to_lung, severity_class
from covidlens.modality.tags import modality_from_header

#: Margin added to each side of a slice's lung bounding box, as a fraction of the box's size.
CROP_MARGIN = 0.05
#: Overlays written: the slices with the largest lesion area (the largest lung if none has lesion).
MAX_OVERLAYS = 6
#: RGB of the lung outline drawn on the overlays.
LUNG_OUTLINE = (40, 220, 80)
#: Crops sent through the model at once.
BATCH_SLICES = 8

LUNG_METHOD_HU = (
    "segment_lungs_hu: HU threshold -320, air touching the slice edge removed, lung-sized aerated "
    "components (3-D for a volume), closed and hole-filled per slice"
)
LUNG_METHOD_GREY = (
    "segment_lungs_grey: 8-bit grey levels taken as the lung window (-1350..150 HU) and mapped back to "
    "approximate HU, then segment_lungs_hu; a rough guide only, fails on images already cropped to the lungs"
)
LUNG_METHOD_GIVEN = "given lung mask"
_SUMMARY = "summary.json"
_SLICES = "slices.csv"
_MARKER = "covidlens quantify"


@dataclass
class SliceMeasure:
    index: int
    lesion_area: float
    lung_area: float
    #: Percent of this slice's lung covered by lesion; None when the slice has no lung.
    percent_involved: float | None
    #: Lesion the model predicted inside the slice's lung box but outside the lung mask, which the
    #: lung filter removed (same units as the areas): the filter's effect, slice by slice.
    removed_area: float = 0.0


@dataclass
class QuantifyResult:
    scan: str
    #: "mm2" when the scan records its pixel spacing, else "pixels".
    area_units: str
    #: "mL" or "voxels" for a volume; None for a single slice (a slice has no thickness here).
    volume_units: str | None
    lesion_volume: float | None
    lung_volume: float | None
    lesion_area: float
    lung_area: float
    #: Percent of the lung (all slices) covered by lesion; None when no lung was found.
    percent_involved: float | None
    severity_class: str | None
    spacing: tuple[float, ...] | None
    n_slices: int
    n_lung_slices: int
    checkpoint: str
    model: str
    lung_method: str
    #: Predicted lesion that the lung mask removed (area over all slices; volume for a volume).
    removed_lesion_area: float = 0.0
    removed_lesion_volume: float | None = None
    slices: list[SliceMeasure] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    out_dir: str | None = None

    @property
    def calibrated(self) -> bool:
        return self.area_units == "mm2"


def quantify_scan(
    scan_path: str | Path,
    checkpoint: Checkpoint | str | Path,
    out_dir: str | Path | None = None,
    *,
    lung_mask=None,
    slice_range: tuple[int, int] | None = None,
    require_mm: bool = False,
    progress: bool = True,
    max_overlays: int = MAX_OVERLAYS,
) -> QuantifyResult:
    """Lung and lesion measures of one CT scan; with ``out_dir``, also its CSV, JSON and overlays.

    ``lung_mask`` (optional): a boolean array of the scan's shape, or a mask file (NIfTI, PNG, DICOM)
    read like the scan, used instead of the classical lung segmentation. ``slice_range`` = (start,
    stop) keeps slices start..stop-1 of a volume (label indices of COVID-CT-MD, k = 0 most superior).
    ``require_mm`` refuses a scan without pixel spacing instead of reporting pixels. The output folder
    is written complete or not at all: everything goes into a temporary folder beside it that is
    renamed at the end (a previous quantify result there is replaced; any other non-empty folder is
    refused). Bad input raises :class:`CovidlensError` with one sentence.
    """
    ckpt = _segmentation_checkpoint(checkpoint)
    scan = read_scan(scan_path)
    _check_ct(scan)
    out = _check_out_dir(out_dir) if out_dir is not None else None
    if require_mm and scan.spacing is None:
        raise CovidlensError(
            f"{scan.path} records no pixel spacing, so areas and volumes cannot be given in mm; "
            "drop --require-mm to report them in pixels."
        )
    pixels, spacing = _slices(scan, slice_range)
    notes: list[str] = []
    if spacing is None:
        notes.append("The scan records no pixel spacing: areas are in pixels and volumes in voxels, not mm.")

    hu = scan.units == "HU"
    # HU: the lung window, as the MedSeg slices were shown; 8-bit input as stored (to_uint8).
    grey = window(pixels, *LUNG_WINDOW) if hu else _slices(replace(scan, pixels=to_uint8(scan)), slice_range)[0]
    if lung_mask is not None:
        lung = _given_mask(lung_mask, pixels.shape, scan, slice_range)
        method = LUNG_METHOD_GIVEN
    elif hu:
        lung = _lungs(segment_lungs_hu, pixels, spacing, scan.ndim)
        method = LUNG_METHOD_HU
    else:
        lung = _lungs(segment_lungs_grey, grey, spacing, scan.ndim)
        method = LUNG_METHOD_GREY
        notes.append("The input has no Hounsfield units: the lung mask comes from grey levels (" + LUNG_METHOD_GREY + ").")
    if not lung.any():
        notes.append("No lung was found in any slice, so there is no percentage of involvement or severity class.")

    predicted = _lesions(ckpt, grey, lung, progress and pixels.shape[0] > 1)
    lesion = restrict_to_lung(predicted, lung)
    result = _measure(scan, ckpt, pixels.shape[0], spacing, lesion, lung, method, notes, slice_range, predicted & ~lesion)
    if out is not None:
        _write_outputs(out, result, grey, lesion, lung, max_overlays)
    return result


def lesion_masks(checkpoint: Checkpoint | str | Path, grey: np.ndarray, lung: np.ndarray, progress: bool = False,
                 engine=None) -> np.ndarray:
    """Boolean lesion mask (D, H, W) of 8-bit lung-window slices (D, H, W), each slice cropped to its
    lung box before the model (the module docstring says why); slices without lung get none. ``engine``:
    an ONNX Runtime model of the same checkpoint (see :func:`covidlens.segmentation.predict.segment_batch`)."""
    return _lesions(_segmentation_checkpoint(checkpoint), np.asarray(grey, dtype=np.uint8), np.asarray(lung, dtype=bool),
                    progress, engine)


def lung_crop_box(lung2d: np.ndarray, margin: float = CROP_MARGIN) -> tuple[slice, slice] | None:
    """(rows, cols) of a slice's lung bounding box grown by ``margin`` of its size on each side,
    clipped to the slice; None when the slice has no lung."""
    rows = np.flatnonzero(lung2d.any(axis=1))
    cols = np.flatnonzero(lung2d.any(axis=0))
    if rows.size == 0:
        return None
    height, width = lung2d.shape
    pad_r = max(2, int(round(margin * (rows[-1] - rows[0] + 1))))
    pad_c = max(2, int(round(margin * (cols[-1] - cols[0] + 1))))
    return (slice(max(rows[0] - pad_r, 0), min(rows[-1] + 1 + pad_r, height)),
            slice(max(cols[0] - pad_c, 0), min(cols[-1] + 1 + pad_c, width)))


def _segmentation_checkpoint(checkpoint) -> Checkpoint:
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if ckpt.info.task != "segmentation":
        raise CovidlensError(
            f"{ckpt.path} is a {ckpt.info.task} model, but quantify needs a lesion segmentation checkpoint "
            "(covidlens segment train)."
        )
    if ckpt.info.modality != "ct":
        raise CovidlensError(
            f"{ckpt.path} is a {ckpt.info.modality.upper()} model, but quantify measures CT lesions; use a CT lesion checkpoint."
        )
    return ckpt


def _check_ct(scan: Scan) -> None:
    header = modality_from_header(scan.modality)
    if header == "cxr":
        raise CovidlensError(
            f"{scan.path} is an X-ray ({scan.modality}) image, but quantify measures lesions on CT slices and volumes."
        )
    if header == "other":
        raise CovidlensError(f"{scan.path} is a {scan.modality} image, but quantify measures lesions on CT only.")
    if scan.ndim not in (2, 3):
        raise CovidlensError(f"{scan.path} is {scan.ndim}-D; quantify needs a CT slice or a 3-D volume.")


def _check_out_dir(out_dir) -> Path:
    out = Path(out_dir)
    if not out.resolve().parent.is_dir():
        raise CovidlensError(f"cannot write {out}: its folder {out.resolve().parent} does not exist.")
    if out.exists():
        if not out.is_dir():
            raise CovidlensError(f"{out} exists and is not a folder; give a new folder for the quantify output.")
        if any(out.iterdir()) and not _is_previous_result(out):
            raise CovidlensError(f"{out} already holds other files; give a new or empty folder for the quantify output.")
    return out


def _is_previous_result(folder: Path) -> bool:
    try:
        return json.loads((folder / _SUMMARY).read_text()).get("tool") == _MARKER
    except (OSError, ValueError, AttributeError):
        return False


def _slices(scan: Scan, slice_range) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """The pixels as (D, H, W) and the spacing as given by the scan (2 or 3 values, or None)."""
    if scan.ndim == 2:
        if slice_range is not None:
            raise CovidlensError(f"{scan.path} is a single slice; a slice range applies to volumes only.")
        return scan.pixels[None], scan.spacing
    if slice_range is None:
        return scan.pixels, scan.spacing
    start, stop = (int(v) for v in slice_range)
    depth = scan.pixels.shape[0]
    if not 0 <= start < stop <= depth:
        raise CovidlensError(f"Slice range {start}:{stop} does not fit {scan.path}, which has slices 0..{depth - 1}.")
    return scan.pixels[start:stop], scan.spacing


def _lungs(segment, values: np.ndarray, spacing, ndim: int) -> np.ndarray:
    if ndim == 2:
        return segment(values[0], spacing)[None]
    return segment(values, spacing)


def _given_mask(mask, shape: tuple[int, ...], scan: Scan, slice_range) -> np.ndarray:
    if isinstance(mask, (str, Path)):
        mask = read_scan(mask).pixels
    array = np.asarray(mask)
    if scan.ndim == 2 and array.ndim == 2:
        array = array[None]
    elif slice_range is not None and array.ndim == 3 and array.shape == scan.pixels.shape:
        array = array[slice_range[0]:slice_range[1]]
    if array.shape != shape:
        raise CovidlensError(
            f"The lung mask has shape {array.shape} but the scan has {shape}; give a mask of the scan's own grid."
        )
    return array > 0


def _lesions(ckpt: Checkpoint, grey: np.ndarray, lung: np.ndarray, progress: bool, engine=None) -> np.ndarray:
    from covidlens.segmentation.predict import segment_batch

    lesion = np.zeros(grey.shape, dtype=bool)
    jobs = [(k, box) for k in range(grey.shape[0]) if (box := lung_crop_box(lung[k])) is not None]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="slice", desc="lesions", leave=False)
    for start in range(0, len(jobs), BATCH_SLICES):
        chunk = jobs[start:start + BATCH_SLICES]
        probs = segment_batch(ckpt, [np.ascontiguousarray(grey[k][box]) for k, box in chunk], engine=engine)
        for (k, box), p in zip(chunk, probs):
            lesion[k][box] = p.argmax(0) > 0
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return lesion


def _measure(scan, ckpt, depth, spacing, lesion, lung, method, notes, slice_range, removed) -> QuantifyResult:
    lesion_px = lesion.reshape(depth, -1).sum(axis=1).astype(np.float64)
    removed_px = removed.reshape(depth, -1).sum(axis=1).astype(np.float64)
    lung_px = lung.reshape(depth, -1).sum(axis=1).astype(np.float64)
    pixel = spacing[-2] * spacing[-1] if spacing is not None else 1.0
    lesion_area, lung_area = lesion_px * pixel, lung_px * pixel
    slices = []
    first = slice_range[0] if slice_range is not None else 0
    for k in range(depth):
        percent = 100.0 * lesion_px[k] / lung_px[k] if lung_px[k] else None
        slices.append(SliceMeasure(first + k, float(lesion_area[k]), float(lung_area[k]), percent, float(removed_px[k] * pixel)))
    total_lung = float(lung_px.sum())
    percent = 100.0 * float(lesion_px.sum()) / total_lung if total_lung else None
    if scan.ndim == 3:
        if spacing is not None:
            voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
            volume_units, lesion_volume, lung_volume = "mL", float(lesion_px.sum()) * voxel_ml, total_lung * voxel_ml
            removed_volume = float(removed_px.sum()) * voxel_ml
        else:
            volume_units, lesion_volume, lung_volume = "voxels", float(lesion_px.sum()), total_lung
            removed_volume = float(removed_px.sum())
    else:
        volume_units = lesion_volume = lung_volume = removed_volume = None
        notes.append("A single slice has no volume here: areas and the percent of this slice's lung are reported.")
    return QuantifyResult(
        scan=str(scan.path),
        area_units="mm2" if spacing is not None else "pixels",
        volume_units=volume_units,
        lesion_volume=lesion_volume,
        lung_volume=lung_volume,
        lesion_area=float(lesion_area.sum()),
        lung_area=float(lung_area.sum()),
        percent_involved=percent,
        severity_class=severity_class(percent) if percent is not None else None,
        spacing=tuple(float(v) for v in spacing) if spacing is not None else None,
        n_slices=depth,
        n_lung_slices=int((lung_px > 0).sum()),
        checkpoint=str(ckpt.path),
        model=ckpt.info.model,
        lung_method=method,
        removed_lesion_area=float(removed_px.sum() * pixel),
        removed_lesion_volume=removed_volume,
        slices=slices,
        notes=notes,
    )


def _overlay_png(grey: np.ndarray, lesion: np.ndarray, lung: np.ndarray, path: Path) -> None:
    """The windowed slice with lesion tinted red and the lung outline drawn in green."""
    from covidlens.visualize import draw_outline, mask_overlay, png_bytes

    path.write_bytes(png_bytes(draw_outline(mask_overlay(grey, lesion.astype(np.uint8)), lung, LUNG_OUTLINE)))


def _overlay_slices(result: QuantifyResult, max_overlays: int) -> list[int]:
    """Positions (0-based in the measured stack) of the most affected slices."""
    areas = np.array([s.lesion_area for s in result.slices])
    if (areas > 0).any():
        order = [int(i) for i in np.argsort(-areas, kind="stable") if areas[i] > 0]
    else:
        lungs = np.array([s.lung_area for s in result.slices])
        order = [int(np.argmax(lungs))] if (lungs > 0).any() else []
    return sorted(order[:max_overlays])


def _summary(result: QuantifyResult) -> dict:
    record = asdict(result)
    record.pop("slices")
    record.pop("out_dir")
    return {"tool": _MARKER, **record,
            "lesion_volume_ml": result.lesion_volume if result.volume_units == "mL" else None,
            "lung_volume_ml": result.lung_volume if result.volume_units == "mL" else None,
            "preprocessing": "lung window (-600, 1500) to 8-bit, crop to each slice's lung box with a "
                             f"{CROP_MARGIN:.0%} margin, the model's own resize, probabilities pasted back, "
                             "lesion outside the lung mask removed"}


def _write_outputs(out: Path, result: QuantifyResult, grey, lesion, lung, max_overlays: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.resolve().parent))
    try:
        overlays = tmp / "overlays"
        overlays.mkdir()
        for k in _overlay_slices(result, max_overlays):
            name = f"overlays/slice_{result.slices[k].index:04d}.png"
            _overlay_png(grey[k], lesion[k], lung[k], tmp / name)
            result.overlays.append(name)
        unit = result.area_units
        with (tmp / _SLICES).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["slice", f"lesion_area_{unit}", f"lung_area_{unit}", "percent_involved",
                             f"removed_outside_lung_{unit}"])
            for s in result.slices:
                writer.writerow([s.index, f"{s.lesion_area:.3f}", f"{s.lung_area:.3f}",
                                 "" if s.percent_involved is None else f"{s.percent_involved:.4f}", f"{s.removed_area:.3f}"])
        (tmp / _SUMMARY).write_text(json.dumps(_summary(result), indent=2, allow_nan=False) + "\n")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.resolve().parent))
            out.rename(old / "previous")
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.out_dir = str(out)


def format_summary(result: QuantifyResult) -> str:
    """A few lines for the terminal: volumes (or areas), involvement, severity and any caveats."""
    lines = []
    if result.volume_units is not None:
        unit = result.volume_units
        lines.append(f"lung volume {_num(result.lung_volume)} {unit}, lesion volume {_num(result.lesion_volume)} {unit}")
    else:
        unit = "mm²" if result.calibrated else "pixels"
        lines.append(f"lung area {_num(result.lung_area)} {unit}, lesion area {_num(result.lesion_area)} {unit}")
    involved = "n/a (no lung)" if result.percent_involved is None else f"{result.percent_involved:.2f} %"
    lines.append(f"lung involved {involved}, severity {result.severity_class or 'n/a'}; "
                 f"{result.n_lung_slices} of {result.n_slices} slices show lung")
    lines.append(f"lungs: {result.lung_method.split(':')[0]}")
    if result.removed_lesion_area:
        removed = (f"{_num(result.removed_lesion_volume)} {result.volume_units}" if result.volume_units is not None
                   else f"{_num(result.removed_lesion_area)} {'mm²' if result.calibrated else 'pixels'}")
        lines.append(f"the lung mask removed {removed} of predicted lesion outside the lungs")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def _num(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.1f}"
