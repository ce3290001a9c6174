"""Trained-model files: weights as safetensors plus a small JSON that says how to use them.

A checkpoint is a folder holding ``model.safetensors`` and ``model.json`` (the model's registry name,
classes, input size, normalisation and operating points). Nothing is unpickled when loading, so a
checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from covidlens.errors import CovidlensError
from covidlens.models import create_model

FORMAT = "covidlens-classifier/1"
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"


@dataclass
class ModelInfo:
    model: str
    classes: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    num_outputs: int = 1
    positive_index: int = 1
    in_channels: int = 3
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Decision threshold on P(positive class) used when none is asked for.
    threshold: float = 0.5
    #: Threshold chosen on the validation split to reach ``target_sensitivity`` (None if not chosen).
    sensitivity_threshold: float | None = None
    target_sensitivity: float | None = None
    tta: bool = False
    dataset: str = ""
    format: str = FORMAT


@dataclass
class Checkpoint:
    model: nn.Module
    info: ModelInfo
    path: Path


def save_checkpoint(model: nn.Module, info: ModelInfo, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME))
    (folder / META_NAME).write_text(json.dumps(asdict(info), indent=2) + "\n")
    return folder


def _resolve(path: Path) -> Path:
    if path.is_dir():
        return path
    if path.name in (WEIGHTS_NAME, META_NAME):
        return path.parent
    raise CovidlensError(
        f"{path} is not a covidlens checkpoint; pass the folder that holds {WEIGHTS_NAME} and {META_NAME}."
    )


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint folder (or its ``model.safetensors``) into an eval-mode model."""
    path = Path(path)
    if not path.exists():
        raise CovidlensError(f"checkpoint {path} does not exist.")
    folder = _resolve(path)
    weights, meta = folder / WEIGHTS_NAME, folder / META_NAME
    if not weights.is_file() or not meta.is_file():
        raise CovidlensError(f"{folder} must hold both {WEIGHTS_NAME} and {META_NAME}.")
    try:
        raw = json.loads(meta.read_text())
        info = ModelInfo(**raw)
    except (json.JSONDecodeError, TypeError) as exc:
        raise CovidlensError(f"{meta} is not a valid covidlens model description ({exc}).") from exc
    if info.format != FORMAT:
        raise CovidlensError(f"{meta} has format {info.format!r}; this covidlens reads {FORMAT!r}.")
    model = create_model(info.model, num_classes=info.num_outputs, pretrained=False, **info.model_kwargs)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CovidlensError(f"{weights} is not a readable safetensors file ({exc}).") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CovidlensError(
            f"{weights} does not match model {info.model!r} described in {meta}."
        ) from exc
    return Checkpoint(model.to(device).eval(), info, folder)
