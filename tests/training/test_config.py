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


def test_from_dict_is_the_inverse_of_to_dict_and_refuses_what_load_config_refuses():
    from covidlens.training.config import TrainConfig

    config = load_config(None, ["optim.epochs=3", "augment.jpeg_prob=0.5", "model.kwargs={dropout: 0.1}"])
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict({"optim": {"lr": "3e-4"}}).optim.lr == pytest.approx(3e-4)
    with pytest.raises(CovidlensError, match="unknown config key optim.momentum"):
        TrainConfig.from_dict({"optim": {"momentum": 0.9}})
    with pytest.raises(CovidlensError, match="choose one of adam, adamw"):
        TrainConfig.from_dict({"optim": {"optimizer": "sgd"}})


def test_presets_take_every_augmentation_setting_by_name():
    import inspect

    from covidlens.data.transforms import SegmentationTrainPreset, TrainPreset
    from covidlens.training.config import AugmentConfig

    fields = set(AugmentConfig.__dataclass_fields__)
    for preset, own in ((TrainPreset, {"size", "mean", "std", "in_channels", "region"}),
                        (SegmentationTrainPreset, {"size", "mean", "std", "in_channels"})):
        taken = set(inspect.signature(preset.__init__).parameters) - {"self"} - own
        assert taken <= fields  # every augmentation argument has a config field of the same name
    augment = AugmentConfig(jpeg_prob=1.0, jpeg_quality=[20, 20], downscale_prob=1.0, hflip=0.0)
    text = repr(TrainPreset.from_config(augment, 64, (0.5,), (0.5,), 1).transform)
    assert "JPEG" in text and "RandomDownscale(p=1.0" in text and "RandomHorizontalFlip" not in text


def test_the_trainer_picks_each_tasks_three_pieces_from_one_table():
    from covidlens.kinds import TASKS
    from covidlens.training import classification, segmentation
    from covidlens.training.fit import TASKS as PIECES

    assert set(PIECES) == set(TASKS)
    for task, pieces in ((("classification", classification)), ("segmentation", segmentation)):
        assert PIECES[task].build_datamodule is pieces.build_datamodule
        assert PIECES[task].build_module is pieces.build_module and PIECES[task].export is pieces.export
