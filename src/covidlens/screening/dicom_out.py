"""DICOM results of a screened CT series: a segmentation (SEG) and a measurement report (SR).

A PACS or viewer takes back what covidlens found only as DICOM objects that point at the slices they
came from. :func:`write_seg` stores the lesion and lung masks as a binary SEG of two segments whose
frames reference their source slices one by one; :func:`write_sr` stores lesion volume, lung volume,
percent of lung involved and the MosMedData severity class as a TID 1500 measurement report
(Comprehensive 3D SR), its measurement groups pointing at the SEG's segments when a SEG is given.
highdicom builds both objects, so they follow the standard without covidlens writing DICOM by hand.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from covidlens.errors import CovidlensError
from covidlens.measure.volumes import SEVERITY_CLASSES

__all__ = ["LESION_SEGMENT", "LUNG_SEGMENT", "write_seg", "write_sr"]

#: Segment numbers in the SEG, and the measurement groups of the SR that point at them.
LESION_SEGMENT = 1
LUNG_SEGMENT = 2

_MANUFACTURER = "covidlens"
# Series numbers of the derived series: far above the scanner's, so they list after the source series.
_SEG_SERIES_NUMBER = 9901
_SR_SERIES_NUMBER = 9902
# A private coding scheme (designators starting "99" are private by the standard) for what no public
# terminology codes: the percentage of lung involved and the MosMedData grades CT-0..CT-4.
_SCHEME = "99COVIDLENS"
_SCHEME_NAME = "covidlens codes: percent of lung involved and MosMedData CT severity grades"
# Type 2 patient and study attributes that anonymised series often drop; highdicom copies them from
# the first source slice, and an empty value is what the standard asks for when they are unknown.
_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, AttributeError, TypeError, IndexError, struct.error)


def write_seg(
    source_files: Sequence[Path],
    lesion: np.ndarray,
    lung: np.ndarray,
    path: Path,
    *,
    algorithm: str,
    version: str,
) -> Path:
    """Write the lesion and lung masks of a series as a binary DICOM SEG at ``path``.

    ``source_files`` are the series' DICOM files in the order of axis 0 of the (D, H, W) masks (what
    :attr:`covidlens.data.io.Scan.files` holds). Segment 1 is the COVID-19 lesion, segment 2 the lung;
    each frame references its source slice and lies at its position, and empty frames are left out.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    headers = _series_headers(source_files)
    shape = (len(headers), int(headers[0].Rows), int(headers[0].Columns))
    masks = np.stack([_binary(lesion, "lesion", shape), _binary(lung, "lung", shape)], axis=-1)
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm, family=codes.DCM.ArtificialIntelligence, version=version
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=LESION_SEGMENT,
            segment_label="COVID-19 lesion",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_id,
            anatomic_regions=[codes.SCT.Lung],
        ),
        hd.seg.SegmentDescription(
            segment_number=LUNG_SEGMENT,
            segment_label="Lung",
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=codes.SCT.Lung,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_id,
        ),
    ]
    seg = _build(
        "SEG",
        source_files,
        hd.seg.Segmentation,
        source_images=headers,
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=_SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        manufacturer_model_name=algorithm,
        software_versions=version,
        # Type 1 in the Enhanced General Equipment module; software has no serial, so its name stands in.
        device_serial_number=_MANUFACTURER,
        content_label="COVIDLENS",
        content_description=f"COVID-19 lesions and lungs by {algorithm} {version}"[:64],
        series_description=f"covidlens segmentation ({algorithm} {version})"[:64],
    )
    return _save(seg, path)


def write_sr(
    source_files: Sequence[Path],
    measures: Mapping[str, object],
    path: Path,
    *,
    algorithm: str,
    version: str,
    seg_path: Path | None = None,
) -> Path:
    """Write the measurements of a screened series as a TID 1500 measurement report at ``path``.

    ``measures`` holds ``lesion_volume_ml``, ``lung_volume_ml``, ``percent_involved`` (0..100) and
    ``severity`` ("CT-0".."CT-4"); a missing or None value is left out of the report. The lesion group
    holds the lesion volume, the percent involved and the severity (a qualitative evaluation); the
    lung group the lung volume. With ``seg_path`` (a SEG of :func:`write_seg` for the same series) each
    group references its segment; without it, the groups are image measurements of the series.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    headers = _series_headers(source_files)
    values = _measures(measures)
    seg = _seg_header(seg_path, headers[0].SeriesInstanceUID) if seg_path is not None else None
    algorithm_id = hd.sr.AlgorithmIdentification(name=algorithm, version=version)
    ml = hd.sr.CodedConcept("ml", "UCUM", "milliliter")

    def measurement(name, value, unit):
        return hd.sr.Measurement(name=name, value=value, unit=unit, algorithm_id=algorithm_id)

    lesion_measurements, lung_measurements, evaluations = [], [], []
    if values["lesion_volume_ml"] is not None:
        lesion_measurements.append(measurement(codes.SCT.Volume, values["lesion_volume_ml"], ml))
    if values["percent_involved"] is not None:
        name = hd.sr.CodedConcept("LUNGINVOLVED", _SCHEME, "Percent of lung volume involved")
        lesion_measurements.append(measurement(name, values["percent_involved"], codes.UCUM.Percent))
    if values["severity"] is not None:
        grade = hd.sr.CodedConcept(values["severity"], _SCHEME, values["severity"])
        evaluations.append(hd.sr.QualitativeEvaluation(name=codes.SCT.Severity, value=grade))
    if values["lung_volume_ml"] is not None:
        lung_measurements.append(measurement(codes.SCT.Volume, values["lung_volume_ml"], ml))

    groups = []
    for segment, label, finding, found, qualitative in (
        (LESION_SEGMENT, "COVID-19 lesions", codes.SCT.Lesion, lesion_measurements, evaluations),
        (LUNG_SEGMENT, "Lungs", codes.SCT.Lung, lung_measurements, []),
    ):
        if not found and not qualitative:
            continue
        group = dict(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=label),
            finding_type=finding,
            algorithm_id=algorithm_id,
            measurements=found or None,
            qualitative_evaluations=qualitative or None,
        )
        if seg is None:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**group))
        else:
            # The series, not the slices: an empty segment (no lesion) has no frames to name slices by.
            reference = hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID,
                sop_instance_uid=seg.SOPInstanceUID,
                segment_number=segment,
                source_series=hd.sr.SourceSeriesForSegmentation(headers[0].SeriesInstanceUID),
            )
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=reference, **group)
            )

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=_device_uid(algorithm, version),
        name=algorithm,
        manufacturer_name=_MANUFACTURER,
        model_name=f"{algorithm} {version}",
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.DCM.Device, observer_identifying_attributes=device
            )
        ),
        procedure_reported=hd.sr.CodedConcept("24627-2", "LN", "Chest CT"),
        imaging_measurements=groups,
        referenced_images=headers,
    )
    sr = _build(
        "SR",
        source_files,
        hd.sr.Comprehensive3DSR,
        evidence=[*headers, *([seg] if seg is not None else [])],
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=_SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        # Complete: it holds all covidlens measured; not final or verified until a reader signs it off.
        is_complete=True,
        series_description=f"covidlens measurements ({algorithm} {version})"[:64],
    )
    sr.CodingSchemeIdentificationSequence = [_private_scheme()]
    return _save(sr, path)


def _build(kind: str, source_files: Sequence[Path], make, **arguments):
    """highdicom's object, its refusal of a source series it cannot derive from told in one sentence."""
    try:
        return make(**arguments)
    except (ValueError, AttributeError) as exc:
        raise CovidlensError(
            f"highdicom cannot build a DICOM {kind} from the series of {Path(source_files[0]).parent} ({exc})."
        ) from exc


def _series_headers(source_files: Sequence[Path]) -> list:
    """The headers of the source slices, checked to be one series of single-frame images."""
    import pydicom

    files = [Path(p) for p in source_files]
    if not files:
        raise CovidlensError("No source DICOM files were given; pass the series' files in slice order.")
    headers = []
    for file in files:
        try:
            headers.append(pydicom.dcmread(file, stop_before_pixels=True))
        except (pydicom.errors.InvalidDicomError, *_READ_ERRORS) as exc:
            raise CovidlensError(f"{file} is not a readable DICOM file ({exc}).") from exc
    for file, header in zip(files, headers):
        if not header.get("Rows") or not header.get("Columns") or int(header.get("NumberOfFrames") or 1) != 1:
            raise CovidlensError(
                f"{file} is not a single-frame DICOM image; the source of a SEG or SR is a series of slices."
            )
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(series) != 1 or "" in series:
        raise CovidlensError(
            f"The {len(files)} source files belong to {len(series)} DICOM series, not one; pass the files of "
            "one series (covidlens.data.io.read_scan(folder).files)."
        )
    instances = [str(h.SOPInstanceUID) for h in headers]
    if len(set(instances)) != len(instances):
        raise CovidlensError("The source files hold the same DICOM slice twice; pass each slice of the series once.")
    for header in headers:
        for keyword in _TYPE2_COPIED:
            if keyword not in header:
                setattr(header, keyword, None)
    return headers


def _binary(mask, name: str, shape: tuple[int, int, int]) -> np.ndarray:
    array = np.asarray(mask)
    if array.shape != shape:
        raise CovidlensError(
            f"The {name} mask has shape {array.shape} but the source series is {shape} (slices, rows, "
            "columns); masks must lie on the series' grid, axis 0 in the order of the files."
        )
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise CovidlensError(f"The {name} mask holds values other than 0 and 1; pass a binary mask.")
    return array.astype(bool)


def _measures(measures: Mapping[str, object]) -> dict:
    values = {}
    for key in ("lesion_volume_ml", "lung_volume_ml", "percent_involved"):
        value = measures.get(key)
        if value is not None:
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value) or value < 0 or (key == "percent_involved" and value > 100):
                raise CovidlensError(f"Measure {key} is {measures.get(key)!r}; give a non-negative number or None.")
        values[key] = value
    severity = measures.get("severity")
    if severity is not None and severity not in SEVERITY_CLASSES:
        raise CovidlensError(f"Severity {severity!r} is not one of {', '.join(SEVERITY_CLASSES)} (or None).")
    values["severity"] = severity
    if all(v is None for v in values.values()):
        raise CovidlensError("Every measure is None, so there is nothing to report; write no SR for this series.")
    return values


def _seg_header(seg_path: Path, series_uid: str):
    """The SEG's header, checked to be a segmentation of the same series with both segments."""
    import pydicom
    from pydicom.uid import SegmentationStorage

    try:
        seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    except (pydicom.errors.InvalidDicomError, *_READ_ERRORS) as exc:
        raise CovidlensError(f"{seg_path} is not a readable DICOM file ({exc}).") from exc
    if seg.get("SOPClassUID") != SegmentationStorage:
        raise CovidlensError(f"{seg_path} is not a DICOM SEG; pass the file write_seg wrote for this series.")
    referenced = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    segments = {int(item.SegmentNumber) for item in seg.get("SegmentSequence", [])}
    if referenced != {series_uid} or not {LESION_SEGMENT, LUNG_SEGMENT} <= segments:
        raise CovidlensError(
            f"{seg_path} is not a lesion and lung SEG of the source series; pass the file write_seg wrote for it."
        )
    return seg


def _device_uid(algorithm: str, version: str) -> str:
    """The same UID for the same algorithm and version, so reports of one device can be grouped."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[_MANUFACTURER, algorithm, version])


def _private_scheme():
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = _SCHEME
    item.CodingSchemeName = _SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "covidlens"
    return item


def _save(dataset, path: Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        dataset.save_as(path, enforce_file_format=True)
    except OSError as exc:
        raise CovidlensError(f"Cannot write {path} ({exc.strerror or exc}); choose a writable output path.") from exc
    return path
