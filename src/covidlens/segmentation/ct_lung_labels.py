"""Training labels for a learned CT lung model: the HU lung rule on every real HU scan, shown as 8-bit.

Slices without Hounsfield units (PNG/JPEG figures, MedSeg's crops) have no reliable classical lung
mask (docs/results.md, section 5). A network can learn the lungs from 8-bit pictures if it is shown
8-bit pictures whose lungs are known, and the real HU scans here give them: the HU rule
(:func:`covidlens.measure.lungs.segment_lungs_hu`) finds their lungs, and the same slice is rendered
in a lung window as the 8-bit image the network reads.

:func:`build_ct_lung_labels` writes, into a folder outside the repository:

- ``images/<scan>_<slice>[_a<k>].png`` (8-bit grey) and ``masks/...png`` (0/255), the plain
  lung-window render of every slice and, for training slices, ``variants`` augmented copies
  (:func:`augment_slice`: other windows, crops to the lungs or the body, figure-like white or black
  margins, resizing, JPEG compression; the training presets add flips, crops and contrast on top);
- ``table.csv`` with the columns ``path, mask, mask_classes, label, split, patient_id, scan, slice,
  variant``, read by :func:`covidlens.data.sets.core.load_csv` as a segmentation table (classes
  ``background, lung``), grouped by patient so that a scan stays on one side of every split;
- ``excluded.csv``: the slices left out and why, and ``scans.csv``: per scan, slices and split.

Labels and their limits:

- Volumes (COVID-CT-MD) are segmented in 3-D (small apical and basal pieces of lung are found
  through their neighbours); single DICOM slices (NY-SBU) in 2-D. In both, airway-sized in-slice
  pieces of the mask that are gas rather than lung (at most ``AIRWAY_MAX_MM2``, first quartile below
  ``GAS_QUARTILE_HU``: the trachea and the main bronchi, which the 3-D rule joins to the lungs) are
  removed, so that every label means the same thing: lung with what it encloses, no central airways.
- Split by patient: cap001 (community-acquired pneumonia, 168 slices) is the test scan held out
  whole; three NY-SBU patients (chosen by SHA-256 of seed and patient) validate; P001 (volume and
  DICOM series), normal001 and the other NY-SBU patients train.
- The rule misses dense consolidation that touches the chest wall (the known limit of the HU rule).
  With a lesion checkpoint, :func:`missed_lesion` finds it per slice: lesion-model pixels that are
  consolidation-dense (-500..150 HU), outside the HU mask and within :data:`MISSED_REACH_MM` of it.
  Slices where it is at least :data:`MISSED_MAX_SHARE` of the lung area are excluded from training and from the test
  Dice (listed in ``excluded.csv``, shown in yellow on the overlays). They are not fixed: a lesion
  model's outline is not a lung border, and a convex-hull fill would put the heart and the diaphragm
  dome into the lung. (A convex-hull gap measure was tried first and rejected: the diaphragm dome and
  the heart fill the gap of every normal basal slice.)
- P001's DICOM series is the same patient as P001's volume (40 of its slices at full 512 px): it
  shares P001's group, so it can never sit on the other side of a split from its own volume.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from covidlens.data.intensity import LUNG_WINDOW, window
from covidlens.errors import CovidlensError
from covidlens.measure.lungs import GAS_QUARTILE_HU, segment_lungs_hu

LUNG_LABEL_CLASSES = ["background", "lung"]
#: In-slice pieces of gas up to this area are airways (the trachea is at most about 25 mm across).
AIRWAY_MAX_MM2 = 600.0
#: HU range of consolidation-like tissue looked for in the gap between a lung and its hull.
DENSE_HU = (-500.0, 150.0)
#: A lesion prediction outside the HU lung mask counts as missed lung only this close to the mask.
MISSED_REACH_MM = 8.0
#: Slices whose missed lesion area reaches this share of their lung area are excluded from training
#: and test (an absolute area flags the partial-volume lung tips at the apex and every 512 px slice).
MISSED_MAX_SHARE = 0.04
#: The scan held out whole for the test Dice, and the NY-SBU patients used for validation.
DEFAULT_TEST_GROUP = "cap001"
DEFAULT_VAL_PATIENTS = 3


@dataclass
class ScanSlices:
    """One real HU scan: its slices in HU (D, H, W), in-plane spacing, group and where it came from."""

    scan: str
    group: str
    hu: np.ndarray
    spacing: tuple[float, float]
    source: str
    #: label index of each slice in the scan's volume (the P001 series maps onto P001's volume).
    slice_ids: list[int] = field(default_factory=list)
    #: slice step in mm (volumes and series only).
    step: float = 2.0


def hu_lung_labels(hu: np.ndarray, spacing) -> np.ndarray:
    """The HU rule's lung mask (3-D for a volume, 2-D for a slice) without the central airways.

    ``spacing`` is (slice, row, col) for a volume, (row, col) for a slice. In-slice pieces of the
    mask of airway size (at most :data:`AIRWAY_MAX_MM2`) whose first quartile is below
    :data:`GAS_QUARTILE_HU` (trachea, main bronchi) are removed. Larger dark pieces stay: without
    the size bound, the cystic right lung of cap001 (in-slice first quartile below -915 HU) was cut
    out of 40-odd slices' labels, and found only on the model's overlays.
    """
    hu = np.asarray(hu, dtype=np.float32)
    mask = segment_lungs_hu(hu, spacing)
    volume, lung = (hu[None], mask[None]) if hu.ndim == 2 else (hu, mask)
    out = lung.copy()
    pixel_mm2 = float(np.prod(spacing[-2:])) if spacing is not None else 0.75 * 0.75
    for k in range(lung.shape[0]):
        labels, count = ndi.label(lung[k])
        for j, box in enumerate(ndi.find_objects(labels), start=1):
            if box is None:
                continue
            piece = labels[box] == j
            if piece.sum() * pixel_mm2 > AIRWAY_MAX_MM2:
                continue  # lung, however dark: an emphysematous or cystic lung is not an airway
            if float(np.percentile(volume[k][box][piece], 25)) <= GAS_QUARTILE_HU:
                out[k][box][piece] = False
    return out[0] if hu.ndim == 2 else out


def missed_lesion(hu: np.ndarray, lung: np.ndarray, lesion: np.ndarray, spacing, reach_mm: float = MISSED_REACH_MM) -> np.ndarray:
    """Lesion pixels the HU rule left out at the lung's edge: predicted lesion, consolidation-dense
    (:data:`DENSE_HU`), outside the lung mask but within ``reach_mm`` of it (farther away a lesion
    prediction is a false alarm in the chest wall or the abdomen, not lung that was missed)."""
    lung = np.asarray(lung, dtype=bool)
    if not lung.any():
        return np.zeros_like(lung)
    radius = max(1, int(round(reach_mm / min(spacing))))
    near = ndi.distance_transform_edt(~lung, sampling=spacing) <= reach_mm if radius else lung
    dense = (hu >= DENSE_HU[0]) & (hu <= DENSE_HU[1])
    return np.asarray(lesion, dtype=bool) & ~lung & near & dense


def lesion_masks(checkpoint, greys: list[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
    """Boolean lesion masks of 8-bit slices from a lesion segmentation checkpoint (any class > 0)."""
    from covidlens.segmentation.predict import segment_batch

    out = []
    for start in range(0, len(greys), batch_size):
        out.extend(p.argmax(0) > 0 for p in segment_batch(checkpoint, greys[start : start + batch_size]))
    return out


def render(hu: np.ndarray, centre: float = LUNG_WINDOW[0], width: float = LUNG_WINDOW[1]) -> np.ndarray:
    """8-bit grey levels of HU through a display window (covidlens's lung window by default)."""
    return window(hu, centre, width)


def _rng_for(*keys) -> np.random.Generator:
    digest = hashlib.sha256("\0".join(str(k) for k in keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def augment_slice(hu: np.ndarray, lung: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """One slice as a user might bring it: (8-bit image, 0/1 mask, what was done).

    Drawn per call: a display window (centre -800..-350 HU, width 900..2000 HU); a crop to the lungs'
    bounding box with a small or negative margin (like MedSeg's crops, lungs touching the edge), to
    the body, or none; white or black figure margins; a resize of the long side to 128..512 px; JPEG
    at quality 25..95. The mask follows every geometric step (nearest neighbour).
    """
    done = []
    centre, width = rng.uniform(-800, -350), rng.uniform(900, 2000)
    grey = render(hu, centre, width)
    done.append(f"window {centre:.0f}/{width:.0f}")
    mask = np.asarray(lung, dtype=np.uint8)
    h, w = grey.shape
    pick = rng.random()
    if pick < 0.45 and mask.any():
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        m = rng.uniform(-0.03, 0.12, size=4)
        top = int(np.clip(rows[0] - m[0] * h, 0, h - 8))
        bottom = int(np.clip(rows[-1] + 1 + m[1] * h, top + 8, h))
        left = int(np.clip(cols[0] - m[2] * w, 0, w - 8))
        right = int(np.clip(cols[-1] + 1 + m[3] * w, left + 8, w))
        grey, mask = grey[top:bottom, left:right], mask[top:bottom, left:right]
        done.append("lung crop")
    elif pick < 0.75:
        body = ndi.binary_fill_holes(hu > -500)
        if body.any():
            rows, cols = np.flatnonzero(body.any(1)), np.flatnonzero(body.any(0))
            m = rng.uniform(0.0, 0.08, size=4)
            top, bottom = int(max(rows[0] - m[0] * h, 0)), int(min(rows[-1] + 1 + m[1] * h, h))
            left, right = int(max(cols[0] - m[2] * w, 0)), int(min(cols[-1] + 1 + m[3] * w, w))
            if bottom - top >= 16 and right - left >= 16:
                grey, mask = grey[top:bottom, left:right], mask[top:bottom, left:right]
                done.append("body crop")
    if rng.random() < 0.3:
        colour = 255 if rng.random() < 0.5 else 0
        gh, gw = grey.shape
        pad = [int(rng.uniform(0, 0.15) * s) for s in (gh, gh, gw, gw)]
        grey = np.pad(grey, ((pad[0], pad[1]), (pad[2], pad[3])), constant_values=colour)
        mask = np.pad(mask, ((pad[0], pad[1]), (pad[2], pad[3])), constant_values=0)
        done.append(f"{'white' if colour else 'black'} margin")
    long_side = int(rng.uniform(128, 512))
    scale = long_side / max(grey.shape)
    size = (max(8, int(round(grey.shape[1] * scale))), max(8, int(round(grey.shape[0] * scale))))
    image = Image.fromarray(grey).resize(size, Image.BILINEAR)
    mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
    done.append(f"{size[0]}x{size[1]}")
    if rng.random() < 0.8:
        quality = int(rng.uniform(25, 95))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("L")
        done.append(f"jpeg {quality}")
    return np.asarray(image), mask.astype(np.uint8), ", ".join(done)


def read_hu_scans(data_root: str | Path) -> list[ScanSlices]:
    """Every real HU scan under ``data_root`` (``.../shared/data``): the three COVID-CT-MD volumes,
    P001's DICOM series and the NY-SBU single slices; each must be present."""
    from covidlens.data.io import read_scan
    from covidlens.data.sets.core import read_csv_rows

    root = Path(data_root)
    md = root / "ct" / "covid-ct-md"
    ny = root / "ct" / "ny-sbu-dicom"
    for folder in (md / "volumes", md / "dicom-series" / "P001", ny):
        if not folder.is_dir():
            raise CovidlensError(f"{folder} is missing; point --data-root at the folder that holds ct/covid-ct-md and ct/ny-sbu-dicom.")
    scans = []
    for name in ("P001", "cap001", "normal001"):
        scan = read_scan(md / "volumes" / f"{name}.nii.gz")
        scans.append(ScanSlices(name, name, scan.pixels, tuple(scan.spacing[1:]), "covid-ct-md volume",
                                list(range(scan.pixels.shape[0])), float(scan.spacing[0])))
    series = read_scan(md / "dicom-series" / "P001")
    rows = sorted(read_csv_rows(md / "dicom-series" / "P001" / "series_labels.csv"), key=lambda r: int(r["label_index"]))
    scans.append(ScanSlices("P001-dicom", "P001", series.pixels, tuple(series.spacing[1:]), "covid-ct-md DICOM series",
                            [int(r["label_index"]) for r in rows], float(series.spacing[0])))
    for row in read_csv_rows(ny / "slices_index.csv"):
        scan = read_scan(ny / row["file"])
        key = row["file"].removesuffix(".dcm").replace("/axial/", "-")
        scans.append(ScanSlices(f"nysbu-{key}", row["patient_id"], scan.pixels[None], tuple(scan.spacing),
                                "ny-sbu DICOM slice", [0]))
    return scans


def scan_masks(scan: ScanSlices) -> np.ndarray:
    """The label masks of one scan: 3-D rule for a series of slices, 2-D for a single slice."""
    if scan.hu.shape[0] == 1:
        return hu_lung_labels(scan.hu[0], scan.spacing)[None]
    return hu_lung_labels(scan.hu, (scan.step, *scan.spacing))


def split_of(group: str, test_group: str, val_groups: set[str]) -> str:
    return "test" if group == test_group else "val" if group in val_groups else "train"


def build_ct_lung_labels(
    data_root: str | Path,
    out_dir: str | Path,
    variants: int = 1,
    test_group: str = DEFAULT_TEST_GROUP,
    val_patients: int = DEFAULT_VAL_PATIENTS,
    overlays_dir: str | Path | None = None,
    overlays_per_scan: int = 4,
    seed: int = 0,
    scans: list[ScanSlices] | None = None,
    lesion_checkpoint=None,
) -> Path:
    """Write the lung label set (see the module docstring) and return the path of ``table.csv``."""
    out = Path(out_dir)
    scans = scans if scans is not None else read_hu_scans(data_root)
    if not scans:
        raise CovidlensError("no HU scans to build lung labels from.")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    ny_groups = sorted({s.group for s in scans if s.source.startswith("ny-sbu")},
                       key=lambda g: hashlib.sha256(f"{seed}\0{g}".encode()).hexdigest())
    val_groups = set(ny_groups[:val_patients])
    masks = {s.scan: scan_masks(s) for s in scans}
    missed = {s.scan: np.zeros_like(masks[s.scan]) for s in scans}
    if lesion_checkpoint is not None:
        for s in scans:
            lesions = lesion_masks(lesion_checkpoint, [render(h) for h in s.hu])
            missed[s.scan] = np.stack([missed_lesion(h, m, les, s.spacing) for h, m, les in zip(s.hu, masks[s.scan], lesions)])
    shares = {s.scan: [float(m.sum()) / max(int(l.sum()), 1) for m, l in zip(missed[s.scan], masks[s.scan])]
              for s in scans}
    threshold = MISSED_MAX_SHARE

    rows, excluded, summary = [], [], []
    for s in scans:
        split = split_of(s.group, test_group, val_groups)
        kept = 0
        for k, (hu, lung) in enumerate(zip(s.hu, masks[s.scan])):
            stem = f"{s.scan}_{s.slice_ids[k]:03d}"
            share = shares[s.scan][k]
            if share >= threshold:
                excluded.append({"scan": s.scan, "slice": s.slice_ids[k], "split": split, "missed_share": f"{share:.4f}",
                                 "threshold": f"{threshold:.4f}",
                                 "reason": "dense lesion at the lung edge outside the HU mask"})
                continue
            kept += 1
            items = [(stem, render(hu), lung.astype(np.uint8), "plain")]
            if split == "train":
                for v in range(variants):
                    grey, mask, what = augment_slice(hu, lung, _rng_for(seed, s.scan, k, v))
                    items.append((f"{stem}_a{v}", grey, mask, what))
            for name, grey, mask, what in items:
                Image.fromarray(grey).save(out / "images" / f"{name}.png")
                Image.fromarray(mask * 255).save(out / "masks" / f"{name}.png")
                rows.append({"path": f"images/{name}.png", "mask": f"masks/{name}.png", "mask_classes": "background;lung",
                             "label": "lung", "split": split, "patient_id": s.group, "scan": s.scan,
                             "slice": s.slice_ids[k], "variant": what, "lung_fraction": f"{lung.mean():.4f}"})
        summary.append({"scan": s.scan, "group": s.group, "source": s.source, "split": split, "slices": len(s.hu),
                        "kept": kept, "with_lung": int(sum(bool(m.any()) for m in masks[s.scan]))})
    _write_csv(out / "table.csv", rows)
    _write_csv(out / "excluded.csv", excluded, ["scan", "slice", "split", "missed_share", "threshold", "reason"])
    _write_csv(out / "scans.csv", summary)
    if overlays_dir is not None:
        write_overlays(scans, masks, missed, shares, threshold, Path(overlays_dir), overlays_per_scan)
    return out / "table.csv"


def _write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> None:
    fields = fields or (list(rows[0]) if rows else [])
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def overlay(grey: np.ndarray, lung: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
    """RGB: the grey slice beside itself with the lung outline in red (and ``extra`` in yellow)."""
    rgb = np.repeat(np.asarray(grey)[..., None], 3, axis=2).astype(np.uint8)
    painted = rgb.copy()
    lung = np.asarray(lung, dtype=bool)
    edge = lung & ~ndi.binary_erosion(lung)
    painted[lung] = (0.7 * painted[lung] + 0.3 * np.array([255, 0, 0])).astype(np.uint8)
    painted[edge] = (255, 0, 0)
    if extra is not None:
        painted[np.asarray(extra, dtype=bool)] = (255, 220, 0)
    return np.concatenate([rgb, painted], axis=1)


def write_overlays(scans, masks, missed, shares, threshold, folder: Path, per_scan: int) -> list[Path]:
    """Per scan, ``per_scan`` evenly spaced slices with lung, its slice with the most missed lesion,
    and every excluded slice (missed lesion in yellow)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for s in scans:
        with_lung = [k for k in range(len(s.hu)) if masks[s.scan][k].any()] or [0]
        picks = {with_lung[int(i)] for i in np.linspace(0, len(with_lung) - 1, min(per_scan, len(with_lung)))}
        picks.add(int(np.argmax(shares[s.scan])))
        picks |= {k for k, v in enumerate(shares[s.scan]) if v >= threshold}
        for k in sorted(picks):
            flag = "EXCLUDED" if shares[s.scan][k] >= threshold else "kept"
            path = folder / f"{s.scan}_{s.slice_ids[k]:03d}_{flag}_missed{shares[s.scan][k]:.3f}.png"
            Image.fromarray(overlay(render(s.hu[k]), masks[s.scan][k], missed[s.scan][k])).save(path)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m covidlens.segmentation.ct_lung_labels",
        description="Build the CT lung label set: HU lung masks of every real HU scan, rendered as 8-bit slices.",
    )
    parser.add_argument("--data-root", required=True, help="folder holding ct/covid-ct-md and ct/ny-sbu-dicom")
    parser.add_argument("--out", required=True, help="derived folder (outside the repository)")
    parser.add_argument("--variants", type=int, default=1, help="augmented copies per training slice")
    parser.add_argument("--test-group", default=DEFAULT_TEST_GROUP)
    parser.add_argument("--overlays", default=None, help="folder for overlay PNGs (e.g. reports/ct_lungs/overlays)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lesion-checkpoint", default=None,
                        help="lesion model used to find dense lesion the HU rule left out at the lung edge")
    args = parser.parse_args(argv)
    try:
        table = build_ct_lung_labels(args.data_root, args.out, args.variants, args.test_group, overlays_dir=args.overlays,
                                     seed=args.seed, lesion_checkpoint=args.lesion_checkpoint)
    except CovidlensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
