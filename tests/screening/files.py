"""Small studies the screening tests make, and readers of what a screen wrote."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


def write_ct_volume(path: Path, seed: int = 0, shape: tuple[int, int, int] = (12, 80, 80),
                    spacing: tuple[float, float, float] = (3.0, 3.0, 5.0)) -> Path:
    """A small synthetic chest CT in HU as NIfTI: air around a soft-tissue body holding two dark lungs."""
    import nibabel

    rng = np.random.default_rng(seed)
    depth, height, width = shape
    rows, cols = np.mgrid[:height, :width]
    body = ((rows - height / 2) / (0.42 * height)) ** 2 + ((cols - width / 2) / (0.45 * width)) ** 2 <= 1
    plane = np.where(body, 40.0, -1000.0)
    for centre in (0.3 * width, 0.7 * width):
        plane[((rows - height / 2) / (0.28 * height)) ** 2 + ((cols - centre) / (0.13 * width)) ** 2 <= 1] = -850.0
    volume = np.repeat(plane[None], depth, axis=0) + rng.normal(0.0, 20.0, shape)
    data = np.transpose(volume, (2, 1, 0)).astype(np.int16)  # NIfTI axes (x, y, z)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(data, affine), str(path))
    return path


def write_radiograph_dicom(path: Path, pixels: np.ndarray) -> Path:
    """An 8-bit chest X-ray as a DICOM DX file of a series of its own."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage, for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.SeriesDescription = "CHEST PA"
    dataset.Modality = "DX"
    dataset.set_pixel_data(np.asarray(pixels, dtype=np.uint8), "MONOCHROME2", 8)
    dataset.save_as(path, enforce_file_format=True)
    return path


def read_rows(out: Path) -> dict[str, dict]:
    """results.csv of a screen output folder, by study key."""
    with (out / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_key = {r["key"]: r for r in rows}
    assert len(by_key) == len(rows), "results.csv holds a study twice"
    return by_key


def read_result(out: Path, name: str) -> dict:
    return json.loads((out / name / "result.json").read_text())


def ledger_rows(out: Path) -> list[dict]:
    rows = []
    for ledger in sorted(out.glob("screen-ledger*.jsonl")):
        rows += [json.loads(line) for line in ledger.read_text().splitlines()]
    return rows
