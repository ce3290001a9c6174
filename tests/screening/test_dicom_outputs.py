"""DICOM SEG and SR of a screened series: they point at the right slices, give back the masks and
measures they were given, and pass the DICOM validator, on the real 40-slice COVID-CT-MD series P001."""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from scipy import ndimage

from covidlens.data.io import read_scan
from covidlens.errors import CovidlensError
from covidlens.screening.dicom_out import LESION_SEGMENT, LUNG_SEGMENT, write_seg, write_sr

ALGORITHM, VERSION = "covidlens-test", "0.2.0"
MEASURES = {"lesion_volume_ml": 12.375, "lung_volume_ml": 3456.789, "percent_involved": 100 / 3, "severity": "CT-2"}


@pytest.fixture(scope="module")
def series(data_root):
    folder = data_root / "ct" / "covid-ct-md" / "dicom-series" / "P001"
    if not folder.is_dir():
        pytest.skip(f"the COVID-CT-MD DICOM series is not at {folder}")
    return read_scan(folder)


@pytest.fixture(scope="module")
def masks(series):
    """Lung: air-like voxels inside the body; lesion: three discs on two slices; several empty slices."""
    hu = series.pixels
    body = np.stack([ndimage.binary_fill_holes(ndimage.binary_opening(s > -500, iterations=2)) for s in hu])
    lung = (hu < -400) & body
    lung[:3] = False
    lesion = np.zeros_like(lung)
    rows, cols = np.ogrid[: hu.shape[1], : hu.shape[2]]
    for index in (12, 25):
        for r, c in np.argwhere(lung[index])[:: max(1, int(lung[index].sum()) // 3)][:3]:
            lesion[index] |= (rows - r) ** 2 + (cols - c) ** 2 <= 36
    lesion &= lung
    assert lung[3:].any(axis=(1, 2)).all() and lesion.any(axis=(1, 2)).sum() == 2
    return lesion, lung


@pytest.fixture(scope="module")
def written(series, masks, tmp_path_factory):
    out = tmp_path_factory.mktemp("dicom_out")
    seg = write_seg(series.files, *masks, out / "seg.dcm", algorithm=ALGORITHM, version=VERSION)
    sr = write_sr(series.files, MEASURES, out / "sr.dcm", algorithm=ALGORITHM, version=VERSION, seg_path=seg)
    return {"seg": seg, "sr": sr}


def _headers(series):
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]


def test_seg_frames_reference_their_source_slices(series, masks, written):
    seg = hd.seg.segread(written["seg"])
    headers = _headers(series)
    slice_of = {h.SOPInstanceUID: i for i, h in enumerate(headers)}
    lesion, lung = masks
    stored = set()
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = frame.DerivationImageSequence[0].SourceImageSequence[0]
        index = slice_of[source.ReferencedSOPInstanceUID]
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, [float(v) for v in headers[index].ImagePositionPatient], atol=1e-3)
        stored.add((int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber), index))
    non_empty = {(LESION_SEGMENT, int(i)) for i in np.flatnonzero(lesion.any(axis=(1, 2)))}
    non_empty |= {(LUNG_SEGMENT, int(i)) for i in np.flatnonzero(lung.any(axis=(1, 2)))}
    assert non_empty <= stored
    assert seg.SeriesInstanceUID != headers[0].SeriesInstanceUID
    assert seg.StudyInstanceUID == headers[0].StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == headers[0].SeriesInstanceUID


def test_seg_gives_back_the_masks_voxel_for_voxel(series, masks, written):
    seg = hd.seg.segread(written["seg"])
    uids = [h.SOPInstanceUID for h in _headers(series)]
    pixels = seg.get_pixels_by_source_instance(
        uids, segment_numbers=[LESION_SEGMENT, LUNG_SEGMENT], assert_missing_frames_are_empty=True
    )
    assert pixels.shape == (*series.pixels.shape, 2)
    assert np.array_equal(pixels[..., 0].astype(bool), masks[0])
    assert np.array_equal(pixels[..., 1].astype(bool), masks[1])
    labels = {s.SegmentNumber: s.SegmentLabel for s in seg.SegmentSequence}
    assert labels == {LESION_SEGMENT: "COVID-19 lesion", LUNG_SEGMENT: "Lung"}
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == (ALGORITHM, VERSION)


def test_seg_of_a_series_without_lesion_round_trips(series, masks, tmp_path):
    lung = masks[1]
    path = write_seg(
        series.files, np.zeros_like(lung), lung, tmp_path / "seg.dcm", algorithm=ALGORITHM, version=VERSION
    )
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance(
        [h.SOPInstanceUID for h in _headers(series)], assert_missing_frames_are_empty=True
    )
    assert not pixels[..., 0].any()
    assert np.array_equal(pixels[..., 1].astype(bool), lung)


def _value(group, name):
    (measurement,) = group.get_measurements(name=name)
    return measurement.value, measurement.unit.value


def test_sr_holds_the_measures_and_references_the_segments(written):
    sr = hd.sr.srread(written["sr"])
    seg = pydicom.dcmread(written["seg"], stop_before_pixels=True)
    report = sr.content
    (lesion,) = report.get_volumetric_roi_measurement_groups(finding_type=codes.SCT.Lesion)
    (lung,) = report.get_volumetric_roi_measurement_groups(finding_type=codes.SCT.Lung)

    volume, unit = _value(lesion, codes.SCT.Volume)
    assert volume == pytest.approx(MEASURES["lesion_volume_ml"], rel=1e-6) and unit == "ml"
    (percent,) = [m for m in lesion.get_measurements() if m.unit.value == "%"]
    assert percent.value == pytest.approx(MEASURES["percent_involved"], rel=1e-6)
    volume, unit = _value(lung, codes.SCT.Volume)
    assert volume == pytest.approx(MEASURES["lung_volume_ml"], rel=1e-6) and unit == "ml"
    (severity,) = lesion.get_qualitative_evaluations(name=codes.SCT.Severity)
    assert severity.value.meaning == MEASURES["severity"]

    for group, segment in ((lesion, LESION_SEGMENT), (lung, LUNG_SEGMENT)):
        reference = group.referenced_segment[0].ReferencedSOPSequence[0]
        assert reference.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert int(reference.ReferencedSegmentNumber) == segment
    assert sr.StudyInstanceUID == seg.StudyInstanceUID


def test_sr_leaves_out_missing_measures(series, tmp_path):
    measures = {"lesion_volume_ml": 0.0, "lung_volume_ml": None, "percent_involved": None, "severity": "CT-0"}
    path = write_sr(series.files, measures, tmp_path / "sr.dcm", algorithm=ALGORITHM, version=VERSION)
    report = hd.sr.srread(path).content
    assert not report.get_volumetric_roi_measurement_groups()
    (lesion,) = report.get_image_measurement_groups()
    assert lesion.finding_type == codes.SCT.Lesion
    assert [(m.name, m.value) for m in lesion.get_measurements()] == [(codes.SCT.Volume, 0.0)]
    assert lesion.get_qualitative_evaluations()[0].value.meaning == "CT-0"


@pytest.mark.parametrize("kind", ["seg", "sr"])
def test_files_pass_the_dicom_validator(written, kind):
    if not (shutil.which("dciodvfy") and shutil.which("dcmdump")):
        pytest.skip("dciodvfy (dicom3tools) or dcmdump (dcmtk) is not installed; `make test` installs them")
    checked = subprocess.run(["dciodvfy", str(written[kind])], capture_output=True, text=True, timeout=60)
    report = checked.stdout + checked.stderr
    assert not [line for line in report.splitlines() if line.startswith("Error")], report
    dumped = subprocess.run(["dcmdump", str(written[kind])], capture_output=True, text=True, timeout=60)
    assert dumped.returncode == 0, dumped.stderr


def test_masks_off_the_series_grid_are_refused(series, masks, tmp_path):
    lesion, lung = masks
    with pytest.raises(CovidlensError, match="shape"):
        write_seg(series.files, lesion[1:], lung[1:], tmp_path / "seg.dcm", algorithm=ALGORITHM, version=VERSION)
    with pytest.raises(CovidlensError, match="shape"):
        write_seg(series.files[:-1], lesion, lung, tmp_path / "seg.dcm", algorithm=ALGORITHM, version=VERSION)
    assert not (tmp_path / "seg.dcm").exists()


def test_files_of_two_series_are_refused(series, masks, tmp_path):
    stranger = pydicom.dcmread(series.files[-1])
    stranger.SeriesInstanceUID, stranger.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    stranger.save_as(tmp_path / "other.dcm")
    files = [*series.files[:-1], tmp_path / "other.dcm"]
    with pytest.raises(CovidlensError, match="2 DICOM series"):
        write_seg(files, *masks, tmp_path / "seg.dcm", algorithm=ALGORITHM, version=VERSION)
    with pytest.raises(CovidlensError, match="2 DICOM series"):
        write_sr(files, MEASURES, tmp_path / "sr.dcm", algorithm=ALGORITHM, version=VERSION)


def test_sr_refuses_a_seg_path_that_is_not_a_seg_and_unknown_severity(series, tmp_path):
    with pytest.raises(CovidlensError, match="not a DICOM SEG"):
        write_sr(series.files, MEASURES, tmp_path / "sr.dcm", algorithm=ALGORITHM, version=VERSION,
                 seg_path=series.files[0])
    with pytest.raises(CovidlensError, match="CT-5"):
        write_sr(series.files, {**MEASURES, "severity": "CT-5"}, tmp_path / "sr.dcm", algorithm=ALGORITHM,
                 version=VERSION)
