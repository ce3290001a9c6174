"""Experiment configuration: every knob of a training run, with seed 000's defaults.

A run is described by one YAML file (``configs/*.yaml``) whose sections mirror :class:`TrainConfig`;
missing keys take the defaults below, unknown keys are an error, and any key can be overridden from the
command line as ``--set section.key=value``. The resolved configuration is written next to the run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from covidlens.errors import CovidlensError
from covidlens.kinds import MODALITIES


@dataclass
class DataConfig:
    #: A registered data set name (``covid-ct``), a folder of class folders, or a CSV table.
    dataset: str = "covid-ct"
    #: Data root holding the registered sets; ``null`` means ``$COVIDLENS_DATA``.
    root: str | None = None
    num_workers: int = 0
    #: Use only this many training images per class (quick tests; for a segmentation set, the first
    #: this many training slices); ``null`` uses all.
    limit_per_class: int | None = None
    #: The class whose probability is the score and whose sensitivity the operating point targets;
    #: ``null`` takes the data set's (COVID-CT: ``COVID``). Two-class data needs one.
    positive_class: str | None = None
    #: ``ct`` or ``cxr``, recorded in the checkpoint; ``null`` takes the data set's.
    modality: str | None = None
    #: Segmentation sets without a validation split (MedSeg): this many training slices (whole groups,
    #: chosen by SHA-256 of seed and group, see ``carve_validation``) are held out to pick the best epoch.
    val_slices: int = 10
    #: What of each image the classifier sees (recorded in the checkpoint's preprocessing): ``whole``,
    #: or ``body``: the body cut out, its surroundings black (covidlens.data.body; removes figure
    #: margins, text and the table, which are source cues in COVID-CT).
    region: str = "whole"
    #: Chest X-ray stage 2: ``raw``, or ``masked`` / ``cropped`` when the table's images were lung-masked
    #: by a lung model first (recorded, so that the screen road masks the same way).
    lungs: str = "raw"


@dataclass
class ModelConfig:
    name: str = "efficientnet_lite0"
    pretrained: bool = True
    #: Square input side in pixels; ``null`` takes the model's registered size.
    input_size: int | None = None
    #: Extra keyword arguments for the model builder (e.g. ``dropout``).
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    #: ``adam`` (seed 000) or ``adamw``.
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 16
    epochs: int = 30
    #: ``cosine`` (one half-cosine over the run after warm-up), ``cosine_restarts`` (period
    #: ``cosine_period`` epochs, seed 000), or ``constant``.
    scheduler: str = "cosine"
    cosine_period: int = 10
    warmup_epochs: int = 0
    label_smoothing: float = 0.0


@dataclass
class AugmentConfig:
    crop_scale: float = 0.5
    hflip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    rotation: float = 0.0
    translate: float = 0.0
    #: Std of Gaussian noise added after normalisation; 0 disables it.
    noise_std: float = 0.0
    #: Batch-level mixing: ``none``, ``mixup``, ``cutmix`` or ``mosaic`` (see covidlens.data.mixing),
    #: applied to a batch with probability ``mixing_prob``; ``mixing_alpha`` is the Beta parameter.
    mixing: str = "none"
    mixing_alpha: float = 1.0
    mixing_prob: float = 0.0
    #: Share of training images re-encoded as JPEG at a random quality in ``jpeg_quality`` (PNG vs
    #: JPEG is a source cue in COVID-CT); 0 disables it.
    jpeg_prob: float = 0.0
    jpeg_quality: list[int] = field(default_factory=lambda: [60, 95])
    #: Share of training images shrunk by a factor from [``downscale_min``, 1] before the crop (the
    #: classes of COVID-CT differ in resolution); 0 disables it.
    downscale_prob: float = 0.0
    downscale_min: float = 0.5


@dataclass
class EvalConfig:
    #: Average the predictions of the image and its horizontal mirror.
    tta: bool = False
    #: Sensitivity the validation-chosen operating point must reach.
    target_sensitivity: float = 0.95
    #: Fit a calibration temperature on the validation split and store it in the checkpoint (classifiers;
    #: skipped when that split has fewer than ``covidlens.evaluation.calibration.MIN_FIT_IMAGES`` images
    #: or one class only).
    calibrate: bool = True
    #: Which validation metric picks the best epoch: ``val_auc``, ``val_acc`` or ``val_loss`` for a
    #: classifier, ``val_dice`` or ``val_loss`` for a segmenter; ``null`` takes the task's own
    #: (``val_auc``, ``val_dice``).
    monitor: str | None = None


@dataclass
class SegmentConfig:
    """Segmentation only (the task comes from the data set: ``data.dataset=medseg-infnet``)."""

    #: MONAI loss on softmax outputs: ``dicece`` (Dice + cross-entropy), ``dice`` or ``ce``.
    loss: str = "dicece"
    #: Count the background class in the Dice loss (the validation Dice never counts it).
    include_background: bool = False


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: str | int = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    #: Lightning precision string: ``32-true``, ``bf16-mixed`` or ``16-mixed`` (GPU).
    precision: str = "32-true"
    #: NHWC memory layout; about 1.5x faster training of EfficientNet-Lite0 on x86 CPUs.
    channels_last: bool = True
    out_dir: str = "runs"


@dataclass
class TrainConfig:
    name: str = "covid_ct_efficientnet_lite0"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """The config a nested mapping describes (what :meth:`to_dict` or a YAML file gives): missing keys
        take the defaults, values are converted to the declared types, unknown keys and misspelt choices
        are refused with one sentence."""
        config = _build(cls, values, "")
        _check_choices(config)
        return config


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """YAML reads '3e-4' as a string and '5' where 5.0 is meant: convert to the declared type."""
    if value is None:
        return None
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    wanted = [t for t in typing.get_args(hint) if t is not type(None)] if union else [hint]
    if type(value) in wanted or Any in wanted:
        return value
    for kind in wanted:
        try:
            if kind is float and not isinstance(value, bool):
                return float(value)
            if kind is int and not isinstance(value, bool) and float(value) == int(float(value)):
                return int(float(value))
            if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
        except (TypeError, ValueError):
            continue
    if str in wanted:
        return str(value)
    if any(typing.get_origin(k) is dict for k in wanted) and isinstance(value, dict):
        return value
    for kind in wanted:
        if typing.get_origin(kind) is list and isinstance(value, (list, tuple)):
            (item,) = typing.get_args(kind)
            return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    raise CovidlensError(f"config key {key} must be {' or '.join(getattr(k, '__name__', str(k)) for k in wanted)}, got {value!r}.")


def _build(cls, values: dict[str, Any], where: str):
    if not isinstance(values, dict):
        raise CovidlensError(f"config section {where or 'top level'!r} must be a mapping.")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise CovidlensError(
            f"unknown config key {where + '.' if where else ''}{unknown[0]}; "
            f"valid keys here: {', '.join(sorted(known))}."
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else key
        sub = known[key].default_factory if known[key].default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            kwargs[key] = _build(sub, value or {}, dotted)
        else:
            kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def _set_path(values: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise CovidlensError(f"cannot set {dotted}: {part} is not a section.")
    node[parts[-1]] = value


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, values_by_key: dict[str, Any] | None = None
) -> TrainConfig:
    """Read a YAML config (or start from the defaults), apply ``section.key=value`` overrides (values
    parsed as YAML), then ``values_by_key`` ({"section.key": value}, taken as they are)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CovidlensError(f"config file {path} does not exist.")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CovidlensError(f"config file {path} is not valid YAML ({exc}).") from exc
    for item in overrides or []:
        if "=" not in item:
            raise CovidlensError(f"override {item!r} must look like section.key=value.")
        key, raw = item.split("=", 1)
        _set_path(values, key.strip(), yaml.safe_load(raw.strip()) if raw.strip() != "" else None)
    for key, value in (values_by_key or {}).items():
        _set_path(values, key, value)
    return TrainConfig.from_dict(values)


_CHOICES = {
    "optim.optimizer": ("adam", "adamw"),
    "optim.scheduler": ("cosine", "cosine_restarts", "constant"),
    "augment.mixing": ("none", "mixup", "cutmix", "mosaic"),
    "eval.monitor": (None, "val_auc", "val_loss", "val_acc", "val_dice"),
    "segment.loss": ("dicece", "dice", "ce"),
    "data.modality": (None, *MODALITIES),
    "data.region": ("whole", "body"),
    "data.lungs": ("raw", "masked", "cropped"),
}


def _check_choices(config: TrainConfig) -> None:
    """Refuse misspelt choices and impossible numbers before any training starts."""
    for dotted, allowed in _CHOICES.items():
        section, key = dotted.split(".")
        value = getattr(getattr(config, section), key)
        if value not in allowed:
            raise CovidlensError(f"config key {dotted} is {value!r}; choose one of {', '.join(str(a) for a in allowed if a)}.")
    o = config.optim
    if o.epochs < 1 or o.batch_size < 1 or o.lr <= 0:
        raise CovidlensError("optim.epochs and optim.batch_size must be at least 1 and optim.lr above 0.")
    a = config.augment
    if not 0.0 <= a.mixing_prob <= 1.0 or not 0.0 <= a.hflip <= 1.0 or not 0.0 < a.crop_scale <= 1.0:
        raise CovidlensError("augment.mixing_prob and augment.hflip must lie in [0, 1], augment.crop_scale in (0, 1].")
    if not 0.0 <= a.jpeg_prob <= 1.0 or not (
        isinstance(a.jpeg_quality, list) and len(a.jpeg_quality) == 2
        and all(isinstance(q, int) and 1 <= q <= 100 for q in a.jpeg_quality) and a.jpeg_quality[0] <= a.jpeg_quality[1]
    ):
        raise CovidlensError("augment.jpeg_prob must lie in [0, 1] and augment.jpeg_quality be [low, high] with 1 <= low <= high <= 100.")
    if not 0.0 <= a.downscale_prob <= 1.0 or not 0.0 < a.downscale_min <= 1.0:
        raise CovidlensError("augment.downscale_prob must lie in [0, 1] and augment.downscale_min in (0, 1].")
    if a.mixing_alpha <= 0:
        raise CovidlensError("augment.mixing_alpha is the Beta parameter of MixUp and CutMix and must be above 0.")
    if not 0.0 < config.eval.target_sensitivity <= 1.0 or not 0.0 <= o.label_smoothing < 1.0:
        raise CovidlensError("eval.target_sensitivity must lie in (0, 1] and optim.label_smoothing in [0, 1).")
    if (config.model.input_size is not None and config.model.input_size < 16) or config.data.num_workers < 0:
        raise CovidlensError("model.input_size must be at least 16 pixels and data.num_workers at least 0.")
    if config.data.val_slices < 1:
        raise CovidlensError("data.val_slices must be at least 1: the best epoch is chosen on validation slices.")


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
