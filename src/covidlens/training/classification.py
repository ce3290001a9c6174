"""Classifier training: the task's three pieces for :func:`covidlens.training.fit.train`.

:func:`build_datamodule` (augmented images of a classification set), :func:`build_module` (a
:class:`~covidlens.training.module.ClassifierModule` with one logit for two classes, K for K) and
:func:`export` (safetensors with its description and the operating point chosen on validation), the
same three that :mod:`covidlens.training.segmentation` provides for segmenters.
"""

from __future__ import annotations

from pathlib import Path

from covidlens.checkpoint import DEFAULT_PREPROCESSING, Checkpoint, ModelInfo, save_checkpoint
from covidlens.data.datamodule import ClassificationDataModule
from covidlens.data.datasets import SampleTable
from covidlens.data.mixing import MixingCollate
from covidlens.data.transforms import EvalPreset, TrainPreset
from covidlens.errors import CovidlensError
from covidlens.evaluation.operating_points import choose_for_sensitivity
from covidlens.evaluation.calibration import fit_validation_temperature
from covidlens.inference import class_probabilities
from covidlens.models import get_model_spec
from covidlens.training.config import TrainConfig
from covidlens.training.module import ClassifierModule, Prepared


def resolve_positive_class(config: TrainConfig, table: SampleTable) -> str | None:
    """The positive class is named by the config or the data set, never taken from a position.

    A two-class task needs one (its single logit is P(positive class)); a K-class task may have none.
    """
    chosen = config.data.positive_class or table.positive_class
    if chosen is not None and chosen not in table.classes:
        raise CovidlensError(
            f"positive class {chosen!r} is not a class of {table.name!r} ({', '.join(table.classes)}); "
            "set data.positive_class to one of them."
        )
    if chosen is None and len(table.classes) == 2:
        raise CovidlensError(
            f"data set {table.name!r} has two classes ({', '.join(table.classes)}) and none is named positive; "
            "set data.positive_class (e.g. --set data.positive_class=" + table.classes[-1] + ")."
        )
    return chosen


def input_channels(config: TrainConfig, spec) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Channels the network reads (its ``in_channels`` argument, 3 when it has none) and the
    registered normalisation cut to that many channels (a 1-channel model gets the grey image)."""
    channels = int(config.model.kwargs.get("in_channels", 3))
    return channels, tuple(spec.mean[:channels]), tuple(spec.std[:channels])


def build_datamodule(config: TrainConfig, table: SampleTable) -> Prepared:
    """The classification task's data step, after refusing settings that cannot train a classifier."""
    spec = get_model_spec(config.model.name)
    size = config.model.input_size or spec.input_size
    if spec.task != "classification":
        raise CovidlensError(
            f"model {config.model.name!r} is a {spec.task} model; data set {table.name!r} needs a classifier."
        )
    if table.task != "classification":
        raise CovidlensError(f"data set {table.name!r} is a {table.task} set; a classifier trains on a classification set.")
    if config.eval.monitor == "val_dice":
        raise CovidlensError("eval.monitor val_dice is a segmentation metric; a classifier uses val_auc, val_acc or val_loss.")
    channels, mean, std = input_channels(config, spec)
    train_tf = TrainPreset.from_config(config.augment, size, mean, std, channels, config.data.region)
    eval_tf = EvalPreset(size, mean, std, channels, config.data.region)
    a = config.augment
    collate = None
    if a.mixing != "none" and a.mixing_prob > 0:
        collate = MixingCollate(max(len(table.classes), 2), a.mixing, a.mixing_prob, a.mixing_alpha, seed=config.seed)
    dm = ClassificationDataModule(
        table, train_tf, eval_tf, config.optim.batch_size, config.data.num_workers, config.data.limit_per_class,
        collate,
    )
    positive = resolve_positive_class(config, table)
    num_outputs = 1 if len(table.classes) == 2 else len(table.classes)
    return Prepared(dm, table, spec, size, {"positive": positive, "num_outputs": num_outputs})


def build_module(config: TrainConfig, prepared: Prepared) -> ClassifierModule:
    """The classification task's Lightning module."""
    positive, classes = prepared.extra["positive"], prepared.table.classes
    return ClassifierModule(config.to_dict(), prepared.extra["num_outputs"], classes.index(positive) if positive else None)


def export(module: ClassifierModule, config: TrainConfig, prepared: Prepared, folder: Path) -> Checkpoint:
    """Save the network as safetensors with its description and the validation-chosen threshold."""
    table, positive = prepared.table, prepared.extra["positive"]
    model = module.model.cpu().eval()
    channels, mean, std = input_channels(config, prepared.spec)
    info = ModelInfo(
        model=config.model.name,
        task="classification",
        modality=config.data.modality or table.modality,
        classes=list(table.classes),
        positive_class=positive,
        input_size=prepared.size,
        mean=list(mean),
        std=list(std),
        in_channels=channels,
        num_outputs=prepared.extra["num_outputs"],
        model_kwargs=dict(config.model.kwargs),
        preprocessing={**DEFAULT_PREPROCESSING, "region": config.data.region,
                       "lungs": config.data.lungs},
        tta=config.eval.tta,
        dataset=config.data.dataset,
        target_sensitivity=config.eval.target_sensitivity,
    )
    ckpt = Checkpoint(model, info, folder)
    val = prepared.datamodule.dataset("val").samples
    if config.eval.calibrate:
        fit_validation_temperature(ckpt, val, config.data.dataset)
    if positive is not None:
        prob = class_probabilities(ckpt, val, tta=config.eval.tta)[:, info.positive_index]
        y = [int(s.label == info.positive_index) for s in val]
        if any(y):  # a validation split without positives cannot set a sensitivity threshold
            info.sensitivity_threshold = choose_for_sensitivity(y, prob, config.eval.target_sensitivity)
    save_checkpoint(model, info, folder)
    return ckpt
