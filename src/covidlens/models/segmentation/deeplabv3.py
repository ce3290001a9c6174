"""DeepLabV3 (Chen et al. 2017) from torchvision, with a ResNet50 or a MobileNetV3-Large backbone.

torchvision's model returns a dict (``"out"``, and ``"aux"`` with the auxiliary head); here the
auxiliary head is off and ``forward`` returns the ``"out"`` logits only, already upsampled by
torchvision to the input's height and width, so every segmenter has the same forward contract.

``pretrained=True`` loads the ImageNet weights of the backbone (the ones torchvision itself uses for
``weights_backbone``), downloaded hash-checked into the torch hub cache like the torchvision
classifiers' (an offline user gets a sentence naming the file and where to put it); the ASPP head is
always trained from scratch. torchvision's COCO/VOC segmentation weights are not used: their head
predicts 21 VOC classes and would be replaced anyway. The ASPP image-pooling branch has a batch
norm over 1 x 1 maps, so training needs batches of at least two images.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, deeplabv3_resnet50

from covidlens.models.classification.torchvision_models import _imagenet_state_dict
from covidlens.models.registry import register_model


class DeepLabV3(nn.Module):
    """torchvision's DeepLabV3 (``net``) whose forward returns the ``"out"`` logits only."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


def _backbone_state(weights: torchvision.models.WeightsEnum, prefix: str, drop: str) -> dict[str, torch.Tensor]:
    """The ImageNet classifier's tensors renamed to the backbone's keys: ``prefix`` stripped,
    the classifier head (keys starting with ``drop``) left out."""
    state = _imagenet_state_dict(weights)
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and not k.startswith(drop)}


_SPEC = dict(task="segmentation", input_size=256, tags=("torchvision",))
M = torchvision.models


@register_model(
    "deeplabv3_resnet50",
    description="torchvision DeepLabV3, ResNet50 backbone (39.6 M), from scratch or ImageNet backbone",
    pretrained_source=f"torchvision:{M.ResNet50_Weights.IMAGENET1K_V1}",
    **_SPEC,
)
def deeplabv3_resnet50_seg(num_classes: int = 2, pretrained: bool = False) -> DeepLabV3:
    net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    if pretrained:
        net.backbone.load_state_dict(_backbone_state(M.ResNet50_Weights.IMAGENET1K_V1, "", "fc."), strict=True)
    return DeepLabV3(net)


@register_model(
    "deeplabv3_mobilenet_v3",
    description="torchvision DeepLabV3, MobileNetV3-Large backbone (11.0 M), from scratch or ImageNet backbone",
    pretrained_source=f"torchvision:{M.MobileNet_V3_Large_Weights.IMAGENET1K_V1}",
    **_SPEC,
)
def deeplabv3_mobilenet_v3(num_classes: int = 2, pretrained: bool = False) -> DeepLabV3:
    net = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    if pretrained:
        state = _backbone_state(M.MobileNet_V3_Large_Weights.IMAGENET1K_V1, "features.", "classifier.")
        net.backbone.load_state_dict(state, strict=True)
    return DeepLabV3(net)


__all__ = ["DeepLabV3"]
