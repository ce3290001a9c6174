"""Commands without a checkpoint flag use the store's installed models and say which; a missing one is
one sentence saying how to get it."""

from __future__ import annotations

import pytest

from covidlens.cli import main
from tests.segmentation.runs import tiny_segmentation_run
from tests.store.conftest import install_run

IMAGE = "CT_COVID/2020.01.24.919183-p27-132.png"


@pytest.fixture(scope="module")
def seg_run(data_root, tmp_path_factory):
    return tiny_segmentation_run(data_root, tmp_path_factory)


@pytest.mark.parametrize("argv, name", [
    (["predict", "x.png"], "ct-classifier"),
    (["explain", "x.png", "--out", "OUT"], "ct-classifier"),
    (["quantify", "x.nii.gz", "--out", "OUT"], "ct-lesions"),
    (["lungs", "x.png", "--out", "OUT"], "cxr-lungs"),
])
def test_a_missing_store_model_is_one_sentence(argv, name, store, tmp_path, capsys):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"covidlens: error: no {name} model is installed: run 'covidlens models build {name}' or "
        f"'covidlens models pull {name}'.")


def test_screen_and_serve_with_an_empty_store_say_how_to_fill_it(store, tmp_path, capsys):
    assert main(["screen", "x.png", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "the store" in err and "covidlens models build --all" in err and len(err.strip().splitlines()) == 1


def test_predict_and_explain_default_to_the_store_classifier(tiny_run, store, covid_ct, tmp_path, capsys):
    folder = install_run(tiny_run, "ct-classifier")
    assert main(["predict", str(covid_ct / IMAGE), "--no-modality-check"]) == 0
    out = capsys.readouterr().out
    assert f"model ct-classifier: {folder} (from the store" in out and "P(COVID)" in out
    assert main(["explain", str(covid_ct / IMAGE), "--out", str(tmp_path / "cam"), "--no-modality-check"]) == 0
    assert f"model ct-classifier: {folder}" in capsys.readouterr().out
    assert list((tmp_path / "cam").glob("*.png"))


def test_screen_takes_every_installed_role_and_says_which(tiny_run, seg_run, store, covid_ct, tmp_path, capsys):
    lesions = install_run(seg_run, "ct-lesions")
    classifier = install_run(tiny_run, "ct-classifier")
    code = main(["screen", str(covid_ct / IMAGE), "--out", str(tmp_path / "s"), "--modality", "ct",
                 "--backend", "torch"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "the store's models" in out and "lesion, ct" in out
    assert f"model lesion: unet_seg ({lesions}" in out and f"model ct_classifier: efficientnet_lite0 ({classifier}" in out


def test_quantify_defaults_to_the_store_lesion_model(seg_run, store, data_root, tmp_path, capsys):
    folder = install_run(seg_run, "ct-lesions")
    scan = next((data_root / "ct" / "ny-sbu-dicom").rglob("*.dcm"), None)
    if scan is None:
        pytest.skip("no NY-SBU DICOM slice here")
    assert main(["quantify", str(scan), "--out", str(tmp_path / "q"), "--no-progress", "--overlays", "1"]) == 0
    assert f"model ct-lesions: {folder} (from the store" in capsys.readouterr().out


def test_serve_defaults_to_the_store(tiny_run, store, monkeypatch, capsys):
    import covidlens.serve as serve

    seen = {}
    monkeypatch.setattr(serve, "run_server", lambda config, **kwargs: seen.update(config=config))
    folder = install_run(tiny_run, "ct-classifier")
    assert main(["serve"]) == 0
    config = seen["config"]
    assert config.ct_checkpoint == str(folder) and config.lesion_checkpoint is None
    assert "the store's models" in capsys.readouterr().out
