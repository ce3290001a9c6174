"""Tasks, modalities and splits are one set each: every place that checks a value refuses the same
strangers and names the same choices."""

from dataclasses import replace
from pathlib import Path

import pytest

from covidlens.checkpoint import ModelInfo, validate_info
from covidlens.data.sets import Sample, SampleTable
from covidlens.errors import CovidlensError
from covidlens.kinds import MODALITIES, SPLITS, TASKS
from covidlens.models import list_models
from covidlens.training.config import load_config

INFO = ModelInfo("simple_cnn", ["NonCOVID", "COVID"], 64, [0.5] * 3, [0.5] * 3, positive_class="COVID")


def test_the_sets():
    assert TASKS == ("classification", "segmentation")
    assert MODALITIES == ("ct", "cxr")
    assert SPLITS == ("train", "val", "test")


def test_checkpoints_accept_exactly_the_tasks_and_modalities():
    for task in TASKS:
        for modality in MODALITIES:
            validate_info(replace(INFO, task=task, modality=modality), "test")
    with pytest.raises(CovidlensError, match=", ".join(TASKS)):
        validate_info(replace(INFO, task="detection"), "test")
    with pytest.raises(CovidlensError, match=", ".join(MODALITIES)):
        validate_info(replace(INFO, modality="mri"), "test")


def test_registry_and_config_name_the_same_modalities():
    for modality in MODALITIES:
        assert list_models(modality=modality)
        assert load_config(overrides=[f"data.modality={modality}"]).data.modality == modality
    with pytest.raises(CovidlensError, match=", ".join(MODALITIES)):
        list_models(modality="mri")
    with pytest.raises(CovidlensError, match=", ".join(MODALITIES)):
        load_config(overrides=["data.modality=mri"])
    with pytest.raises(CovidlensError, match=", ".join(TASKS)):
        list_models(task="detection")


def test_data_sets_split_by_the_splits():
    table = SampleTable("tiny", ["a", "b"], [Sample(Path(f"{split}.png"), 0, split, split) for split in SPLITS])
    assert [table.split(split)[0].split for split in SPLITS] == list(SPLITS)
    assert list(table.counts()) == list(SPLITS)
    with pytest.raises(CovidlensError, match=", ".join(SPLITS)):
        table.split("validation")
