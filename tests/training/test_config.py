import pytest

from covidlens.errors import CovidlensError
from covidlens.training.config import load_config
from covidlens.training.module import lr_schedule


def test_defaults_are_seed_000():
    c = load_config()
    assert (c.optim.optimizer, c.optim.lr, c.optim.batch_size, c.optim.scheduler) == ("adam", 1e-4, 16, "cosine")
    assert (c.augment.crop_scale, c.augment.hflip, c.augment.brightness, c.augment.contrast) == (0.5, 0.5, 0.2, 0.2)


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\noptim:\n  lr: 0.001\n  epochs: 3\n")
    c = load_config(path, ["optim.lr=3e-4", "model.name=resnet18", "model.kwargs={dropout: 0.3}"])
    assert (c.name, c.optim.lr, c.optim.epochs, c.model.name, c.model.kwargs) == ("x", 3e-4, 3, "resnet18", {"dropout": 0.3})


def test_unknown_key_is_refused_with_the_valid_ones(tmp_path):
    with pytest.raises(CovidlensError, match="unknown config key optim.learning_rate; valid keys here: .*lr"):
        load_config(None, ["optim.learning_rate=1"])


def test_every_committed_config_loads():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path)


def test_cosine_schedules():
    f = lr_schedule("cosine", epochs=10, warmup_epochs=1, period=10, steps_per_epoch=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(99) < 0.01
    g = lr_schedule("cosine_restarts", epochs=20, warmup_epochs=0, period=5, steps_per_epoch=2)
    assert g(0) == pytest.approx(1.0) and g(10) == pytest.approx(1.0) and g(9) < 0.1


def test_wrongly_typed_value_is_refused():
    with pytest.raises(CovidlensError, match="optim.epochs must be int"):
        load_config(None, ["optim.epochs=many"])


@pytest.mark.parametrize(
    "override,message",
    [("optim.optimizer=sgd", "choose one of adam, adamw"), ("augment.mixing=cutout", "augment.mixing"),
     ("optim.epochs=0", "at least 1"), ("eval.target_sensitivity=1.5", "target_sensitivity")],
)
def test_impossible_choices_are_refused_before_training(override, message):
    with pytest.raises(CovidlensError, match=message):
        load_config(None, [override])
