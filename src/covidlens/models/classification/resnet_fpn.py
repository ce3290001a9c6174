"""Seed 003's improved ResNet50: feature pyramid over four stages plus non-local attention.

Seed 003 (Chen et al., "Research on CT Image Classification Algorithm of COVID-19 Based on Improved
ResNet", sections 2.2-2.4) improves ResNet50 in two ways and gives only words and two figures:

* **Feature pyramid** (2.2): "conv2_3, conv3_4, conv4_6, conv5_3 in ResNet50 are used to rebuild
  FPN". Those are the outputs of the last block of each stage, i.e. torchvision's ``layer1`` to
  ``layer4`` (256, 512, 1024, 2048 channels at strides 4, 8, 16, 32). We build the standard FPN
  (Lin et al. 2017) with ``torchvision.ops.FeaturePyramidNetwork``: 1x1 lateral convolutions to
  ``fpn_channels`` (256), a top-down pathway (nearest-neighbour upsampling to the exact finer size,
  then addition) and a 3x3 convolution on each merged level (P2-P5).
* **Attention** (2.3): a module that computes "the correlation between different pixels" so that
  the next block sees "long-distance" dependencies, added "before the residual block output" in
  "the last residual block of conv3, conv4, and conv5", keeping the block's input and output sizes.
  We read this as a non-local block (Wang et al. 2018, embedded-Gaussian form) on the residual
  branch of the last bottleneck of ``layer2``, ``layer3`` and ``layer4``, applied after ``bn3`` and
  before the identity is added. See :class:`NonLocal2d` for its details.
* **Classifier** (2.4 uses softmax over K classes; covidlens uses ``num_classes`` logits and applies
  sigmoid or softmax in the loss): the seed does not say how the pyramid feeds the classifier. We
  upsample P2-P5 to P2's size, concatenate them and fuse them with a 1x1 conv-BN-ReLU
  (``fuse``, the last convolutional feature map and the Grad-CAM target), then global average
  pooling, dropout (``dropout``, default 0.2) and a linear layer.

``pretrained=True`` loads torchvision's ImageNet ResNet50 weights (the same file as the
``resnet50`` entry) into the backbone before the attention is inserted; the non-local blocks start
as identities (their output batch norm has zero scale), so the pretrained features are unchanged
at the start of training. The pyramid, attention and head are trained from scratch.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck
from torchvision.ops import Conv2dNormActivation, FeaturePyramidNetwork

from covidlens.models.classification import torchvision_models as _tv
from covidlens.models.registry import register_model

_WEIGHTS = torchvision.models.ResNet50_Weights.IMAGENET1K_V2


class NonLocal2d(nn.Module):
    """Non-local block (embedded Gaussian): every position attends to every other position.

    ``theta``, ``phi`` and ``g`` are 1x1 convolutions to ``channels // reduction`` channels (the
    non-local paper's C/2 by default). For N = H*W positions the N x N correlation matrix is
    ``softmax(theta^T phi / sqrt(C'))`` (the scaling, which the non-local paper omits, keeps the
    softmax from saturating at 512-1024 inner channels); the response ``g`` weighted by it goes
    through a 1x1 convolution and batch norm back to ``channels`` and is added to the input:
    ``z = x + BN(W y)``. The BN scale starts at zero, so the block starts as the identity.
    ``sub_sample=True`` max-pools ``phi`` and ``g`` by 2 (4x fewer keys), as the paper allows.
    :meth:`attention_map` returns the B x N x N correlation weights (rows sum to 1).
    """

    def __init__(self, channels: int, reduction: int = 2, sub_sample: bool = False):
        super().__init__()
        inner = max(1, channels // reduction)
        self.inner = inner
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.pool = nn.MaxPool2d(2) if sub_sample else nn.Identity()
        self.out = Conv2dNormActivation(inner, channels, 1, activation_layer=None)
        nn.init.zeros_(self.out[1].weight)

    def _keys(self, x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        y = conv(x)
        if y.shape[-1] >= 2 and y.shape[-2] >= 2:
            y = self.pool(y)
        return y.flatten(2)  # B x C' x M

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        query = self.theta(x).flatten(2).transpose(1, 2)  # B x N x C'
        key = self._keys(x, self.phi)  # B x C' x M
        return torch.softmax(query @ key / math.sqrt(self.inner), dim=-1)  # B x N x M

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        attn = self.attention_map(x)
        value = self._keys(x, self.g).transpose(1, 2)  # B x M x C'
        y = (attn @ value).transpose(1, 2).reshape(b, self.inner, h, w)
        return x + self.out(y)


class AttentionBottleneck(nn.Module):
    """A torchvision ResNet ``Bottleneck`` with an attention module on its residual branch, applied
    after ``bn3`` and before the identity is added. Parameter names of the wrapped block are kept
    (``conv1``, ``bn1``, ..., ``downsample``) so ResNet50 state dicts still match."""

    def __init__(self, block: Bottleneck, attention: nn.Module):
        super().__init__()
        self.conv1, self.bn1 = block.conv1, block.bn1
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.conv3, self.bn3 = block.conv3, block.bn3
        self.relu = block.relu
        self.downsample = block.downsample
        self.stride = block.stride
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.attention(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


class FPN(FeaturePyramidNetwork):
    """torchvision's feature pyramid (lateral 1x1, nearest upsample to the finer size + add, 3x3
    output convolution per level), which is the standard FPN the seed asks for.

    Before covidlens used torchvision's, its own pyramid stored the lateral convolutions as
    ``lateral.<i>`` and the output convolutions as ``output.<i>``; :meth:`_load_from_state_dict`
    renames those keys (:func:`current_fpn_key`), so weights saved before load strictly (the two
    pyramids compute the same function).
    """

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            current = prefix + current_fpn_key(key[len(prefix) :])
            if current != key:
                state_dict[current] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


_OLD_FPN_NAMES = {"lateral": "inner_blocks", "output": "layer_blocks"}


def current_fpn_key(key: str) -> str:
    """Today's name, inside the pyramid, of a key of covidlens's earlier FPN:
    ``lateral.<i>.<param>`` -> ``inner_blocks.<i>.0.<param>``, ``output.<i>.<param>`` ->
    ``layer_blocks.<i>.0.<param>``; any other key is returned unchanged."""
    old, _, rest = key.partition(".")
    if old not in _OLD_FPN_NAMES:
        return key
    index, _, param = rest.partition(".")
    return f"{_OLD_FPN_NAMES[old]}.{index}.0.{param}"


def _current_key(key: str) -> str:
    """Model-level key map for checkpoints of ``resnet50_fpn_attention`` saved before the FPN change."""
    return "fpn." + current_fpn_key(key[len("fpn.") :]) if key.startswith("fpn.") else key


class ResNet50FPNAttention(nn.Module):
    """ResNet50 with non-local attention in the last block of layer2-4 and an FPN classifier head.

    See the module docstring for the reading of seed 003. ``attention_reduction`` and
    ``attention_sub_sample`` configure :class:`NonLocal2d`; ``fpn_channels`` is the pyramid width.
    """

    def __init__(
        self,
        num_classes: int = 1,
        pretrained: bool = False,
        fpn_channels: int = 256,
        dropout: float = 0.2,
        attention_reduction: int = 2,
        attention_sub_sample: bool = False,
    ):
        super().__init__()
        backbone = torchvision.models.resnet50(weights=None)
        if pretrained:
            backbone.load_state_dict(_tv._imagenet_state_dict(_WEIGHTS))
        self.conv1, self.bn1, self.relu, self.maxpool = backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool
        self.layer1 = backbone.layer1
        self.layer2, self.layer3, self.layer4 = backbone.layer2, backbone.layer3, backbone.layer4
        for layer in (self.layer2, self.layer3, self.layer4):
            last: Bottleneck = layer[-1]
            channels = last.conv3.out_channels
            layer[-1] = AttentionBottleneck(last, NonLocal2d(channels, attention_reduction, attention_sub_sample))
        stage_channels = (256, 512, 1024, 2048)
        self.fpn = FPN(list(stage_channels), fpn_channels)
        self.fuse = Conv2dNormActivation(fpn_channels * len(stage_channels), fpn_channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(fpn_channels, num_classes)

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """P2..P5 (finest first), each with ``fpn_channels`` channels."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return list(self.fpn(OrderedDict(c2=c2, c3=c3, c4=c4, c5=c5)).values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyramid = self.forward_pyramid(x)
        size = pyramid[0].shape[-2:]
        stacked = torch.cat(
            [pyramid[0]] + [F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in pyramid[1:]],
            dim=1,
        )
        fused = self.fuse(stacked)
        return self.fc(self.dropout(fused.mean(dim=(2, 3))))


@register_model(
    "resnet50_fpn_attention",
    description="seed 003 improved ResNet50: FPN over conv2_3..conv5_3 + non-local attention in conv3-5",
    target_layer="fuse",
    pretrained_source=f"torchvision:{_WEIGHTS}",
    tags=("seed003",),
    legacy_key=_current_key,
)
def resnet50_fpn_attention(
    num_classes: int = 1,
    pretrained: bool = False,
    fpn_channels: int = 256,
    dropout: float = 0.2,
    attention_reduction: int = 2,
    attention_sub_sample: bool = False,
) -> ResNet50FPNAttention:
    return ResNet50FPNAttention(
        num_classes, pretrained, fpn_channels, dropout, attention_reduction, attention_sub_sample
    )
