"""Checkpoint format 2: what it records, that loading is strict, and that version-1 files still load."""

import json
import shutil

import pytest
import torch

from covidlens.checkpoint import FORMAT, FORMAT_V1, load_checkpoint
from covidlens.errors import CovidlensError


@pytest.fixture()
def copy_of(tiny_run, tmp_path):
    def make(edit=None):
        folder = tmp_path / "ckpt"
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(tiny_run / "model", folder)
        if edit is not None:
            meta = json.loads((folder / "model.json").read_text())
            edit(meta)
            (folder / "model.json").write_text(json.dumps(meta))
        return folder

    return make


def test_version_2_records_task_modality_classes_and_preprocessing(tiny_run):
    meta = json.loads((tiny_run / "model" / "model.json").read_text())
    assert meta["format"] == FORMAT
    assert meta["task"] == "classification" and meta["modality"] == "ct"
    assert meta["classes"] == ["NonCOVID", "COVID"] and meta["positive_class"] == "COVID"
    assert meta["input_size"] == 64 and len(meta["mean"]) == len(meta["std"]) == meta["in_channels"] == 3
    assert meta["preprocessing"] == {"intensity": "display", "region": "whole", "resize": "stretch", "lungs": "raw"}


def test_a_file_written_before_the_region_step_reads_as_whole_image(copy_of):
    def without_region(meta):
        meta["preprocessing"] = {"intensity": "display", "resize": "stretch"}

    assert load_checkpoint(copy_of(without_region)).info.preprocessing["region"] == "whole"


def test_version_1_file_loads_with_its_positive_index(copy_of, tiny_run):
    def to_v1(meta):
        for key in ("task", "modality", "positive_class", "preprocessing"):
            meta.pop(key)
        meta.update(format=FORMAT_V1, positive_index=1)

    old = load_checkpoint(copy_of(to_v1))
    new = load_checkpoint(tiny_run / "model")
    assert old.info.positive_class == "COVID" and old.info.task == "classification"
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(old.model(x), new.model(x))


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda m: m.update(colour="blue"), "unknown field 'colour'"),
        (lambda m: m.update(input_size=10**9), "input_size must be a whole number"),
        (lambda m: m.update(input_size="224"), "input_size must be a whole number"),
        (lambda m: m.update(classes=["a"]), "'classes' must be 2 to"),
        (lambda m: m.update(positive_class="Flu"), "positive class 'Flu' is not one of its classes"),
        (lambda m: m.update(num_outputs=7), "need 1 output"),
        (lambda m: m.update(std=[0.2, 0.0, 0.2]), "'std' value must be above 0"),
        (lambda m: m.update(mean=[0.5]), "'mean' must list 3"),
        (lambda m: m.update(threshold=1.5), "'threshold' must lie between 0 and 1"),
        (lambda m: m.update(task="detection"), "task 'detection' is not one of"),
        (lambda m: m.update(modality="mri"), "modality 'mri' is not one of"),
        (lambda m: m.update(preprocessing={"intensity": "exec"}), "'preprocessing' must name"),
        (lambda m: m.update(preprocessing={"intensity": "display", "region": "lungs", "resize": "stretch"}), "region: whole, body"),
        (lambda m: m.update(model_kwargs={"os_system": 1}), "takes no such argument"),
        (lambda m: m.update(model="no_such_net"), "unknown model 'no_such_net'"),
        (lambda m: m.update(format="covidlens-model/9"), "has format"),
        (lambda m: m.pop("classes"), "lacks the field 'classes'"),
    ],
)
def test_bad_model_json_is_one_sentence(copy_of, edit, message):
    with pytest.raises(CovidlensError, match=message) as caught:
        load_checkpoint(copy_of(edit))
    assert "\n" not in str(caught.value)


def test_huge_model_is_refused_before_any_memory_is_used(copy_of):
    folder = copy_of(lambda m: m.update(model="unet_classifier", model_kwargs={"base_channels": 100_000}))
    with pytest.raises(CovidlensError, match="parameters, more than covidlens loads"):
        load_checkpoint(folder)


def test_weights_of_another_architecture_are_refused_by_shape(copy_of):
    folder = copy_of(lambda m: m.update(model="simple_cnn", mean=[0.5] * 3, std=[0.5] * 3))
    with pytest.raises(CovidlensError, match="does not match model 'simple_cnn'"):
        load_checkpoint(folder)


def test_not_json_and_not_safetensors_are_one_sentence(copy_of):
    folder = copy_of()
    (folder / "model.json").write_text("{not json")
    with pytest.raises(CovidlensError, match="is not valid JSON"):
        load_checkpoint(folder)
    folder = copy_of()
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CovidlensError, match="not a readable safetensors file"):
        load_checkpoint(folder)
