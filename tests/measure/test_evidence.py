"""Lesion evidence beside P(COVID): the lesion model's share of the body, its area, and predict's columns."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from covidlens.cli import main
from covidlens.data.io import read_image, read_scan
from covidlens.errors import CovidlensError
from covidlens.measure.evidence import MIN_LESION_SHARE, lesion_evidence, lesion_maps, lesion_model
from tests.segmentation.runs import tiny_segmentation_run

CT_SLICE = "ct/covid-ct/CT_COVID/2020.02.24.20027201-p19-670.png"
CT_DICOM = "ct/ny-sbu-dicom/A002304/axial/19001231-076.dcm"


@pytest.fixture(scope="module")
def lesion_ckpt(data_root, tmp_path_factory):
    return tiny_segmentation_run(data_root, tmp_path_factory) / "model"


def test_share_pixels_and_area_agree(data_root, lesion_ckpt):
    scan = read_scan(data_root / CT_DICOM)
    images = [read_image(data_root / CT_SLICE), read_image(data_root / CT_DICOM)]
    plain, dicom = lesion_evidence(lesion_ckpt, images, [None, scan.spacing])
    for ev in (plain, dicom):
        assert 0.0 <= ev.lesion_share <= 1.0 and 0.0 <= ev.top_mean <= ev.peak <= 1.0
        assert ev.found == (ev.lesion_share >= MIN_LESION_SHARE)
    assert plain.lesion_mm2 is None
    assert dicom.lesion_mm2 == pytest.approx(dicom.lesion_pixels * scan.spacing[0] * scan.spacing[1])


def test_nothing_outside_the_body_counts_as_lesion(data_root, lesion_ckpt):
    slice_ = read_image(data_root / CT_SLICE)
    figure = Image.new("L", (slice_.width + 120, slice_.height + 120), 255)
    figure.paste(slice_, (60, 60))
    lesion, body = lesion_maps(lesion_ckpt, [figure])[0]
    assert lesion.shape == body.shape == (figure.height, figure.width)
    assert not body[:40].any() and not body[:, :40].any()
    assert (lesion[~body] == 0).all()


def test_only_a_ct_lesion_segmenter_is_taken(tiny_run):
    with pytest.raises(CovidlensError, match="lesion evidence needs a CT lesion segmentation checkpoint"):
        lesion_model(tiny_run / "model")
    with pytest.raises(CovidlensError, match="one per slice"):
        lesion_evidence(tiny_run / "model", [Image.new("L", (64, 64))], [None, None])


def test_predict_prints_and_writes_the_evidence_beside_the_score(tiny_run, lesion_ckpt, data_root, tmp_path, capsys):
    out_csv, out_json = tmp_path / "rows.csv", tmp_path / "rows.json"
    code = main(["predict", "--checkpoint", str(tiny_run / "model"), "--lesion-checkpoint", str(lesion_ckpt),
                 str(data_root / CT_SLICE), str(data_root / CT_DICOM), "--csv", str(out_csv), "--json", str(out_json),
                 "--workers", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "lesion model" in printed.splitlines()[0]
    assert printed.count("of the body") == 2 and "mm²" in printed  # the DICOM slice has a spacing
    rows = list(csv.DictReader(out_csv.open()))
    assert {"lesions_found", "lesion_share", "lesion_pixels", "lesion_mm2"} <= set(rows[0])
    records = json.loads(out_json.read_text())
    assert records[0]["lesion_mm2"] is None and records[1]["lesion_mm2"] >= 0
    assert all(isinstance(r["lesions_found"], bool) for r in records)
    assert np.isclose(float(rows[1]["lesion_share"]), records[1]["lesion_share"])
    code = main(["predict", "--checkpoint", str(tiny_run / "model"), "--lesion-checkpoint", str(tiny_run / "model"),
                 str(data_root / CT_SLICE)])
    assert code != 0 and "lesion evidence needs a CT lesion segmentation checkpoint" in capsys.readouterr().err
