"""Trained-model files: weights as safetensors plus a small JSON that says how to use them.

A checkpoint is a folder holding ``model.safetensors`` and ``model.json``. The JSON (format version 2)
records everything a user of the weights needs and nothing that runs code: the task and modality, the
registry name and arguments of the architecture, the class names and the named positive class, the
input size, the normalisation and the preprocessing, and the operating points chosen on validation.

Loading is strict because a checkpoint may come from a stranger: every field of the JSON is checked
for its type and a sane range before anything is built, model arguments the architecture does not take
are refused, the architecture is first built on PyTorch's ``meta`` device (no memory) and its tensor
shapes compared with the safetensors header, and only then are real weights read. Version-1 files of
the first releases (binary CT classifiers) are read and upgraded in memory.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from covidlens.errors import CovidlensError
from covidlens.kinds import MODALITIES, TASKS

FORMAT = "covidlens-model/2"
FORMAT_V1 = "covidlens-classifier/1"
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"

#: Largest model.json read (a real one is about 1 kB).
MAX_META_BYTES = 1 << 20
#: Temperatures outside this range mean a broken fit or a hostile file, not a calibration.
TEMPERATURE_RANGE = (0.05, 20.0)
#: Bounds that keep a hostile model.json from asking for absurd tensors before anything is built.
MAX_INPUT_SIZE = 4096
MAX_CLASSES = 1000
MAX_PARAMETERS = 1_000_000_000

#: How pixels reach the network; checked on load so a checkpoint cannot ask for an unknown path.
#: ``intensity``: ``display`` is :func:`covidlens.data.intensity.display_image` (HU through the lung
#: window, 8-bit images as stored, raw DICOM through its own window, other raw values stretched);
#: ``region``: ``whole`` keeps the whole image, ``body`` blacks out everything around the body and cuts
#: the image to it (:mod:`covidlens.data.body`: figure margins, text and the scanner table go);
#: ``resize``: ``stretch`` resizes the (cut) image to a square; ``lungs`` (chest X-ray, seed 002's stage 2):
#: ``raw``, or ``masked`` / ``cropped`` when a lung model's mask was applied before this model, which the
#: screen road then applies too (:func:`covidlens.segmentation.lungs.apply_lungs`).
PREPROCESSING_CHOICES = {"intensity": ("display",), "region": ("whole", "body"), "resize": ("stretch",),
                         "lungs": ("raw", "masked", "cropped")}
DEFAULT_PREPROCESSING = {"intensity": "display", "region": "whole", "resize": "stretch", "lungs": "raw"}


@dataclass
class ModelInfo:
    model: str
    classes: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    task: str = "classification"
    modality: str = "ct"
    #: The class whose probability is "the" score (P(COVID)) and whose sensitivity the operating point
    #: targets; None for a K-class model without one.
    positive_class: str | None = None
    num_outputs: int = 1
    in_channels: int = 3
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PREPROCESSING))
    #: Decision threshold on P(positive class) used when none is asked for.
    threshold: float = 0.5
    #: Threshold chosen on the validation split to reach ``target_sensitivity`` (None if not chosen).
    sensitivity_threshold: float | None = None
    target_sensitivity: float | None = None
    tta: bool = False
    dataset: str = ""
    #: Temperature scaling: logits are divided by it before the sigmoid or softmax (1.0: uncalibrated).
    #: Fitted on the validation split only (:mod:`covidlens.evaluation.calibration`); the thresholds above
    #: are on the calibrated scale once it is set.
    temperature: float = 1.0
    #: Where ``temperature`` was fitted ("" while it is 1.0 and never fitted).
    calibration: str = ""
    format: str = FORMAT

    @property
    def positive_index(self) -> int | None:
        return self.classes.index(self.positive_class) if self.positive_class is not None else None

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2 and self.positive_class is not None


@dataclass
class Checkpoint:
    model: nn.Module
    info: ModelInfo
    path: Path


def save_checkpoint(model: nn.Module, info: ModelInfo, folder: str | Path) -> Path:
    validate_info(info, "the model description")
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


def _upgrade_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """A version-1 file described a binary CT classifier with ``positive_index``; name the class instead."""
    from covidlens.models.registry import LEGACY_NAMES

    raw = dict(raw)
    index = raw.pop("positive_index", 1)
    classes = raw.get("classes")
    if not isinstance(index, int) or not isinstance(classes, list) or not 0 <= index < len(classes):
        raise CovidlensError("its positive_index does not point at one of its classes")
    raw["positive_class"] = classes[index]
    raw["model"] = LEGACY_NAMES.get(raw.get("model"), raw.get("model"))
    raw["format"] = FORMAT
    return raw


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise CovidlensError(message)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_info(info: ModelInfo, where: str) -> None:
    """Every field has the right type and a sane value; one sentence naming the first that does not."""
    bad = f"{where} is not a valid covidlens model description:"
    _expect(isinstance(info.model, str) and info.model, f"{bad} 'model' must name a registered model.")
    _expect(info.task in TASKS, f"{bad} task {info.task!r} is not one of {', '.join(TASKS)}.")
    _expect(info.modality in MODALITIES, f"{bad} modality {info.modality!r} is not one of {', '.join(MODALITIES)}.")
    _expect(
        isinstance(info.classes, list) and 2 <= len(info.classes) <= MAX_CLASSES
        and all(isinstance(c, str) and c for c in info.classes) and len(set(info.classes)) == len(info.classes),
        f"{bad} 'classes' must be 2 to {MAX_CLASSES} distinct names.",
    )
    _expect(
        info.positive_class is None or info.positive_class in info.classes,
        f"{bad} positive class {info.positive_class!r} is not one of its classes.",
    )
    if info.task == "classification":
        expected = 1 if info.binary else len(info.classes)
        _expect(
            info.num_outputs == expected,
            f"{bad} {len(info.classes)} classes need {expected} output(s), it says {info.num_outputs!r}.",
        )
    else:
        _expect(
            isinstance(info.num_outputs, int) and 1 <= info.num_outputs <= MAX_CLASSES,
            f"{bad} num_outputs must be a whole number from 1 to {MAX_CLASSES}.",
        )
    _expect(
        isinstance(info.input_size, int) and not isinstance(info.input_size, bool) and 16 <= info.input_size <= MAX_INPUT_SIZE,
        f"{bad} input_size must be a whole number of pixels from 16 to {MAX_INPUT_SIZE}.",
    )
    _expect(info.in_channels in (1, 3), f"{bad} in_channels must be 1 or 3.")
    for name in ("mean", "std"):
        values = getattr(info, name)
        _expect(
            isinstance(values, list) and len(values) == info.in_channels and all(_number(v) for v in values),
            f"{bad} '{name}' must list {info.in_channels} finite numbers, one per input channel.",
        )
    _expect(all(v > 0 for v in info.std), f"{bad} every 'std' value must be above 0.")
    _expect(isinstance(info.model_kwargs, dict), f"{bad} 'model_kwargs' must be a mapping.")
    _expect(
        isinstance(info.preprocessing, dict)
        and set(info.preprocessing) == set(PREPROCESSING_CHOICES)
        and all(info.preprocessing[k] in v for k, v in PREPROCESSING_CHOICES.items()),
        f"{bad} 'preprocessing' must name {', '.join(PREPROCESSING_CHOICES)} with one of "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in PREPROCESSING_CHOICES.items()) + ".",
    )
    for name in ("threshold", "sensitivity_threshold", "target_sensitivity"):
        value = getattr(info, name)
        _expect(
            (value is None and name != "threshold") or (_number(value) and 0.0 <= value <= 1.0),
            f"{bad} '{name}' must lie between 0 and 1.",
        )
    _expect(isinstance(info.tta, bool), f"{bad} 'tta' must be true or false.")
    _expect(isinstance(info.dataset, str), f"{bad} 'dataset' must be a string.")
    low, high = TEMPERATURE_RANGE
    _expect(_number(info.temperature) and low <= info.temperature <= high,
            f"{bad} 'temperature' must be a number from {low:g} to {high:g}.")
    _expect(isinstance(info.calibration, str) and len(info.calibration) <= 500,
            f"{bad} 'calibration' must be a string of at most 500 characters.")
    _expect(info.format == FORMAT, f"{bad} format {info.format!r} is not {FORMAT!r}.")


def read_info(meta: Path) -> ModelInfo:
    """Parse and validate ``model.json``; version-1 files are upgraded."""
    if meta.stat().st_size > MAX_META_BYTES:
        raise CovidlensError(f"{meta} is larger than any covidlens model description ({MAX_META_BYTES} bytes at most).")
    try:
        raw = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CovidlensError(f"{meta} is not valid JSON ({exc}).") from exc
    if not isinstance(raw, dict):
        raise CovidlensError(f"{meta} must hold a JSON object.")
    version = raw.get("format")
    if version == FORMAT_V1:
        try:
            raw = _upgrade_v1(raw)
        except CovidlensError as exc:
            raise CovidlensError(f"{meta} is a version-1 description that cannot be read: {exc}.") from None
    elif version != FORMAT:
        raise CovidlensError(f"{meta} has format {version!r}; this covidlens reads {FORMAT!r} and {FORMAT_V1!r}.")
    known = {f.name for f in fields(ModelInfo)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CovidlensError(f"{meta} has unknown field {unknown[0]!r}; it was not written by this covidlens.")
    for name in ("model", "classes", "input_size", "mean", "std"):
        if name not in raw:
            raise CovidlensError(f"{meta} lacks the field {name!r}.")
    if isinstance(raw.get("preprocessing"), dict) and "region" not in raw["preprocessing"]:
        # Written before the region step existed: those models saw the whole image.
        raw["preprocessing"] = {**raw["preprocessing"], "region": "whole"}
    if isinstance(raw.get("preprocessing"), dict) and "lungs" not in raw["preprocessing"]:
        # Written before the lungs step was recorded: stage-2 inputs were not marked, read as raw.
        raw["preprocessing"] = {**raw["preprocessing"], "lungs": "raw"}
    info = ModelInfo(**raw)
    validate_info(info, str(meta))
    return info


def _check_architecture(info: ModelInfo, weights: Path, meta: Path):
    """Refuse unknown model arguments and weights of the wrong shape before allocating anything."""
    from covidlens.models import create_model, get_model_spec, model_arguments, upgrade_keys

    spec = get_model_spec(info.model)
    if spec.task != info.task:
        raise CovidlensError(f"{meta} says task {info.task!r} but model {info.model!r} is a {spec.task} model.")
    accepted = model_arguments(info.model)
    for key in info.model_kwargs:
        if key not in accepted or key in ("num_classes", "pretrained"):
            raise CovidlensError(f"{meta} passes {key!r} to model {info.model!r}, which takes no such argument.")
    try:
        with torch.device("meta"):
            skeleton = create_model(info.model, num_classes=info.num_outputs, pretrained=False, **info.model_kwargs)
    except CovidlensError:
        raise
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CovidlensError(f"{meta} describes a model {info.model!r} that cannot be built ({exc}).") from exc
    count = sum(p.numel() for p in skeleton.parameters())
    if count > MAX_PARAMETERS:
        raise CovidlensError(f"{meta} describes a model of {count:,} parameters, more than covidlens loads.")
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    try:
        with safe_open(str(weights), framework="pt") as handle:
            renamed = upgrade_keys(info.model, handle.keys())
            stored = {renamed[k]: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise CovidlensError(f"{weights} is not a readable safetensors file ({exc}).") from exc
    if stored != expected:
        extra, absent = sorted(set(stored) - set(expected)), sorted(set(expected) - set(stored))
        shape = [k for k in expected if k in stored and stored[k] != expected[k]]
        detail = (f"unexpected tensor {extra[0]}" if extra else f"missing tensor {absent[0]}" if absent
                  else f"tensor {shape[0]} has shape {stored[shape[0]]}, the model needs {expected[shape[0]]}")
        raise CovidlensError(f"{weights} does not match model {info.model!r} described in {meta} ({detail}).")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint folder (or its ``model.safetensors``) into an eval-mode model."""
    from covidlens.models import create_model

    path = Path(path)
    if not path.exists():
        raise CovidlensError(f"checkpoint {path} does not exist.")
    folder = _resolve(path)
    weights, meta = folder / WEIGHTS_NAME, folder / META_NAME
    if not weights.is_file() or not meta.is_file():
        raise CovidlensError(f"{folder} must hold both {WEIGHTS_NAME} and {META_NAME}.")
    info = read_info(meta)
    _check_architecture(info, weights, meta)
    model = create_model(info.model, num_classes=info.num_outputs, pretrained=False, **info.model_kwargs)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CovidlensError(f"{weights} is not a readable safetensors file ({exc}).") from exc
    from covidlens.models import upgrade_keys

    renamed = upgrade_keys(info.model, state)
    model.load_state_dict({renamed[k]: v for k, v in state.items()}, strict=True)
    return Checkpoint(model.to(device).eval(), info, folder)
