"""The ONNX Runtime backend on a really trained checkpoint and real COVID-CT slices: same probabilities
and decisions as PyTorch, through the API and the command line."""

from __future__ import annotations

import json

import pytest

from covidlens.cli import main
from covidlens.inference import predict

pytest.importorskip("onnxruntime", reason="the ONNX Runtime backend needs onnxruntime")

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def ct_slices(covid_ct):
    """Twelve official test slices of both classes, PNG and JPEG, sizes from small crops to 512 px."""
    names = []
    for cls, folder in (("COVID", "CT_COVID"), ("NonCOVID", "CT_NonCOVID")):
        listed = (covid_ct / "splits" / cls / f"testCT_{cls}.txt").read_text().split()
        names += [covid_ct / folder / n for n in listed[:6]]
    return names


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    assert main(["export", "--format", "onnx", "--checkpoint", str(tiny_run / "model"), "--out", str(out)]) == 0
    return out


def test_exported_file_predicts_pytorchs_probabilities_on_real_slices(tiny_run, exported, ct_slices):
    torch_rows = predict(tiny_run / "model", ct_slices, batch_size=5)
    onnx_rows = predict(exported, ct_slices, batch_size=5)
    assert [r.path for r in onnx_rows] == [r.path for r in torch_rows]
    diff = max(abs(a.probabilities[c] - b.probabilities[c]) for a, b in zip(onnx_rows, torch_rows) for c in a.probabilities)
    assert diff <= TOLERANCE
    assert [r.label for r in onnx_rows] == [r.label for r in torch_rows]
    assert len({round(r.probability, 3) for r in torch_rows}) > 3  # a trained model, not a constant


def test_a_checkpoint_folder_runs_on_onnxruntime_without_an_export_step(tiny_run, ct_slices):
    torch_rows = predict(tiny_run / "model", ct_slices[:3])
    onnx_rows = predict(tiny_run / "model", ct_slices[:3], backend="onnxruntime")
    assert max(abs(a.probability - b.probability) for a, b in zip(onnx_rows, torch_rows)) <= TOLERANCE


def test_cli_predict_on_onnxruntime_writes_the_same_table(tiny_run, exported, ct_slices, tmp_path):
    paths = [str(p) for p in ct_slices[:4]]
    assert main(["predict", "--checkpoint", str(exported), *paths, "--json", str(tmp_path / "o.json")]) == 0
    assert main(["predict", "--checkpoint", str(tiny_run / "model"), *paths, "--json", str(tmp_path / "t.json")]) == 0
    onnx_rows, torch_rows = (json.loads((tmp_path / n).read_text()) for n in ("o.json", "t.json"))
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    assert max(abs(a["p_COVID"] - b["p_COVID"]) for a, b in zip(onnx_rows, torch_rows)) <= TOLERANCE


@pytest.mark.parametrize(
    "argv,message",
    [
        (["predict", "--checkpoint", "{onnx}", "--backend", "torch", "{img}"], "is an ONNX file"),
        (["export", "--checkpoint", "{tmp}/none", "--out", "{tmp}/m.onnx"], "checkpoint .* does not exist"),
        (["export", "--checkpoint", "{run}", "--out", "{tmp}/no/m.onnx"], "its folder does not exist"),
        (["predict", "--checkpoint", "{run}", "--batch-size", "0", "{img}"], "batch size must be at least 1"),
    ],
)
def test_bad_cli_input_is_one_sentence_and_exit_2(argv, message, tiny_run, exported, ct_slices, tmp_path, capsys):
    argv = [a.format(onnx=exported, run=tiny_run / "model", tmp=tmp_path, img=ct_slices[0]) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("covidlens: error:") and len(err.splitlines()) == 1
    assert __import__("re").search(message, err)
