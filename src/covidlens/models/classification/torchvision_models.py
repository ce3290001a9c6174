"""ResNet18/50, DenseNet121 and MobileNetV2 from torchvision, with a new classifier head.

ImageNet weights come from torchvision's published files. They are read from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``) when present and downloaded (hash-checked) otherwise; loading uses
``weights_only=True``. Offline users get a sentence saying which file to place where.

The builders take no options besides ``num_classes`` and ``pretrained``: torchvision's constructor
options either break the ImageNet weights (``width_mult``) or are not plain values that a checkpoint's
JSON could record (``norm_layer``, ``block``).
"""

from __future__ import annotations

import os
from typing import Callable
from urllib.error import URLError

import torch
import torchvision
from torch import nn

from covidlens.errors import CovidlensError
from covidlens.models.registry import register_model


def _imagenet_state_dict(weights: torchvision.models.WeightsEnum) -> dict[str, torch.Tensor]:
    url = weights.url
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    try:
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
    except (URLError, OSError, RuntimeError) as exc:
        raise CovidlensError(
            f"ImageNet weights {os.path.basename(url)} are not cached and could not be downloaded "
            f"({exc.__class__.__name__}); download {url} to {cache} on a machine with internet, "
            "or train with pretrained: false."
        ) from exc


def _torchvision_builder(
    factory: Callable[..., nn.Module],
    weights: torchvision.models.WeightsEnum,
    replace_head: Callable[[nn.Module, int], None],
) -> Callable[..., nn.Module]:
    def build(num_classes: int = 1, pretrained: bool = False) -> nn.Module:
        model = factory(weights=None)
        if pretrained:
            model.load_state_dict(_imagenet_state_dict(weights))
        replace_head(model, num_classes)
        return model

    return build


def _resnet_head(model: nn.Module, num_classes: int) -> None:
    model.fc = nn.Linear(model.fc.in_features, num_classes)


def _densenet_head(model: nn.Module, num_classes: int) -> None:
    model.classifier = nn.Linear(model.classifier.in_features, num_classes)


def _mobilenet_head(model: nn.Module, num_classes: int) -> None:
    model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)


M = torchvision.models
_ENTRIES = [
    ("resnet18", M.resnet18, M.ResNet18_Weights.IMAGENET1K_V1, _resnet_head, "layer4", "ResNet18 (11.2 M)"),
    ("resnet50", M.resnet50, M.ResNet50_Weights.IMAGENET1K_V2, _resnet_head, "layer4", "ResNet50 (23.5 M)"),
    ("densenet121", M.densenet121, M.DenseNet121_Weights.IMAGENET1K_V1, _densenet_head, "features.norm5", "DenseNet121 (7.0 M)"),
    ("mobilenet_v2", M.mobilenet_v2, M.MobileNet_V2_Weights.IMAGENET1K_V2, _mobilenet_head, "features.18", "MobileNetV2 (2.2 M)"),
]

for _name, _factory, _weights, _head, _layer, _desc in _ENTRIES:
    register_model(
        _name,
        description=f"torchvision {_desc}",
        target_layer=_layer,
        pretrained_source=f"torchvision:{_weights}",
        tags=("torchvision",),
    )(_torchvision_builder(_factory, _weights, _head))
