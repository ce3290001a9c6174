import csv

import lightning as L
import pytest
import torch

from covidlens.checkpoint import load_checkpoint
from covidlens.errors import CovidlensError
from covidlens.inference import predict, predict_arrays
from covidlens.models import create_model
from covidlens.training.fit import train
from tests.conftest import tiny_config


def _val_epochs(run_dir):
    with (run_dir / "logs" / "metrics.csv").open() as handle:
        return sorted({int(r["epoch"]) for r in csv.DictReader(handle) if r.get("val_auc")})


def test_training_writes_a_complete_run(tiny_run):
    for rel in ("config.yaml", "model/model.safetensors", "model/model.json", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (tiny_run / rel).is_file(), rel
    assert _val_epochs(tiny_run) == [0, 1]
    info = load_checkpoint(tiny_run / "model").info
    assert info.classes == ["NonCOVID", "COVID"] and info.input_size == 64
    assert 0.0 <= info.sensitivity_threshold <= 1.0


def test_exported_checkpoint_reloads_to_identical_predictions(tiny_run, covid_ct):
    ckpt = load_checkpoint(tiny_run / "model")
    best = sorted((tiny_run / "checkpoints").glob("best-*.ckpt"))[0]
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    reference = create_model("efficientnet_lite0", num_classes=1)
    reference.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    reference.eval()
    from covidlens.data.datasets import load_dataset

    samples = load_dataset("covid-ct", covid_ct.parents[1]).split("test")[:6]
    again = load_checkpoint(tiny_run / "model")
    first = predict_arrays(ckpt, samples)
    assert torch.equal(torch.from_numpy(first), torch.from_numpy(predict_arrays(again, samples)))
    ckpt.model.load_state_dict(reference.state_dict())
    assert torch.allclose(torch.from_numpy(first), torch.from_numpy(predict_arrays(ckpt, samples)), atol=0)


class _Crash(L.Callback):
    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == 2:
            raise RuntimeError("simulated power cut")


def test_interrupted_run_resumes_and_ends_with_all_epochs(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path, "crash", epochs=3)
    with pytest.raises(RuntimeError, match="simulated power cut"):
        train(config, callbacks=[_Crash()], progress=False)
    assert not (tmp_path / "crash" / "model").exists()
    assert torch.load(tmp_path / "crash/checkpoints/last.ckpt", weights_only=True)["epoch"] == 1
    with pytest.raises(CovidlensError, match="--resume"):
        train(config, progress=False)
    run_dir = train(config, resume=True, progress=False)
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 2
    assert 2 in _val_epochs(run_dir)
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_resume_without_a_run_is_refused(data_root, tmp_path):
    with pytest.raises(CovidlensError, match="cannot resume"):
        train(tiny_config(data_root, tmp_path, "never"), resume=True, progress=False)


def test_seed_makes_runs_repeatable(data_root, tmp_path, covid_ct):
    from covidlens.data.datasets import load_dataset

    samples = load_dataset("covid-ct", data_root).split("test")[:4]
    probs = []
    for name in ("r1", "r2"):
        config = tiny_config(data_root, tmp_path, name, epochs=1)
        probs.append(predict_arrays(load_checkpoint(train(config, progress=False) / "model"), samples))
    assert probs[0].tolist() == pytest.approx(probs[1].tolist(), abs=1e-5)


def test_predict_rows_and_unreadable_files(tiny_run, covid_ct, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("hello")
    rows = predict(tiny_run / "model", [covid_ct / "CT_NonCOVID" / "102.png", fake], threshold=0.5)
    assert rows[0].label in ("NonCOVID", "COVID") and 0 <= rows[0].probability <= 1
    assert rows[1].error and "not an image" in rows[1].error


@pytest.mark.parametrize("method", ["mixup", "cutmix", "mosaic"])
def test_training_with_batch_mixing_and_noise(data_root, tmp_path, method):
    config = tiny_config(data_root, tmp_path, method, epochs=1)
    config.augment.mixing, config.augment.mixing_prob, config.augment.noise_std = method, 1.0, 0.05
    run_dir = train(config, progress=False)
    assert (run_dir / "model" / "model.safetensors").is_file()
