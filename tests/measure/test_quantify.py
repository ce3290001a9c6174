"""``quantify_scan`` and ``covidlens quantify`` on real scans: the COVID-CT-MD P001 DICOM series and the
matching slices of its NIfTI volume, a real NY-SBU slice (in HU and as a spacing-less PNG), and the
bad input a user can give (4-D NIfTI, an X-ray, a wrong mask, a foreign output folder)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidlens.checkpoint import Checkpoint, load_checkpoint
from covidlens.cli import main
from covidlens.data.intensity import LUNG_WINDOW, window
from covidlens.data.io import read_scan
from covidlens.errors import CovidlensError
from covidlens.measure import SEVERITY_CLASSES, segment_lungs_hu, severity_class
from covidlens.measure import quantify as quantify_module
from covidlens.measure.quantify import lung_crop_box, quantify_scan
from tests.segmentation.runs import tiny_segmentation_run

SERIES = Path("ct") / "covid-ct-md" / "dicom-series" / "P001"
VOLUME = Path("ct") / "covid-ct-md" / "volumes" / "P001.nii.gz"
NY_SBU = Path("ct") / "ny-sbu-dicom"
LUNG_SLICE = "A048383/axial/19001231-30.dcm"
ABDOMEN_SLICE = "A027284/axial/19000925-116.dcm"


@pytest.fixture(scope="module")
def lesion_ckpt(data_root, tmp_path_factory) -> Path:
    """The shared tiny MedSeg run (2 epochs, 64 px, 8 training slices): a real lesion checkpoint."""
    return tiny_segmentation_run(data_root, tmp_path_factory) / "model"


@pytest.fixture(scope="module")
def series_run(data_root, lesion_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("quantify") / "series"
    return quantify_scan(data_root / SERIES, lesion_ckpt, out, progress=False), out


def _first_label_index(data_root: Path) -> int:
    with (data_root / SERIES / "series_labels.csv").open() as handle:
        indices = sorted(int(row["label_index"]) for row in csv.DictReader(handle))
    assert indices == list(range(indices[0], indices[0] + 40))  # a contiguous run of the volume
    return indices[0]


def test_series_writes_csv_json_and_overlays_with_physiological_lungs(series_run):
    result, out = series_run
    assert sorted(p.name for p in out.iterdir()) == ["overlays", "slices.csv", "summary.json"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no partial folder left behind

    rows = list(csv.DictReader((out / "slices.csv").open()))
    assert len(rows) == 40 and list(rows[0]) == ["slice", "lesion_area_mm2", "lung_area_mm2", "percent_involved",
                                                 "removed_outside_lung_mm2"]
    lesion = np.array([float(r["lesion_area_mm2"]) for r in rows])
    lung = np.array([float(r["lung_area_mm2"]) for r in rows])
    # A mid-chest axial slice holds some 100-400 cm² of lung: far below the whole thorax (about 30 x 20 cm).
    assert (lung > 10_000).all() and (lung < 45_000).all()
    assert (lesion <= lung + 1e-6).all()  # lesion outside the lungs was removed

    summary = json.loads((out / "summary.json").read_text())
    assert summary["volume_units"] == "mL" and summary["n_slices"] == 40
    assert summary["spacing"] == pytest.approx([2.0, 0.748, 0.748], abs=1e-3)
    assert summary["checkpoint"] == result.checkpoint and summary["lung_method"].startswith("segment_lungs_hu")
    # 40 slices x 2 mm is an 8 cm slab of the mid-chest: a whole adult lung pair (3-7 L over ~25 cm)
    # puts about 1.5-3.5 L in it; the classical mask gives 2.63 L here.
    assert 1500 < summary["lung_volume_ml"] < 3500
    assert summary["lung_volume_ml"] == pytest.approx(lung.sum() * 2.0 / 1000, rel=1e-3)
    assert summary["lesion_volume_ml"] == pytest.approx(lesion.sum() * 2.0 / 1000, rel=1e-3)
    assert 0 <= summary["percent_involved"] <= 100
    assert summary["severity_class"] in SEVERITY_CLASSES
    assert summary["severity_class"] == severity_class(summary["percent_involved"])

    assert 1 <= len(summary["overlays"]) <= 6
    worst = np.argsort(-lesion, kind="stable")[: len(summary["overlays"])]
    assert summary["overlays"] == [f"overlays/slice_{k:04d}.png" for k in sorted(worst)]
    image = Image.open(out / summary["overlays"][0])
    assert image.mode == "RGB" and image.size == (512, 512)


def test_matching_volume_slices_give_the_same_figures(data_root, lesion_ckpt, series_run):
    series, _ = series_run
    start = _first_label_index(data_root)
    volume = quantify_scan(data_root / VOLUME, lesion_ckpt, slice_range=(start, start + 40), progress=False)
    assert [s.index for s in volume.slices] == list(range(start, start + 40))
    # The NIfTI is the series 2x2-averaged: the same lungs, measured on a coarser grid.
    assert volume.lung_volume == pytest.approx(series.lung_volume, rel=0.03)
    assert abs(volume.percent_involved - series.percent_involved) < 5.0
    per_slice = np.corrcoef([s.lung_area for s in volume.slices], [s.lung_area for s in series.slices])[0, 1]
    assert per_slice > 0.99  # and the slices are in the same order


def test_crop_preprocessing_matches_the_lung_box(data_root):
    scan = read_scan(data_root / NY_SBU / LUNG_SLICE)
    lung = segment_lungs_hu(scan.pixels, scan.spacing)
    rows, cols = lung_crop_box(lung)
    inside = np.zeros_like(lung)
    inside[rows, cols] = True
    assert lung[~inside].sum() == 0  # the crop holds every lung pixel
    lung_rows = np.flatnonzero(lung.any(axis=1))
    assert rows.start < lung_rows[0] and rows.stop > lung_rows[-1] + 1  # with a margin
    assert lung_crop_box(np.zeros((8, 8), dtype=bool)) is None


def test_slice_without_lungs_gets_no_lesion(data_root, lesion_ckpt):
    result = quantify_scan(data_root / NY_SBU / ABDOMEN_SLICE, lesion_ckpt, progress=False)
    assert result.lung_area == 0 and result.lesion_area == 0
    assert result.percent_involved is None and result.severity_class is None
    assert any("No lung" in note for note in result.notes)


def test_png_slice_without_spacing_reports_pixels(data_root, lesion_ckpt, tmp_path):
    scan = read_scan(data_root / NY_SBU / LUNG_SLICE)
    png = tmp_path / "slice.png"
    Image.fromarray(window(scan.pixels, *LUNG_WINDOW)).save(png)
    in_hu = quantify_scan(data_root / NY_SBU / LUNG_SLICE, lesion_ckpt, progress=False)
    result = quantify_scan(png, lesion_ckpt, tmp_path / "out", progress=False)
    assert result.area_units == "pixels" and result.volume_units is None and result.spacing is None
    assert result.lung_method.startswith("segment_lungs_grey")
    # the grey path finds the same lungs as the HU path, counted in pixels instead of mm²
    pixel_mm2 = scan.spacing[0] * scan.spacing[1]
    assert result.lung_area == pytest.approx(in_hu.lung_area / pixel_mm2, rel=0.05)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["area_units"] == "pixels" and summary["lung_volume_ml"] is None
    assert any("no pixel spacing" in note for note in summary["notes"])
    header = next(csv.reader((tmp_path / "out" / "slices.csv").open()))
    assert header[1:3] == ["lesion_area_pixels", "lung_area_pixels"]
    with pytest.raises(CovidlensError, match="no pixel spacing"):
        quantify_scan(png, lesion_ckpt, require_mm=True)


def _four_d_nifti(path: Path) -> Path:
    import nibabel

    nibabel.save(nibabel.Nifti1Image(np.full((8, 8, 4, 2), -800, dtype=np.int16), np.eye(4)), str(path))
    return path


def _xray_dicom(data_root: Path, path: Path) -> Path:
    """A real chest X-ray stored as DICOM with Modality DX, as a radiography system writes it."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(Image.open(data_root / "cxr" / "covid19-radiography" / "COVID" / "COVID-100.jpg").convert("L"))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_bad_input_is_refused_with_one_sentence(data_root, lesion_ckpt, tmp_path):
    with pytest.raises(CovidlensError, match="4-D NIfTI"):
        quantify_scan(_four_d_nifti(tmp_path / "4d.nii.gz"), lesion_ckpt, tmp_path / "o1")
    with pytest.raises(CovidlensError, match="X-ray"):
        quantify_scan(_xray_dicom(data_root, tmp_path / "cxr.dcm"), lesion_ckpt, tmp_path / "o2")
    slice_path = data_root / NY_SBU / LUNG_SLICE
    with pytest.raises(CovidlensError, match="lung mask has shape"):
        quantify_scan(slice_path, lesion_ckpt, lung_mask=np.ones((10, 10), dtype=bool))
    ckpt = load_checkpoint(lesion_ckpt)
    with pytest.raises(CovidlensError, match="classification model"):
        quantify_scan(slice_path, Checkpoint(ckpt.model, replace(ckpt.info, task="classification"), ckpt.path))
    with pytest.raises(CovidlensError, match="CXR model"):
        quantify_scan(slice_path, Checkpoint(ckpt.model, replace(ckpt.info, modality="cxr"), ckpt.path))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CovidlensError, match="already holds other files"):
        quantify_scan(slice_path, lesion_ckpt, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["4d.nii.gz", "cxr.dcm", "foreign"]  # nothing half-written


def test_failure_while_writing_leaves_nothing_and_a_rerun_replaces_a_result(data_root, lesion_ckpt, tmp_path, monkeypatch):
    slice_path = data_root / NY_SBU / LUNG_SLICE
    out = tmp_path / "out"
    quantify_scan(slice_path, lesion_ckpt, out, progress=False)
    first = (out / "summary.json").read_text()

    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quantify_module, "_overlay_png", broken)
    with pytest.raises(OSError):
        quantify_scan(slice_path, lesion_ckpt, out, progress=False)
    assert (out / "summary.json").read_text() == first  # the complete earlier result is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # and no partial folder is left
    monkeypatch.undo()
    quantify_scan(slice_path, lesion_ckpt, out, progress=False, max_overlays=0)
    assert json.loads((out / "summary.json").read_text())["overlays"] == []
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_cli_exit_codes(data_root, lesion_ckpt, tmp_path, capsys):
    scan = read_scan(data_root / NY_SBU / LUNG_SLICE)
    png = tmp_path / "slice.png"
    Image.fromarray(window(scan.pixels, *LUNG_WINDOW)).save(png)
    assert main(["quantify", str(png), "--checkpoint", str(lesion_ckpt), "--out", str(tmp_path / "ok")]) == 0
    printed = capsys.readouterr().out
    assert "pixels" in printed and "no pixel spacing" in printed and (tmp_path / "ok" / "summary.json").is_file()

    for bad, args in [
        (_four_d_nifti(tmp_path / "4d.nii.gz"), []),
        (_xray_dicom(data_root, tmp_path / "cxr.dcm"), []),
        (png, ["--require-mm"]),
        (data_root / VOLUME, ["--slices", "40:999"]),
    ]:
        code = main(["quantify", str(bad), "--checkpoint", str(lesion_ckpt), "--out", str(tmp_path / "bad"), *args])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("covidlens: error:") and "\n" not in err
        assert not (tmp_path / "bad").exists()
