"""Lung-masked copies of 8-bit CT slices (COVID-CT and the like): stage 2 of seed 002's
segment-then-classify idea on CT, with the learned CT lung model
(:func:`covidlens.segmentation.ct_lungs.ct_lung_masks`) in place of the chest X-ray one.

:func:`mask_ct_images` masks slices in memory (black outside the lungs, as
:func:`covidlens.segmentation.lungs.apply_lungs` ``"masked"`` does for chest X-rays); a slice where the
model finds no lung is kept whole and counted. :func:`ct_masked_table` does that once for every sample
of a table, writes the masked slices and the masks as PNG under a work folder outside the repository
(``/tmp/ct_masked`` by default; copies already there are reused) and a CSV table
(:func:`covidlens.data.derived.write_table`: same classes, split and groups) that a trainer reads as
``data.dataset``.

For CT in Hounsfield units use :func:`mask_hu_slices` (the HU lung rule,
:func:`covidlens.measure.lungs.segment_lungs_hu`, on the whole volume as the screen road does), shown
through the lung window as :meth:`Sample.image` does.

Known limit (benchmarks/ct_lung_model.py): the lung model keeps about 81 % of radiologists' lesion
pixels on MedSeg; dense consolidation at the chest wall is the part it misses.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from covidlens.data.derived import write_table
from covidlens.data.sets.core import Sample, SampleTable

DEFAULT_WORK = Path("/tmp/ct_masked")
BATCH = 32


def masked_slice(grey: np.ndarray, lung: np.ndarray) -> tuple[np.ndarray, bool]:
    """``grey`` black outside ``lung``, and whether the mask was empty (then ``grey`` is kept whole)."""
    from covidlens.segmentation.lungs import apply_lungs

    grey = np.asarray(grey)
    if not np.asarray(lung).any():
        return grey.copy(), True
    return apply_lungs(grey, lung, "masked"), False


def mask_ct_images(lung_ckpt, images: list) -> tuple[list[Image.Image], list[np.ndarray], np.ndarray]:
    """Masked copies (grey PIL images) of 8-bit CT slices, their lung masks, and which masks were empty."""
    from covidlens.segmentation.ct_lungs import ct_lung_masks

    greys = [np.asarray(im.convert("L") if isinstance(im, Image.Image) else im) for im in images]
    masks = ct_lung_masks(lung_ckpt, [Image.fromarray(g) for g in greys])
    out, empty = [], []
    for grey, lung in zip(greys, masks):
        arr, was_empty = masked_slice(grey, lung)
        out.append(Image.fromarray(arr, mode="L"))
        empty.append(was_empty)
    return out, masks, np.array(empty, dtype=bool)


def mask_hu_slices(samples: list[Sample]) -> tuple[list[Image.Image], np.ndarray]:
    """Slices of HU scans (volume slices or single DICOM slices) in the lung window, black outside the
    HU rule's lungs (each volume segmented once, in 3-D, as the screen road does); and which were empty."""
    from covidlens.data.intensity import to_uint8
    from covidlens.data.io import read_scan
    from covidlens.errors import CovidlensError
    from covidlens.measure.lungs import segment_lungs_hu

    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    out, empty = [], []
    for s in samples:
        key = str(s.path)
        if key not in seen:
            scan = read_scan(s.path)
            if scan.units != "HU":
                raise CovidlensError(f"{s.path} is not in Hounsfield units; mask it with mask_ct_images.")
            seen = {key: (to_uint8(scan), segment_lungs_hu(scan.pixels, scan.spacing))}  # one scan at a time
        grey, lung = seen[key]
        if s.slice_index is not None:
            grey, lung = grey[s.slice_index], lung[s.slice_index]
        if s.rot90 % 4:
            grey, lung = np.rot90(grey, s.rot90), np.rot90(lung, s.rot90)
        arr, was_empty = masked_slice(np.ascontiguousarray(grey), np.ascontiguousarray(lung))
        out.append(Image.fromarray(arr, mode="L"))
        empty.append(was_empty)
    return out, np.array(empty, dtype=bool)


@dataclass
class MaskedTable:
    table: Path
    images: int
    #: Slices where the lung model found no lung, kept whole.
    kept_whole: int
    kept_whole_paths: list[str]
    #: Mean lung share of the slice, over slices with a lung.
    mean_lung_fraction: float


def ct_masked_table(lung_ckpt, table: SampleTable, work: Path = DEFAULT_WORK,
                    log: Callable[[str], None] = print) -> MaskedTable:
    """Masked copy (``work/masked/<rel>.png``) and mask (``work/mask/<rel>.png``) of every sample of
    ``table``, by its path relative to the table's common folder, and the CSV
    ``work/<table name>-masked.csv``; copies already there are reused. A summary goes to
    ``work/<table name>-masked.json``."""
    from covidlens.segmentation.lungs import load_lung_model

    lung_ckpt = load_lung_model(lung_ckpt)
    work = Path(work)
    folder = Path(os.path.commonpath([str(Path(s.path).parent) for s in table.samples]))
    paths = []
    todo = []
    for s in table.samples:
        rel = Path(s.path).relative_to(folder).with_suffix(".png")
        pair = (work / "masked" / rel, work / "mask" / rel)
        paths.append(pair)
        if not all(p.is_file() for p in pair):
            todo.append((s, pair))
    for start in range(0, len(todo), BATCH):
        chunk = todo[start : start + BATCH]
        masked, masks, _ = mask_ct_images(lung_ckpt, [s.image() for s, _ in chunk])
        for (_, (masked_path, mask_path)), image, lung in zip(chunk, masked, masks):
            masked_path.parent.mkdir(parents=True, exist_ok=True)
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            image.save(masked_path)
            Image.fromarray(lung.astype(np.uint8) * 255).save(mask_path)
        log(f"  {table.name}: lungs of {min(start + BATCH, len(todo))}/{len(todo)} slices")
    fractions, whole = [], []
    for s, (_, mask_path) in zip(table.samples, paths):
        lung = np.asarray(Image.open(mask_path)) > 127
        if lung.any():
            fractions.append(float(lung.mean()))
        else:
            whole.append(str(s.path))
    rows = [(m, table.classes[s.label], s.split, s.group) for s, (m, _) in zip(table.samples, paths)]
    csv_path = write_table(work / f"{table.name}-masked.csv", rows)
    summary = MaskedTable(csv_path, len(rows), len(whole), whole, float(np.mean(fractions)) if fractions else float("nan"))
    (work / f"{table.name}-masked.json").write_text(json.dumps({**summary.__dict__, "table": str(csv_path)}, indent=2))
    return summary
