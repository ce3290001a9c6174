"""One way in for every engine that runs a classifier or segmenter: :func:`open_model`."""

from __future__ import annotations

from pathlib import Path

import torch

from covidlens.checkpoint import Checkpoint, load_checkpoint
from covidlens.errors import CovidlensError
from covidlens.runtime.onnx import OnnxModel, load_onnx, onnx_model, onnx_session, require_onnxruntime

#: Engines a model can run on: eager PyTorch, or ONNX Runtime.
BACKENDS = ("torch", "onnxruntime")


def check_backend(backend: str | None) -> None:
    if backend is not None and backend not in BACKENDS:
        raise CovidlensError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}.")


def open_model(
    source: Checkpoint | OnnxModel | str | Path,
    backend: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> Checkpoint | OnnxModel:
    """A model ready to run: a :class:`Checkpoint` for ``torch``, an :class:`OnnxModel` for ``onnxruntime``.

    ``source`` is a checkpoint folder (or a loaded :class:`Checkpoint`) or an exported ``.onnx`` file.
    ``backend`` None picks the engine the source is for. A checkpoint asked to run on
    ``onnxruntime`` is exported in memory first (seconds; ``covidlens export`` saves that once).
    ``device`` and ``threads`` apply to what is loaded or built here; a loaded Checkpoint stays where it is.
    """
    check_backend(backend)
    if isinstance(source, OnnxModel):
        if backend == "torch":
            raise CovidlensError("an ONNX model runs on the onnxruntime backend; pass its checkpoint folder for torch.")
        return source
    if not isinstance(source, Checkpoint) and Path(source).suffix.lower() == ".onnx":
        if backend == "torch":
            raise CovidlensError(f"{source} is an ONNX file: run it with the onnxruntime backend, or pass the "
                                 "checkpoint folder it was exported from.")
        return load_onnx(source, threads, device)
    if device == "cuda" and backend != "onnxruntime" and not torch.cuda.is_available():
        raise CovidlensError("no CUDA device is available to PyTorch here; use the CPU.")
    if backend == "onnxruntime":
        require_onnxruntime()  # before the export, which takes seconds
    where = "cpu" if backend == "onnxruntime" else device  # ONNX Runtime exports from the CPU copy
    ckpt = source if isinstance(source, Checkpoint) else load_checkpoint(source, where)
    if backend != "onnxruntime":
        return ckpt
    info = ckpt.info
    proto = onnx_model(ckpt.model, info.input_size, info.in_channels, name=f"model {info.model!r}")
    return OnnxModel(onnx_session(proto.SerializeToString(), threads, device, where=str(ckpt.path)), info, ckpt.path)
