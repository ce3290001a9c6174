"""Checkpoints as ONNX files, and ONNX Runtime sessions that run them like the PyTorch model.

An exported model is two files: ``NAME.onnx`` (the graph and weights, one input ``image`` of shape
``batch x C x S x S`` with a dynamic batch and the checkpoint's fixed size S, one output ``logits``)
and the sidecar ``NAME.onnx.json``, the checkpoint's ``model.json`` unchanged: classes, positive
class, thresholds, normalisation. The sidecar is read with the same strict validation as a
checkpoint, so ``covidlens predict`` gives the same decisions from either.

Export goes through PyTorch's own exporter (``torch.onnx.export`` with ``dynamo=True``, which writes
torchvision's deformable convolution as ONNX ``DeformConv``); running goes through ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from covidlens.checkpoint import Checkpoint, ModelInfo, load_checkpoint, read_info
from covidlens.errors import CovidlensError

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
#: Largest difference between ONNX Runtime's and PyTorch's outputs that an export accepts.
EXPORT_TOLERANCE = 1e-3


def sidecar_path(onnx_path: str | Path) -> Path:
    """Where the model description of an ONNX file lives: ``NAME.onnx`` -> ``NAME.onnx.json``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + ".json")


def require_onnxruntime():
    """The ``onnxruntime`` module, or one sentence saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise CovidlensError(
            "the onnxruntime backend needs the onnxruntime package; install it with 'pip install onnxruntime'."
        ) from None
    return onnxruntime


def onnx_model(model: torch.nn.Module, input_size: int, in_channels: int = 3, name: str = "the model"):
    """``onnx.ModelProto`` of ``model`` in eval mode for ``in_channels x input_size x input_size``
    images, with a dynamic batch axis."""
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it, and says so less clearly)
    except ImportError:
        raise CovidlensError("ONNX export needs the onnx and onnxscript packages; install them with "
                             "'pip install onnx onnxscript'.") from None
    model = model.eval()
    device = next(model.parameters()).device
    example = torch.zeros(2, in_channels, input_size, input_size, device=device)
    # The exporter reports progress on stdout and warns about its own internals; a user sees neither.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                model, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), dynamo=True, external_data=False,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; each means "this graph does not export"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CovidlensError(f"{name} cannot be exported to ONNX ({reason}).") from exc
    return program.model_proto


def onnx_session(model: str | Path | bytes, threads: int | None = None, device: str = "cpu", where: str = "the model"):
    """An ONNX Runtime session on the CPU (``threads`` intra-op threads; None: one per core) or CUDA."""
    ort = require_onnxruntime()
    if device not in ("cpu", "cuda"):
        raise CovidlensError(f"unknown device {device!r}; choose cpu or cuda.")
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise CovidlensError("this onnxruntime has no CUDA provider; install onnxruntime-gpu or use the CPU.")
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise CovidlensError(f"threads must be at least 1, got {threads}.")
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers)
    except Exception as exc:  # onnxruntime's pybind errors share no useful base class
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CovidlensError(f"{where} is not an ONNX model that ONNX Runtime can run ({reason}).") from None


class OnnxModel:
    """An ONNX Runtime session called like the ``nn.Module`` it came from: a float32
    ``B x C x S x S`` tensor in, the logits tensor out (on the CPU), plus the model's description."""

    def __init__(self, session, info: ModelInfo, path: Path | None = None):
        self.session = session
        self.info = info
        self.path = path
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise CovidlensError(f"{path or 'the ONNX model'} takes {len(inputs)} inputs; a covidlens model "
                                 "takes one image batch.")
        shape = inputs[0].shape
        expected = [info.in_channels, info.input_size, info.input_size]
        if len(shape) != 4 or list(shape[1:]) != expected:
            raise CovidlensError(f"{path or 'the ONNX model'} takes images of shape {shape}, but its description "
                                 f"says batch x {' x '.join(map(str, expected))}.")
        self._input = inputs[0].name
        self.device = torch.device("cpu")

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {self._input: array})[0])


@dataclass
class ExportResult:
    onnx: Path
    sidecar: Path
    #: Largest |ONNX Runtime - PyTorch| over the outputs of a random batch, checked at export.
    max_abs_diff: float


def export_onnx(checkpoint: Checkpoint | str | Path, out: str | Path) -> ExportResult:
    """Write ``checkpoint`` as ``out`` (``.onnx``) and its description beside it, then run both
    PyTorch and ONNX Runtime on a random batch of two and refuse an export whose outputs differ by more
    than :data:`EXPORT_TOLERANCE`."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise CovidlensError(f"{out} must end in .onnx.")
    if not out.resolve().parent.is_dir():
        raise CovidlensError(f"cannot write {out}: its folder does not exist.")
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    info = ckpt.info
    proto = onnx_model(ckpt.model, info.input_size, info.in_channels, name=f"model {info.model!r}")
    data = proto.SerializeToString()
    session = onnx_session(data, where=f"the export of {info.model!r}")
    example = torch.randn(2, info.in_channels, info.input_size, info.input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = ckpt.model.eval()(example.to(next(ckpt.model.parameters()).device)).float().cpu()
    got = OnnxModel(session, info)(example)
    diff = float((got - expected).abs().max())
    if not diff <= EXPORT_TOLERANCE:
        raise CovidlensError(f"the ONNX export of {info.model!r} gives outputs {diff:.2g} away from PyTorch's "
                             f"(more than {EXPORT_TOLERANCE}); it is not written.")
    out.write_bytes(data)
    sidecar = sidecar_path(out)
    sidecar.write_text(json.dumps(asdict(info), indent=2) + "\n")
    return ExportResult(out, sidecar, diff)


def load_onnx(path: str | Path, threads: int | None = None, device: str = "cpu") -> OnnxModel:
    """An exported ``.onnx`` file and its ``.onnx.json`` description, ready to run."""
    path = Path(path)
    if not path.is_file():
        raise CovidlensError(f"ONNX file {path} does not exist.")
    meta = sidecar_path(path)
    if not meta.is_file():
        raise CovidlensError(f"{path} has no model description {meta.name} beside it; export it with 'covidlens export'.")
    info = read_info(meta)
    return OnnxModel(onnx_session(path, threads, device, where=str(path)), info, path)
