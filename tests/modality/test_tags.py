"""One table of DICOM Modality values: the modality check, the web service and quantify read a tag the
same way (a radiograph tagged RF is a chest X-ray to all of them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from covidlens.checkpoint import Checkpoint, ModelInfo
from covidlens.data.io import read_scan
from covidlens.errors import CovidlensError
from covidlens.measure.quantify import quantify_scan
from covidlens.modality import check_scan, header_tags, modality_from_header
from covidlens.serve.errors import ApiError
from covidlens.serve.pipeline import detected_modality
from tests.data.test_scan import write_dicom

RADIOGRAPH_TAGS = ["CR", "DX", "DR", "RF", "RG"]
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
# quantify refuses by the header before it runs the model, so a lesion model without weights will do.
LESION_MODEL = Checkpoint(None, ModelInfo("unet", ["background", "lesion"], 64, [0.5] * 3, [0.5] * 3,
                                          task="segmentation", modality="ct"), Path("lesion-model"))


def _dicom(tmp_path: Path, tag: str) -> Path:
    """A Secondary Capture DICOM (its class says nothing about the modality) whose Modality is ``tag``."""
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    return write_dicom(tmp_path / f"{tag}.dcm", pixels, bits=8, sop_class=SECONDARY_CAPTURE, Modality=tag)


@pytest.mark.parametrize("tag", RADIOGRAPH_TAGS)
def test_radiograph_tags_read_as_cxr(tag):
    assert modality_from_header(tag) == "cxr"
    assert modality_from_header(f" {tag.lower()} ") == "cxr"


def test_ct_other_and_empty():
    assert modality_from_header("CT") == "ct"
    for tag in ("MR", "US", "PT", "XA", "MG", "OT"):
        assert modality_from_header(tag) == "other"
    assert modality_from_header("") is None
    assert modality_from_header(None) is None


def test_header_tags_lists_the_table():
    assert header_tags("ct") == ("CT",)
    assert set(header_tags("cxr")) == set(RADIOGRAPH_TAGS)


@pytest.mark.parametrize("tag", RADIOGRAPH_TAGS)
def test_check_service_and_quantify_agree_on_radiographs(tmp_path, tag):
    path = _dicom(tmp_path, tag)
    scan = read_scan(path)
    assert check_scan(scan).kind == "cxr"
    assert detected_modality(scan) == ("cxr", "dicom-tag")
    with pytest.raises(CovidlensError, match="X-ray"):
        quantify_scan(path, LESION_MODEL, progress=False)


@pytest.mark.parametrize("tag", ["MR", "US", "XA"])
def test_check_service_and_quantify_agree_on_other_tags(tmp_path, tag):
    path = _dicom(tmp_path, tag)
    scan = read_scan(path)
    assert check_scan(scan).kind == "other"
    with pytest.raises(ApiError) as refused:
        detected_modality(scan)
    assert refused.value.code == "unsupported_modality" and "RF" in refused.value.message
    with pytest.raises(CovidlensError, match="CT only"):
        quantify_scan(path, LESION_MODEL, progress=False)


def test_a_ct_tag_is_ct_to_the_check_and_the_service(tmp_path):
    scan = read_scan(_dicom(tmp_path, "CT"))
    assert check_scan(scan).kind == "ct"
    assert detected_modality(scan) == ("ct", "dicom-tag")
