"""The one registry of classification models.

A model file defines an ``nn.Module`` and registers a builder with :func:`register_model`; users and the
rest of covidlens reach every model through :func:`create_model`. Each entry also records what the
rest of the system needs to know about the model without building it: the input size it was designed
for, the normalisation its pretrained weights expect, and the layer that class-activation methods
should look at by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from covidlens.errors import CovidlensError


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


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    description: str,
    input_size: int = 224,
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
    std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    target_layer: str = "",
    pretrained_source: str = "",
    tags: tuple[str, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that adds a builder ``fn(num_classes, pretrained, **kwargs) -> nn.Module``."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            description=description,
            input_size=input_size,
            mean=mean,
            std=std,
            target_layer=target_layer,
            pretrained_source=pretrained_source,
            tags=tags,
        )
        return builder

    return decorate


def list_models(pretrained: bool | None = None) -> list[str]:
    """Names of every registered model, sorted; ``pretrained=True`` keeps those with ImageNet weights."""
    names = sorted(_REGISTRY)
    if pretrained is None:
        return names
    return [n for n in names if bool(_REGISTRY[n].pretrained_source) == pretrained]


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CovidlensError(
            f"unknown model {name!r}; choose one of: {', '.join(list_models())}."
        ) from None


def create_model(name: str, num_classes: int = 1, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a registered model with ``num_classes`` output logits.

    A binary task (COVID vs not) uses ``num_classes=1``: one logit whose sigmoid is P(COVID).
    ``pretrained=True`` loads ImageNet weights into everything but the new classifier head.
    """
    spec = get_model_spec(name)
    if num_classes < 1:
        raise CovidlensError(f"num_classes must be at least 1, got {num_classes}.")
    if pretrained and not spec.pretrained_source:
        raise CovidlensError(
            f"model {name!r} has no pretrained weights; train it from scratch (pretrained: false)."
        )
    try:
        return spec.builder(num_classes=num_classes, pretrained=pretrained, **kwargs)
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise CovidlensError(f"model {name!r} cannot be built with {kwargs}: {exc}.") from exc
