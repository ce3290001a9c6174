"""``evaluate`` knows what a model is for: it scores the data set recorded in the checkpoint when none is
named, and refuses, in one sentence, data of another modality (registered, or found by the modality check
on a user's folder) or with other class names unless --class-map maps them."""

from __future__ import annotations

import json
import shutil

import pytest

from covidlens.cli import main


@pytest.fixture()
def as_cxr_model(tiny_run, tmp_path):
    """The tiny COVID-CT run's weights described as a chest X-ray model (classes Normal / COVID)."""
    folder = tmp_path / "cxr-model"
    shutil.copytree(tiny_run / "model", folder)
    meta = json.loads((folder / "model.json").read_text())
    meta.update(modality="cxr", classes=["Normal", "COVID"], dataset="covid19-radiography")
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_without_data_the_checkpoints_own_data_set_is_scored(tiny_run, data_root, capsys):
    code = main(["evaluate", "--checkpoint", str(tiny_run / "model"), "--data-root", str(data_root),
                 "--split", "val", "--bootstrap", "20"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("covid-ct / val:")
    assert "calibration of P(COVID)" in out and "ECE" in out and "Brier" in out


def test_a_cxr_model_is_not_scored_on_a_registered_ct_set(as_cxr_model, data_root, capsys):
    code = main(["evaluate", "--checkpoint", str(as_cxr_model), "--data", "covid-ct", "--data-root", str(data_root)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert "this is a CXR model but data set 'covid-ct' is registered as CT" in err


def test_a_cxr_model_is_not_scored_on_a_folder_of_ct_slices(as_cxr_model, covid_ct, tmp_path, capsys):
    for cls, source in (("COVID", "CT_COVID"), ("Normal", "CT_NonCOVID")):
        (tmp_path / "mine" / cls).mkdir(parents=True)
        for path in sorted((covid_ct / source).glob("*.png"))[:4]:
            shutil.copy(path, tmp_path / "mine" / cls / path.name)
    args = ["evaluate", "--checkpoint", str(as_cxr_model), "--data", str(tmp_path / "mine"), "--bootstrap", "20"]
    assert main(args) == 2
    assert "sampled images of 'mine' are found to be CT" in capsys.readouterr().err
    assert main(args + ["--no-modality-check"]) == 0  # the user may insist


def test_a_class_map_must_name_a_class_of_the_data(tiny_run, data_root, capsys):
    code = main(["evaluate", "--checkpoint", str(tiny_run / "model"), "--data-root", str(data_root),
                 "--class-map", "Pneumonia=NonCOVID"])
    assert code == 2 and "'Pneumonia', which is not a class of the data" in capsys.readouterr().err
    code = main(["evaluate", "--checkpoint", str(tiny_run / "model"), "--class-map", "NonCOVID"])
    assert code == 2 and "must read DATA_CLASS=MODEL_CLASS" in capsys.readouterr().err
