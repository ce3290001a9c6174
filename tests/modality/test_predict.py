"""predict refuses, with one sentence and no probability, an image that is not of the model's modality."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from covidlens.checkpoint import ModelInfo, save_checkpoint
from covidlens.cli import main
from covidlens.inference import predict
from covidlens.models import create_model


@pytest.fixture(scope="module")
def ct_model(tmp_path_factory):
    """An untrained CT classifier built in a second: these tests check the refusal, not the verdict."""
    torch.manual_seed(0)
    kwargs = {"widths": [8, 16, 32]}
    info = ModelInfo(model="simple_cnn", classes=["NonCOVID", "COVID"], positive_class="COVID", input_size=64,
                     mean=[0.5] * 3, std=[0.5] * 3, modality="ct", model_kwargs=kwargs, dataset="tiny-ct")
    return save_checkpoint(create_model("simple_cnn", num_classes=1, **kwargs).eval(), info,
                           tmp_path_factory.mktemp("ct-model"))


@pytest.fixture()
def inputs(data_root, tmp_path):
    Image.new("L", (1, 1), 128).save(tmp_path / "grey1x1.png")
    Image.new("CMYK", (200, 200), (40, 90, 10, 20)).save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.random.default_rng(1).integers(0, 65536, (128, 128), dtype=np.uint16)).save(tmp_path / "noise16.png")
    return {
        "ct": data_root / "ct/covid-ct/CT_NonCOVID/112.png",
        "cxr": data_root / "cxr/covid19-radiography/COVID/COVID-100.jpg",
        "grey1x1": tmp_path / "grey1x1.png",
        "cmyk": tmp_path / "cmyk.jpg",
        "noise16": tmp_path / "noise16.png",
    }


def test_only_the_ct_slice_gets_a_verdict_from_a_ct_model(ct_model, inputs):
    rows = {row.path: row for row in predict(ct_model, inputs.values(), num_workers=0)}
    ct = rows[str(inputs["ct"])]
    assert ct.label in ("NonCOVID", "COVID") and not ct.refused and not ct.error and ct.modality == "ct"
    cxr = rows[str(inputs["cxr"])]
    assert cxr.refused and cxr.label == "" and math.isnan(cxr.probability) and not cxr.probabilities
    assert cxr.error.startswith("this looks like a chest X-ray, but the model is a CT model")
    for name in ("grey1x1", "cmyk", "noise16"):
        row = rows[str(inputs[name])]
        assert row.refused and row.label == "" and row.modality == "other", row
        assert row.error.startswith("this does not look like a chest CT slice or a chest X-ray")


def test_workers_refuse_the_same_images(ct_model, inputs):
    alone = predict(ct_model, inputs.values(), batch_size=2, num_workers=0)
    workers = predict(ct_model, inputs.values(), batch_size=2, num_workers=2)
    assert [(r.path, r.refused, r.error, r.label) for r in alone] == [(r.path, r.refused, r.error, r.label) for r in workers]


def test_the_check_can_be_turned_off(ct_model, inputs):
    rows = predict(ct_model, [inputs["cxr"], inputs["noise16"]], num_workers=0, check_modality=False)
    assert all(r.label and not r.refused and not r.error and r.modality == "" for r in rows)


def test_cli_prints_the_refusal_and_exits_1(ct_model, inputs, tmp_path, capsys):
    out = tmp_path / "rows.json"
    code = main(["predict", "--checkpoint", str(ct_model), str(inputs["ct"]), str(inputs["cxr"]), str(inputs["cmyk"]),
                 "--json", str(out), "--csv", str(tmp_path / "rows.csv")])
    captured = capsys.readouterr()
    assert code == 1
    assert "refused: this looks like a chest X-ray, but the model is a CT model" in captured.out
    assert "2 of 3 images were refused by the modality check" in captured.err and "Traceback" not in captured.err
    rows = json.loads(out.read_text())
    assert [r["refused"] for r in rows] == [False, True, True] and rows[1]["probability"] is None
    assert (tmp_path / "rows.csv").read_text().splitlines()[0].startswith("path,label,probability,threshold,error,refused,modality")
    assert main(["predict", "--checkpoint", str(ct_model), str(inputs["cxr"]), "--no-modality-check"]) == 0


def test_explain_refuses_the_same_images_and_explains_the_ct_slice(ct_model, inputs, tmp_path):
    from covidlens.checkpoint import load_checkpoint
    from covidlens.explain.render import explain_files

    ckpt = load_checkpoint(ct_model.path if hasattr(ct_model, "path") else ct_model)
    written, failed = explain_files(ckpt, list(inputs.values()), tmp_path / "maps", "gradcam")
    assert [str(p) for p, _ in written] == [str(inputs["ct"])]
    reasons = {p.name: r for p, r in failed}
    assert "looks like a chest X-ray" in reasons[inputs["cxr"].name]
    assert all("does not look like a chest CT slice" in reasons[n] for n in ("grey1x1.png", "cmyk.jpg", "noise16.png"))
    written, failed = explain_files(ckpt, [inputs["cxr"]], tmp_path / "anyway", "gradcam", check_modality=False)
    assert len(written) == 1 and not failed
