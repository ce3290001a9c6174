"""What a screen leaves for people and hospital systems, on the real COVID-CT-MD P001 scan as a DICOM
series and as a NIfTI volume: result.json, results.csv, index.html, masks on the scan's own grid,
and a DICOM SEG and SR that agree with them."""

from __future__ import annotations

import contextlib
import io
import re

import highdicom as hd
import nibabel
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from covidlens.cli import main
from covidlens.data.io import read_scan, source_layout
from covidlens.screening.dicom_out import LESION_SEGMENT, LUNG_SEGMENT
from tests.screening.files import read_result, read_rows

SERIES, VOLUME = "P001", "P001.nii.gz"


@pytest.fixture(scope="module")
def screened(tmp_path_factory, lesion_model, p001_series, p001_volume):
    out = tmp_path_factory.mktemp("outputs") / "screened"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["screen", str(p001_series), str(p001_volume), "--out", str(out),
                     "--lesion-checkpoint", str(lesion_model), "--workers", "1"])
    assert code == 0, stdout.getvalue()
    return out


@pytest.fixture(scope="module")
def series_scan(p001_series):
    return read_scan(p001_series)


@pytest.fixture(scope="module")
def seg_masks(screened, series_scan):
    """(lesion, lung) as the SEG gives them back, (D, H, W) in the scan's slice order."""
    seg = hd.seg.segread(screened / SERIES / "seg.dcm")
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in series_scan.files]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[LESION_SEGMENT, LUNG_SEGMENT],
                                               assert_missing_frames_are_empty=True)
    return pixels[..., 0].astype(bool), pixels[..., 1].astype(bool)


@pytest.mark.parametrize("name", [SERIES, VOLUME])
def test_result_json_holds_the_verdict_its_evidence_and_timings(screened, name):
    record = read_result(screened, name)
    assert record["tool"] == "covidlens screen" and record["status"] == "screened" and record["error"] == ""
    assert record["study"]["key"] == name and record["modality"] == "ct" and record["kind"] == "volume"
    verdict = record["verdict"]
    assert set(verdict) == {"lesions", "severity", "covid19_score", "decision", "operating_point", "rule"}
    assert verdict["lesions"] in ("yes", "no") and re.fullmatch(r"CT-[0-4]", verdict["severity"])
    assert verdict["covid19_score"] is None and verdict["operating_point"] == "default"
    assert verdict["rule"] and "20 mL" in verdict["rule"][0]
    measures = record["measures"]
    for field in ("lesion_volume_ml", "lung_volume_ml", "percent_involved", "slices", "lung_slices", "lesion_slices"):
        assert measures[field] is not None, field
    assert measures["percent_involved"] == pytest.approx(
        100 * measures["lesion_volume_ml"] / measures["lung_volume_ml"], abs=0.01)
    assert set(record["timings"]) >= {"reading", "lungs", "lesions", "writing"}
    assert all(seconds >= 0 for seconds in record["timings"].values())
    assert any("No CT classifier" in line for line in record["missing"])
    assert set(record["models"]) == {"lesion"}
    on_disk = {str(p.relative_to(screened / name)) for p in (screened / name).rglob("*") if p.is_file()}
    assert set(record["outputs"]) == on_disk
    assert {"report.html", "strip.png", "lesions.nii.gz", "lungs.nii.gz"} <= on_disk
    assert 1 <= sum(n.startswith("slices/slice_") for n in on_disk) <= 8
    assert ({"seg.dcm", "sr.dcm"} <= on_disk) == (name == SERIES)


def test_results_csv_has_one_row_per_study_as_in_result_json(screened):
    rows = read_rows(screened)
    assert set(rows) == {SERIES, VOLUME}
    for key, row in rows.items():
        record = read_result(screened, row["name"])
        verdict, measures = record["verdict"], record["measures"]
        assert (row["status"], row["modality"], row["kind"]) == ("screened", "ct", "volume")
        assert (row["decision"], row["lesions"], row["severity"]) == (verdict["decision"], verdict["lesions"],
                                                                     verdict["severity"])
        for field in ("lesion_volume_ml", "lung_volume_ml", "percent_involved"):
            assert float(row[field]) == measures[field]


def test_index_links_every_screened_studys_report(screened):
    page = (screened / "index.html").read_text()
    links = set(re.findall(r"href='([^']+)'", page))
    assert links == {f"{SERIES}/report.html", f"{VOLUME}/report.html"}
    for link in links:
        report = (screened / link).read_text()
        for picture in re.findall(r"src='([^']+)'", report):
            assert (screened / link).parent.joinpath(picture).is_file(), picture


def test_series_masks_lie_on_the_scan_and_equal_the_seg(screened, series_scan, seg_masks):
    for name, from_seg in zip(("lesions.nii.gz", "lungs.nii.gz"), seg_masks):
        image = nibabel.load(screened / SERIES / name)
        assert np.allclose(image.affine, series_scan.affine, atol=1e-4)
        assert np.array_equal(np.asarray(image.dataobj).astype(bool), source_layout(series_scan, from_seg))
    lesion, lung = seg_masks
    assert lesion.any() and not (lesion & ~lung).any()


def test_series_mask_voxels_lie_where_the_dicom_headers_put_their_pixels(screened, series_scan):
    """Checked against the headers themselves, not against the affine covidlens computed."""
    affine = nibabel.load(screened / SERIES / "lesions.nii.gz").affine
    for k, path in enumerate(series_scan.files):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        row_step, col_step = (float(v) for v in header.PixelSpacing)
        cosines = np.array([float(v) for v in header.ImageOrientationPatient])
        corner = np.array([float(v) for v in header.ImagePositionPatient])
        for col, row in ((0, 0), (100, 0), (0, 200), (511, 511)):
            lps = corner + cosines[:3] * col_step * col + cosines[3:] * row_step * row
            ras = affine @ [col, row, k, 1.0]
            assert np.allclose(ras[:3], lps * [-1, -1, 1], atol=1e-3), (k, col, row)


def test_series_seg_frames_point_at_their_source_slices(screened, series_scan):
    seg = hd.seg.segread(screened / SERIES / "seg.dcm")
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in series_scan.files]
    slice_of = {h.SOPInstanceUID: k for k, h in enumerate(headers)}
    assert seg.StudyInstanceUID == headers[0].StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == headers[0].SeriesInstanceUID
    for frame in seg.PerFrameFunctionalGroupsSequence:
        k = slice_of[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, [float(v) for v in headers[k].ImagePositionPatient], atol=1e-3)


def test_series_measures_are_those_of_the_masks(screened, series_scan, seg_masks):
    record = read_result(screened, SERIES)
    lesion, lung = seg_masks
    assert [s["lesion_px"] for s in record["slices"]] == lesion.sum(axis=(1, 2)).tolist()
    assert [s["lung_px"] for s in record["slices"]] == lung.sum(axis=(1, 2)).tolist()
    voxel_ml = float(np.prod(series_scan.spacing)) / 1000.0
    assert record["measures"]["lesion_volume_ml"] == pytest.approx(lesion.sum() * voxel_ml, abs=0.01)
    assert record["measures"]["lung_volume_ml"] == pytest.approx(lung.sum() * voxel_ml, abs=0.01)


def test_series_sr_reports_the_result_json_values(screened):
    record = read_result(screened, SERIES)
    measures, verdict = record["measures"], record["verdict"]
    report = hd.sr.srread(screened / SERIES / "sr.dcm").content
    (lesion,) = report.get_volumetric_roi_measurement_groups(finding_type=codes.SCT.Lesion)
    (lung,) = report.get_volumetric_roi_measurement_groups(finding_type=codes.SCT.Lung)
    (volume,) = lesion.get_measurements(name=codes.SCT.Volume)
    assert (volume.value, volume.unit.value) == (pytest.approx(measures["lesion_volume_ml"], rel=1e-6), "ml")
    (percent,) = [m for m in lesion.get_measurements() if m.unit.value == "%"]
    assert percent.value == pytest.approx(measures["percent_involved"], rel=1e-6)
    (volume,) = lung.get_measurements(name=codes.SCT.Volume)
    assert volume.value == pytest.approx(measures["lung_volume_ml"], rel=1e-6)
    (severity,) = lesion.get_qualitative_evaluations(name=codes.SCT.Severity)
    assert severity.value.meaning == verdict["severity"]


def test_volume_masks_have_the_shape_and_affine_of_the_input(screened, p001_volume):
    source = nibabel.load(p001_volume)
    record = read_result(screened, VOLUME)
    for name, field in (("lesions.nii.gz", "lesion_px"), ("lungs.nii.gz", "lung_px")):
        mask = nibabel.load(screened / VOLUME / name)
        assert mask.shape == source.shape
        assert np.allclose(mask.affine, source.affine, atol=1e-4)
        # Slice k of the study is the file's slice k (its third axis), never re-sorted.
        per_slice = np.asarray(mask.dataobj).astype(bool).sum(axis=(0, 1))
        assert per_slice.tolist() == [s[field] for s in record["slices"]]
