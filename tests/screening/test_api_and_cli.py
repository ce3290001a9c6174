"""``covidlens.screen(...)`` and ``covidlens screen`` give the same verdicts on the same studies, one
of each kind: a CT volume, a real CT slice in HU, an 8-bit CT picture and a chest X-ray (the X-ray road
with its lung model and classifier, tested here once)."""

from __future__ import annotations

import pytest
from PIL import Image

import covidlens
from tests.screening.files import read_result, read_rows, write_ct_volume, write_radiograph_dicom

KINDS = {"chest.nii.gz": "volume", "19001231-076.dcm": "slice", "picture.png": "picture", "xray.png": "radiograph",
         "xray.dcm": "radiograph"}


@pytest.fixture(scope="module")
def both(tmp_path_factory, lesion_model, cxr_models, ny_sbu, data_root):
    import numpy as np

    folder = tmp_path_factory.mktemp("studies")
    covid_ct = next((data_root / "ct" / "covid-ct" / "CT_COVID").glob("*.png"))
    cxr = next((data_root / "cxr" / "covid19-radiography" / "COVID").glob("*.jpg"))
    Image.open(covid_ct).save(folder / "picture.png")
    Image.open(cxr).convert("L").save(folder / "xray.png")
    write_radiograph_dicom(folder / "xray.dcm", np.asarray(Image.open(cxr).convert("L")))
    inputs = [write_ct_volume(folder / "chest.nii.gz"), ny_sbu / "A002304" / "axial" / "19001231-076.dcm",
              folder / "picture.png", folder / "xray.png", folder / "xray.dcm"]
    lungs, classifier = cxr_models
    # PyTorch for the classifier: ONNX Runtime would export it again at each start (seconds here).
    out = tmp_path_factory.mktemp("api_and_cli")

    api = covidlens.screen(inputs, out / "api", lesion=lesion_model, cxr_lungs=lungs, cxr=classifier,
                           operating_point="sensitivity", workers=0, backend="torch")
    from covidlens.cli import main

    code = main(["screen", *map(str, inputs), "--out", str(out / "cli"), "--lesion-checkpoint", str(lesion_model),
                 "--cxr-lung-checkpoint", str(lungs), "--cxr-checkpoint", str(classifier),
                 "--operating-point", "sensitivity", "--workers", "0", "--backend", "torch"])
    return {"api": api, "cli_code": code, "out": out}


def test_both_screen_every_study(both):
    assert both["cli_code"] == 0 and both["api"].failed == 0
    cli = read_rows(both["out"] / "cli")
    assert sorted(cli) == sorted(KINDS) == sorted(r["key"] for r in both["api"].rows)
    assert {key: row["kind"] for key, row in cli.items()} == KINDS


@pytest.mark.parametrize("key", sorted(KINDS))
def test_the_api_and_the_cli_give_the_same_verdict(both, key):
    name = read_rows(both["out"] / "cli")[key]["name"]
    api, cli = read_result(both["out"] / "api", name), read_result(both["out"] / "cli", name)
    assert api["verdict"] == cli["verdict"]
    assert api["verdict"]["operating_point"] == "sensitivity"
    assert (api["modality"], api["kind"], api["measures"]) == (cli["modality"], cli["kind"], cli["measures"])
    assert api["outputs"] == cli["outputs"]


def test_the_operating_point_reaches_each_rule(both):
    out = both["out"] / "cli"
    rows = read_rows(out)
    assert "10 mL" in read_result(out, rows["chest.nii.gz"]["name"])["verdict"]["rule"][0]
    assert "50 mm²" in read_result(out, rows["19001231-076.dcm"]["name"])["verdict"]["rule"][0]
    assert "sensitivity operating point" in read_result(out, rows["picture.png"]["name"])["verdict"]["rule"][0]


@pytest.mark.parametrize("key", ["xray.png", "xray.dcm"])
def test_a_chest_xray_is_judged_by_its_classifier_on_the_lungs(both, key, cxr_models):
    from covidlens.checkpoint import load_checkpoint

    out = both["out"] / "cli"
    record = read_result(out, read_rows(out)[key]["name"])
    verdict = record["verdict"]
    assert (record["modality"], verdict["lesions"], verdict["severity"]) == ("cxr", "not measured", None)
    assert 0.0 <= verdict["covid19_score"] <= 1.0
    info = load_checkpoint(cxr_models[1]).info
    assert f"({info.positive_class} score {verdict['covid19_score']:.3f})" in verdict["decision"]
    assert 0.0 <= record["measures"]["lung_fraction"] <= 1.0  # a 2-epoch lung model: any share
    assert 0.0 <= record["measures"]["heat_in_lungs"] <= 1.0
    assert any(line.startswith("COVID when P(COVID) >= ") for line in verdict["rule"])
    assert set(record["models"]) == {"lesion", "cxr_lungs", "cxr_classifier"}
    assert not {"lesions.nii.gz", "seg.dcm", "sr.dcm"} & set(record["outputs"])
    if key == "xray.dcm":
        assert "DICOM Modality tag (DX)" in record["modality_statement"]
    else:
        assert "by the modality check" in record["modality_statement"]
