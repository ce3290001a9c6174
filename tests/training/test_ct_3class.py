"""The 3-class CT path (seed 003's COVID-19 / other pneumonia / normal) on the only real 3-class CT here,
COVID-CT-MD's three scans: the set's slab split, and a model that trains, evaluates and predicts
through the K-class code. Its figures show the pipeline, not 3-class screening (one patient a class)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from covidlens.checkpoint import load_checkpoint
from covidlens.cli import main
from covidlens.data.datasets import describe_dataset, load_dataset
from covidlens.inference import predict
from covidlens.training.config import load_config
from covidlens.training.fit import train

SERIES_SLICE = "ct/covid-ct-md/dicom-series/P001/slice_000.dcm"


def test_slabs_keep_neighbouring_slices_together_and_every_class_in_every_split(data_root):
    table = load_dataset("covid-ct-md-3class", data_root)
    assert table.classes == ["normal", "COVID-19", "CAP"] and table.positive_class == "COVID-19"
    slabs: dict[str, set[str]] = {}
    for s in table.samples:
        slabs.setdefault(s.group, set()).add(s.split)
    assert all(len(splits) == 1 for splits in slabs.values())  # a slab never straddles two splits
    for split in ("train", "val", "test"):
        assert {table.classes[s.label] for s in table.split(split)} == set(table.classes)
    # Uninfected slices of the two pneumonia scans belong to no class.
    md = load_dataset("covid-ct-md", data_root)
    assert len(table.samples) == sum(1 for s in md.samples if s.group == "normal001" or s.label == 1)
    assert "One patient per class" in describe_dataset("covid-ct-md-3class").traps[0]


@pytest.fixture(scope="module")
def ct3_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ct3")
    config = load_config(None, [
        "name=ct3", f"trainer.out_dir={out}", f"data.root={data_root}", "data.dataset=covid-ct-md-3class",
        "data.limit_per_class=8", "model.input_size=64", "optim.epochs=2", "optim.batch_size=8", "optim.lr=1e-3",
        "trainer.accelerator=cpu",
    ])
    return train(config, progress=False)


def test_three_class_ct_model_trains_evaluates_and_predicts(ct3_run, data_root, tmp_path, capsys):
    info = load_checkpoint(ct3_run / "model").info
    assert info.classes == ["normal", "COVID-19", "CAP"] and info.num_outputs == 3 and info.modality == "ct"
    out = tmp_path / "report"
    code = main(["evaluate", "--checkpoint", str(ct3_run / "model"), "--data", "covid-ct-md-3class",
                 "--data-root", str(data_root), "--split", "test", "--bootstrap", "50", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "metrics.json").read_text())
    matrix = np.array(result["multiclass"]["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == result["n_images"] == 63
    assert "slab" in result["bootstrap_resamples_what"]
    capsys.readouterr()
    # A real DICOM slice of the COVID-19 patient (HU through the lung window) gets three probabilities.
    (row,) = predict(ct3_run / "model", [data_root / SERIES_SLICE], num_workers=0)
    assert not row.error and set(row.probabilities) == set(info.classes)
    assert sum(row.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
