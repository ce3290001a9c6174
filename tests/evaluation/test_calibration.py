"""Calibration: the measures on known cases, temperature scaling recovering a known temperature, the
fit stored in a real checkpoint, and predict, screen and the web service giving the same calibrated
probability for the same real image."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from covidlens.checkpoint import ModelInfo, load_checkpoint, save_checkpoint
from covidlens.errors import CovidlensError
from covidlens.evaluation.calibration import (
    brier,
    calibrate_checkpoint,
    ece,
    fit_temperature,
    move_threshold,
    probabilities_at,
    reliability,
)
from covidlens.inference import logits_to_probabilities

BINARY = ModelInfo(model="simple_cnn", classes=["NonCOVID", "COVID"], positive_class="COVID", input_size=64,
                   mean=[0.5] * 3, std=[0.5] * 3)
THREE = ModelInfo(model="simple_cnn", classes=["normal", "viral", "bacterial"], input_size=64, mean=[0.5] * 3,
                  std=[0.5] * 3, num_outputs=3)


def test_ece_is_zero_when_every_bin_comes_true_at_its_rate_and_large_when_overconfident():
    p = np.array([0.2] * 10 + [0.8] * 10)
    hit = np.array([1, 1] + [0] * 8 + [1] * 8 + [0, 0], dtype=float)
    assert ece(p, hit) == pytest.approx(0.0)
    assert ece(np.full(10, 0.99), np.r_[np.ones(5), np.zeros(5)]) == pytest.approx(0.49)
    bins = reliability(p, hit)
    assert sum(b["n"] for b in bins) == 20 and len(bins) == 15


def test_brier_counts_every_class():
    y = np.array([0, 1])
    assert brier(y, np.array([[1.0, 0.0], [0.0, 1.0]])) == 0.0
    assert brier(y, np.array([[0.5, 0.5], [0.5, 0.5]])) == pytest.approx(0.5)


@pytest.mark.parametrize("info", [BINARY, THREE], ids=["one logit", "three logits"])
def test_a_known_temperature_is_recovered(info):
    rng = np.random.default_rng(0)
    truth = 2.5
    logits = rng.normal(0, 4, size=(4000, 1, info.num_outputs)).astype(np.float32)
    probs = probabilities_at(logits, info, truth)
    y = np.array([rng.choice(len(info.classes), p=row / row.sum()) for row in probs])
    assert fit_temperature(logits, y, info) == pytest.approx(truth, rel=0.1)


def test_one_class_cannot_be_fitted():
    with pytest.raises(CovidlensError, match="at least two classes"):
        fit_temperature(np.zeros((5, 1, 1), np.float32), np.zeros(5, int), BINARY)


def test_a_moved_threshold_keeps_every_decision():
    z = torch.linspace(-6, 6, 241)[:, None]
    old_t, new_t, threshold = 1.0, 2.7, 0.83
    before = logits_to_probabilities(z, BINARY, old_t)[:, 1] >= threshold
    after = logits_to_probabilities(z, BINARY, new_t)[:, 1] >= move_threshold(threshold, old_t, new_t)
    assert torch.equal(before, after) and move_threshold(0.5, 1.0, 3.0) == 0.5


def test_a_temperature_out_of_range_is_refused(tmp_path, tiny_run):
    folder = tmp_path / "bad"
    shutil.copytree(tiny_run / "model", folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["temperature"] = 0.0
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CovidlensError, match="'temperature' must be a number"):
        load_checkpoint(folder)


def test_calibrating_a_real_checkpoint_stores_the_fit_and_keeps_its_decisions(tiny_run, data_root, tmp_path):
    """The tiny COVID-CT run, fitted on its own validation split: the temperature and the moved thresholds
    are in model.json, the validation NLL did not rise, and the decisions at both thresholds are unchanged."""
    from covidlens.data.datasets import load_dataset
    from covidlens.inference import class_probabilities

    trained = load_checkpoint(tiny_run / "model")
    assert trained.info.temperature != 1.0 and "val split of covid-ct" in trained.info.calibration  # fitted by train
    folder = tmp_path / "calibrated"
    shutil.copytree(tiny_run / "model", folder)
    meta = json.loads((folder / "model.json").read_text())
    t = meta["temperature"]
    meta.update(temperature=1.0, calibration="", sensitivity_threshold=move_threshold(meta["sensitivity_threshold"], t, 1.0))
    (folder / "model.json").write_text(json.dumps(meta))
    before = load_checkpoint(folder)
    fit = calibrate_checkpoint(folder, root=str(data_root))
    after = load_checkpoint(folder)
    assert after.info.temperature == pytest.approx(fit["temperature"]) != 1.0
    # Same split, nearly the same fit (within 1 %: the optimiser stops at a tolerance from its own start).
    assert fit["temperature"] == pytest.approx(trained.info.temperature, rel=0.01)
    assert fit["nll_after"] <= fit["nll_before"] + 1e-9
    assert "validation" not in after.info.calibration and "val split" in after.info.calibration
    samples = load_dataset("covid-ct", data_root).split("val")[:24]
    p_before = class_probabilities(before, samples)[:, 1]
    p_after = class_probabilities(after, samples)[:, 1]
    assert not np.allclose(p_before, p_after)
    for old, new in ((before.info.threshold, after.info.threshold),
                     (before.info.sensitivity_threshold, after.info.sensitivity_threshold)):
        if old is not None:
            assert np.array_equal(p_before >= old, p_after >= new)


def test_the_calibrate_command_prints_the_fit_and_a_dry_run_writes_nothing(tiny_run, data_root, tmp_path, capsys):
    from covidlens.cli import main

    folder = tmp_path / "copy"
    shutil.copytree(tiny_run / "model", folder)
    written = (folder / "model.json").read_text()
    assert main(["calibrate", "--checkpoint", str(folder), "--data-root", str(data_root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "covid-ct / val:" in out and "temperature" in out and "dry run: nothing written" in out
    assert (folder / "model.json").read_text() == written
    assert main(["calibrate", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- one road: predict, screen and the web service -------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrated_ct(tmp_path_factory) -> tuple:
    """An untrained CT classifier stored with temperature 2.5 (the serving path is what is tested here), and
    the lesion model the screen road needs."""
    from covidlens.models import create_model

    root = tmp_path_factory.mktemp("calibrated")
    torch.manual_seed(0)
    kwargs = {"widths": [8, 16, 32]}
    model = create_model("simple_cnn", num_classes=1, **kwargs).eval()
    # A bias that puts the raw probability far from 0.5, where a temperature shows.
    with torch.no_grad():
        list(model.parameters())[-1].add_(3.0)
    info = ModelInfo(model="simple_cnn", classes=["NonCOVID", "COVID"], positive_class="COVID", input_size=64,
                     mean=[0.5] * 3, std=[0.5] * 3, modality="ct", model_kwargs=kwargs, dataset="tiny-ct",
                     temperature=2.5, calibration="set by the test")
    ct = save_checkpoint(model, info, root / "ct")
    seg = create_model("unet_seg", num_classes=2, base_channels=4).eval()
    lesion = save_checkpoint(seg, ModelInfo(model="unet_seg", classes=["background", "infection"], input_size=64,
                                            mean=[0.5] * 3, std=[0.5] * 3, task="segmentation", num_outputs=2,
                                            model_kwargs={"base_channels": 4}, dataset="tiny-medseg"), root / "lesion")
    return ct, lesion


def test_predict_screen_and_the_service_give_the_same_calibrated_probability(calibrated_ct, data_root, tmp_path):
    from fastapi.testclient import TestClient

    import covidlens
    from covidlens.inference import image_probabilities, predict
    from covidlens.serve import ServeConfig, create_app
    from covidlens.serve.pipeline import ServedModels

    ct, lesion = calibrated_ct
    image = data_root / "ct" / "covid-ct" / "CT_COVID" / "2020.01.24.919183-p27-132.png"
    ckpt = load_checkpoint(ct)
    from PIL import Image

    raw = float(image_probabilities(ckpt, [Image.open(image).convert("L")], 1)[0, 1])
    uncalibrated = 1 / (1 + math.exp(-math.log(raw / (1 - raw)) * 2.5))
    assert abs(raw - uncalibrated) > 0.01  # the temperature moves this image's probability

    predicted = predict(ct, [image], backend="torch")[0].probabilities["COVID"]
    run = covidlens.screen([image], tmp_path / "screen", lesion=lesion, ct=ct, workers=0, backend="torch")
    screened = run.rows[0]["covid19_score"]
    with TestClient(create_app(ServeConfig(), ServedModels.load(ct=ct, lesion=lesion)),
                    raise_server_exceptions=False) as client:
        files = {"file": (image.name, image.read_bytes(), "image/png")}
        served = client.post("/v1/predict", files=files).json()["probabilities"]["COVID"]
        study = client.post("/v1/screen", files=files).json()["verdict"]["covid19_score"]
    assert predicted == pytest.approx(raw, abs=1e-4)
    assert screened == pytest.approx(raw, abs=1e-4)
    assert served == pytest.approx(raw, abs=1e-4)
    assert study == pytest.approx(raw, abs=1e-4)
