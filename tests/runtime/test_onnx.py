"""ONNX export and the ONNX Runtime backend: same outputs as PyTorch, clear sentences otherwise."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from covidlens.checkpoint import Checkpoint, ModelInfo
from covidlens.errors import CovidlensError
from covidlens.models import create_model, get_model_spec, list_models
from covidlens.runtime import OnnxModel, export_onnx, load_onnx, open_model, sidecar_path
from covidlens.runtime.onnx import onnx_model, onnx_session

pytest.importorskip("onnxruntime", reason="the ONNX Runtime backend needs onnxruntime")

#: Small enough to export and run quickly, a multiple of 32 for the UNet encoders.
SIZE = 64
TOLERANCE = 1e-4


def _learned_offsets(model: torch.nn.Module) -> torch.nn.Module:
    """Freshly built deformable convolutions sample the regular grid (zero offsets); give them offsets
    so that the export of the sampling itself is checked."""
    for module in model.modules():
        if hasattr(module, "offset_conv"):
            torch.nn.init.normal_(module.offset_conv.weight, std=0.5)
    return model


def _outputs_as_probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    if task == "segmentation":
        return torch.softmax(logits, dim=1)
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_exports_with_pytorchs_probabilities(name):
    torch.manual_seed(0)
    spec = get_model_spec(name)
    model = _learned_offsets(create_model(name, num_classes=1 if spec.task == "classification" else 3)).eval()
    session = onnx_session(onnx_model(model, SIZE).SerializeToString())
    for batch in (1, 3):  # the batch axis is dynamic
        x = torch.randn(batch, 3, SIZE, SIZE)
        with torch.inference_mode():
            expected = _outputs_as_probabilities(model(x), spec.task)
        got = _outputs_as_probabilities(torch.from_numpy(session.run(None, {"image": x.numpy()})[0]), spec.task)
        assert got.shape == expected.shape
        assert float((got - expected).abs().max()) <= TOLERANCE


def test_deformable_convolution_exports_its_sampling():
    from covidlens.models.blocks import DeformConv2d

    torch.manual_seed(0)
    layer = _learned_offsets(DeformConv2d(3, 4)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected = layer(x)
        plain = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1) * 0.5
    assert float((expected - plain).abs().max()) > 0.1  # the offsets really move the samples
    got = onnx_session(onnx_model(layer, 32).SerializeToString()).run(None, {"image": x.numpy()})[0]
    assert np.abs(got - expected.numpy()).max() <= TOLERANCE


def test_a_graph_the_exporter_cannot_trace_is_refused_in_one_sentence():
    class DataDependent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 1)

        def forward(self, x):
            y = self.conv(x)
            return y if float(y.sum()) > 0 else -y  # Python branch on a value: no static graph

    with pytest.raises(CovidlensError, match=r"^the toy cannot be exported to ONNX \(.+\)\.$"):
        onnx_model(DataDependent(), 32, name="the toy")


def _info(name: str, task: str = "classification") -> ModelInfo:
    spec = get_model_spec(name)
    if task == "classification":
        return ModelInfo(model=name, classes=["NonCOVID", "COVID"], positive_class="COVID", input_size=SIZE,
                         mean=list(spec.mean), std=list(spec.std))
    return ModelInfo(model=name, classes=["background", "lesion"], task="segmentation", num_outputs=2,
                     input_size=SIZE, mean=list(spec.mean), std=list(spec.std))


def test_export_writes_the_graph_and_the_checkpoints_description(tmp_path):
    torch.manual_seed(0)
    info = _info("unet_seg", "segmentation")
    ckpt = Checkpoint(create_model("unet_seg", num_classes=2).eval(), info, tmp_path)
    result = export_onnx(ckpt, tmp_path / "seg.onnx")
    assert result.onnx.is_file() and result.sidecar == tmp_path / "seg.onnx.json"
    assert json.loads(result.sidecar.read_text())["task"] == "segmentation"
    onnx = load_onnx(result.onnx)
    assert onnx.info == info
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        assert float((onnx(x) - ckpt.model(x)).abs().max()) <= TOLERANCE


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("onnx")
    ckpt = Checkpoint(create_model("simple_cnn", num_classes=1).eval(), _info("simple_cnn"), folder)
    return export_onnx(ckpt, folder / "simple.onnx").onnx


def test_an_onnx_file_without_its_description_is_refused(onnx_file, tmp_path):
    alone = tmp_path / "alone.onnx"
    alone.write_bytes(onnx_file.read_bytes())
    with pytest.raises(CovidlensError, match="has no model description alone.onnx.json beside it"):
        load_onnx(alone)


def test_a_description_that_does_not_fit_the_graph_is_refused(onnx_file, tmp_path):
    copy = tmp_path / "m.onnx"
    copy.write_bytes(onnx_file.read_bytes())
    meta = json.loads(sidecar_path(onnx_file).read_text())
    sidecar_path(copy).write_text(json.dumps(meta | {"input_size": 128}))
    with pytest.raises(CovidlensError, match=r"takes images of shape .* says batch x 3 x 128 x 128"):
        load_onnx(copy)


def test_a_file_that_is_not_onnx_is_one_sentence(onnx_file, tmp_path):
    fake = tmp_path / "fake.onnx"
    fake.write_text("not a graph")
    sidecar_path(fake).write_text(sidecar_path(onnx_file).read_text())
    with pytest.raises(CovidlensError, match="is not an ONNX model that ONNX Runtime can run"):
        load_onnx(fake)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda f: open_model(f, backend="tensorrt"), r"unknown backend 'tensorrt'; choose one of: torch, onnxruntime\."),
        (lambda f: open_model(f, backend="torch"), "is an ONNX file: run it with the onnxruntime backend"),
        (lambda f: open_model(f.with_name("none.onnx")), "ONNX file .*none.onnx does not exist"),
        (lambda f: load_onnx(f, threads=0), "threads must be at least 1"),
    ],
)
def test_bad_backend_requests_are_one_sentence(onnx_file, call, message):
    with pytest.raises(CovidlensError, match=message):
        call(onnx_file)


def test_export_refuses_an_output_that_is_not_onnx(onnx_file, tmp_path):
    with pytest.raises(CovidlensError, match=r"must end in \.onnx"):
        export_onnx(onnx_file.parent, tmp_path / "model.bin")


def test_missing_onnxruntime_is_one_sentence(onnx_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now fails as if not installed
    with pytest.raises(CovidlensError, match=r"needs the onnxruntime package; install it with 'pip install onnxruntime'"):
        open_model(onnx_file)


def test_onnx_model_is_called_like_the_module(onnx_file):
    model = load_onnx(onnx_file)
    assert isinstance(model, OnnxModel) and model.info.positive_class == "COVID"
    out = model(torch.randn(5, 3, SIZE, SIZE).to(memory_format=torch.channels_last))
    assert out.shape == (5, 1) and out.dtype == torch.float32
