"""The one registry of models, for every task.

A model file defines an ``nn.Module`` and registers a builder with :func:`register_model`; users and the
rest of covidlens reach every model through :func:`create_model`. Each entry also records what the
rest of the system needs to know about the model without building it: the task it solves and the
image modalities it is meant for, the input size it was designed for, the normalisation its
pretrained weights expect, and the layer that class-activation methods should look at by default.

A builder lists every keyword argument it takes in its signature (no ``**kwargs``), so that
:func:`model_arguments` can tell, before anything is built, which ``model_kwargs`` a configuration or
a checkpoint may carry, and :func:`create_model` can refuse a misspelt one with a sentence instead of
a ``TypeError`` from deep inside a constructor.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Iterable

from torch import nn

from covidlens.errors import CovidlensError
from covidlens.kinds import MODALITIES, TASKS

#: Registry names that were renamed, old -> new, so that checkpoints written under an old name can be
#: mapped by whoever reads them. The UNet-family classifiers were renamed when the registry started
#: holding segmentation models, so that ``unet`` cannot be mistaken for a segmentation network.
LEGACY_NAMES: dict[str, str] = {
    "unet": "unet_classifier",
    "resunet": "resunet_classifier",
    "resunet_ecsa": "resunet_ecsa_classifier",
    "resunet_fprm": "resunet_fprm_classifier",
    "dresunet": "dresunet_classifier",
}

#: Arguments every builder takes and :func:`create_model` passes itself.
_COMMON_ARGUMENTS = ("num_classes", "pretrained")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    #: Square input side the model was designed or pretrained at, in pixels.
    input_size: int = 224
    #: Per-channel mean and std applied after scaling pixels to [0, 1].
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    #: Dotted module path of the last convolutional feature map, for CAM-type explanations.
    target_layer: str = ""
    #: Where ImageNet weights come from, or "" when the model is trained from scratch only.
    pretrained_source: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    #: What the model's outputs mean: one of :data:`TASKS`.
    task: str = "classification"
    #: The image modalities (:data:`MODALITIES`) the model is meant for.
    modalities: tuple[str, ...] = MODALITIES
    #: Maps a state-dict key written by an earlier layout of the model to today's key (None: the
    #: layout never changed). :func:`upgrade_keys` applies it.
    legacy_key: Callable[[str], str] | None = None


_REGISTRY: dict[str, ModelSpec] = {}


def _check_builder(name: str, builder: Callable[..., nn.Module]) -> None:
    """Refuse, at import time, builders whose arguments :func:`model_arguments` could not list."""
    params = inspect.signature(builder).parameters
    missing = [a for a in _COMMON_ARGUMENTS if a not in params]
    if missing:
        raise ValueError(f"builder of model {name!r} must take {' and '.join(missing)}")
    hidden = [p.name for p in params.values() if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if hidden:
        raise ValueError(f"builder of model {name!r} must list its arguments instead of *{hidden[0]}")


def register_model(
    name: str,
    *,
    description: str,
    task: str = "classification",
    modalities: tuple[str, ...] = MODALITIES,
    input_size: int = 224,
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
    std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    target_layer: str = "",
    pretrained_source: str = "",
    tags: tuple[str, ...] = (),
    legacy_key: Callable[[str], str] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that adds a builder ``fn(num_classes, pretrained, <its own keyword arguments>)``.

    The builder must name every argument it accepts (no ``**kwargs``); ``task`` must be one of
    :data:`TASKS` and ``modalities`` a non-empty subset of :data:`MODALITIES`.
    """
    if task not in TASKS:
        raise ValueError(f"model {name!r}: task must be one of {TASKS}, got {task!r}")
    modalities = tuple(modalities)
    if not modalities or not set(modalities) <= set(MODALITIES):
        raise ValueError(f"model {name!r}: modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
    if name in LEGACY_NAMES:
        raise ValueError(f"model name {name!r} is the old name of {LEGACY_NAMES[name]!r}")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _check_builder(name, builder)
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            description=description,
            input_size=input_size,
            mean=mean,
            std=std,
            target_layer=target_layer,
            pretrained_source=pretrained_source,
            tags=tuple(tags),
            task=task,
            modalities=modalities,
            legacy_key=legacy_key,
        )
        return builder

    return decorate


def _choice(value: str | None, choices: tuple[str, ...], what: str) -> None:
    if value is not None and value not in choices:
        raise CovidlensError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}.")


def list_models(pretrained: bool | None = None, task: str | None = None, modality: str | None = None) -> list[str]:
    """Names of the registered models, sorted, optionally filtered.

    ``pretrained=True`` keeps those with ImageNet weights (``False`` those without), ``task`` those
    registered for that task, ``modality`` those meant for that modality.
    """
    _choice(task, TASKS, "task")
    _choice(modality, MODALITIES, "modality")
    specs = [_REGISTRY[n] for n in sorted(_REGISTRY)]
    return [
        s.name
        for s in specs
        if (pretrained is None or bool(s.pretrained_source) == pretrained)
        and (task is None or s.task == task)
        and (modality is None or modality in s.modalities)
    ]


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        if name in LEGACY_NAMES:
            raise CovidlensError(
                f"model {name!r} is now called {LEGACY_NAMES[name]!r}; use the new name "
                "(checkpoints can be mapped with covidlens.models.LEGACY_NAMES)."
            ) from None
        raise CovidlensError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}.") from None


def model_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments model ``name`` takes besides ``num_classes`` and ``pretrained``, in the
    builder's order, with their defaults: exactly what ``model_kwargs`` may hold for it."""
    params = inspect.signature(get_model_spec(name).builder).parameters
    return {k: p for k, p in params.items() if k not in _COMMON_ARGUMENTS}


def upgrade_keys(name: str, keys: Iterable[str]) -> dict[str, str]:
    """``{stored key: key in today's model}`` for the state-dict keys of a checkpoint of model ``name``.

    Keys that never changed map to themselves. A checkpoint reader compares the mapped names with the
    model it is about to build and renames the tensors before ``load_state_dict(strict=True)``.
    """
    rename = get_model_spec(name).legacy_key
    return {key: rename(key) if rename else key for key in keys}


def create_model(name: str, num_classes: int = 1, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a registered model with ``num_classes`` outputs.

    A binary classifier (COVID vs not) uses ``num_classes=1``: one logit whose sigmoid is P(COVID).
    ``pretrained=True`` loads ImageNet weights into everything but the new head. ``kwargs`` are the
    model's own options (:func:`model_arguments`); any other name is refused before anything is built.
    """
    spec = get_model_spec(name)
    if num_classes < 1:
        raise CovidlensError(f"num_classes must be at least 1, got {num_classes}.")
    if pretrained and not spec.pretrained_source:
        raise CovidlensError(
            f"model {name!r} has no pretrained weights; train it from scratch (pretrained: false)."
        )
    accepted = model_arguments(name)
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        takes = (
            f"it takes {', '.join(accepted)}" if accepted else "it takes no arguments besides num_classes and pretrained"
        )
        noun = "argument" if len(unknown) == 1 else "arguments"
        raise CovidlensError(f"model {name!r} has no {noun} {', '.join(map(repr, unknown))}; {takes}.")
    return spec.builder(num_classes=num_classes, pretrained=pretrained, **kwargs)
