"""Attention, convolution and encoder-decoder blocks shared by the models of every task.

Every attention block keeps the shape of its input and multiplies it by weights in [0, 1] that come
from a sigmoid; ``gate(x)`` returns those weights (broadcastable to ``x``) so that they can be
inspected or tested, and ``forward(x)`` applies them. The blocks follow seed 000 ("Using Different
Deep Learning Models to Detect COVID-19", sections 2.3.4 and 3.1), which describes them in words:

* SE: squeeze (global average pool) and excitation (two fully connected layers with a reduction
  ratio, ReLU between, sigmoid after), channel-wise rescaling;
* cSE: the same as SE, written with 1x1 convolutions, reduction ratio 2 (the seed gives "2 or 16");
* sSE: a 1x1 convolution from C channels to one map, sigmoid, pixel-wise rescaling;
* scSE: cSE and sSE together (the seed does not say how they combine; see :class:`SCSE`);
* ECA: channel attention without dimensionality reduction, a 1-D convolution across the pooled
  channel descriptor whose kernel size grows with log2(C);
* ECAsE: sSE plus an ECA that pools with both max and average pooling (seed Fig. 2.15 / 3.2);
* FPRM: the "fprm" module the seed adds to "fuse high-level semantic information and low-level
  features" (it is named but never specified; see :class:`FPRM` for the interpretation);
* DeformConv2d: modulated deformable convolution (DCNv2) on top of ``torchvision.ops.deform_conv2d``.

:func:`make_attention` builds an attention block from a short name so that model constructors can
take ``attention="scse"`` style arguments.

The UNet parts (:class:`DoubleConv`, :class:`ResDoubleConv`, :class:`Down`, :class:`Up`,
:class:`OutConv`, :func:`pad_to`) live here rather than beside the UNet-family classifiers because a
segmentation UNet is built from the same parts. Conv-BN-ReLU units are torchvision's
``Conv2dNormActivation``; where a block has always been one flat ``nn.Sequential`` the units are
unpacked into it, so the state-dict keys (``0.weight``, ``1.running_mean``, ``3.weight``, ...) stay
those of checkpoints saved before.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation, deform_conv2d

from covidlens.errors import CovidlensError

__all__ = [
    "SE",
    "CSE",
    "SSE",
    "SCSE",
    "ECA",
    "ECAsE",
    "FPRM",
    "DeformConv2d",
    "DoubleConv",
    "ResDoubleConv",
    "Down",
    "Up",
    "OutConv",
    "BlockFactory",
    "pad_to",
    "ATTENTION_KINDS",
    "eca_kernel_size",
    "make_attention",
]


class SE(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) as seed 000 section 2.3.4 describes it.

    Global average pooling gives one number per channel, a fully connected layer reduces the C
    numbers to ``C / reduction`` (at least 1), ReLU, a second fully connected layer restores C, and a
    sigmoid turns them into channel weights in [0, 1] that rescale the input channel by channel.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights, shape ``B x C x 1 x 1``."""
        return self.fc(x.mean(dim=(2, 3)))[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CSE(nn.Module):
    """Channel squeeze-and-excitation (the "c" half of scSE, Roy et al. 2018).

    Seed 000: global average pooling [C, H, W] -> [C, 1, 1], two 1x1 convolutions (ReLU between,
    reduction ratio ``reduction``; the seed says experiments settled on 2 or 16, we default to 2),
    sigmoid, channel-wise multiplication. Functionally SE written with convolutions.
    """

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights, shape ``B x C x 1 x 1``."""
        return self.fc(F.adaptive_avg_pool2d(x, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class SSE(nn.Module):
    """Spatial squeeze-and-excitation: 1x1 convolution [C, H, W] -> [1, H, W], sigmoid, pixel-wise
    multiplication of every channel by that spatial attention map (seed 000, sSE steps 1-3)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial weights, shape ``B x 1 x H x W``."""
        return torch.sigmoid(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


_COMBINE_MODES = ("add", "max")


def _combine(x: torch.Tensor, channel_gate: torch.Tensor, spatial_gate: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "add":
        return x * channel_gate + x * spatial_gate
    return x * torch.maximum(channel_gate, spatial_gate)


def _check_mode(mode: str) -> str:
    if mode not in _COMBINE_MODES:
        raise CovidlensError(f"unknown attention combine mode {mode!r}; choose one of: {', '.join(_COMBINE_MODES)}.")
    return mode


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-and-excitation: cSE and sSE on the same input.

    Seed 000 names scSE (its base model is "ScseResUNet") but does not say how the two recalibrated
    maps are combined. We default to ``mode="add"``, ``x * c + x * s``, the form in which scSE was
    first published; ``mode="max"`` takes the element-wise maximum of the two gates instead,
    ``x * max(c, s)``, which keeps the effective weight in [0, 1]. With ``add`` each gate lies in
    [0, 1] and their sum in [0, 2]. :meth:`gates` returns ``(channel_gate, spatial_gate)``.
    """

    def __init__(self, channels: int, reduction: int = 2, mode: str = "add"):
        super().__init__()
        self.mode = _check_mode(mode)
        self.cse = CSE(channels, reduction)
        self.sse = SSE(channels)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cse.gate(x), self.sse.gate(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _combine(x, *self.gates(x), self.mode)


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel size: the odd integer nearest above ``|(log2(C) + b) / gamma|``.

    ``t = int(|(log2 C + b) / gamma|)``; the kernel is ``t`` when odd, else ``t + 1``. With the
    defaults: C = 16, 32, 64 -> 3; C = 128 to 1024 -> 5; C = 2048 -> 7 (t = 6, made odd).
    """
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


_ECA_POOLING = ("avg", "max", "avgmax")


class ECA(nn.Module):
    """Efficient channel attention (Wang et al. 2020): no dimensionality reduction, local
    cross-channel interaction by a 1-D convolution over the pooled channel descriptor.

    ``kernel_size`` defaults to :func:`eca_kernel_size` of ``channels``. ``pooling`` chooses the
    descriptor: ``"avg"`` (original ECA), ``"max"``, or ``"avgmax"`` (seed 000: "I use both a maximum
    pooling and an average pooling for the input x to make feature fusion"): the same 1-D
    convolution is applied to both descriptors and the two responses are summed before the sigmoid,
    so max pooling adds no parameters.
    """

    def __init__(self, channels: int, kernel_size: int | None = None, pooling: str = "avg", gamma: int = 2, b: int = 1):
        super().__init__()
        if pooling not in _ECA_POOLING:
            raise CovidlensError(f"unknown ECA pooling {pooling!r}; choose one of: {', '.join(_ECA_POOLING)}.")
        k = kernel_size if kernel_size is not None else eca_kernel_size(channels, gamma, b)
        if k < 1 or k % 2 == 0:
            raise ValueError(f"ECA kernel size must be a positive odd number, got {k}")
        self.pooling = pooling
        self.kernel_size = k
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def _respond(self, pooled: torch.Tensor) -> torch.Tensor:
        # pooled: B x C -> conv over the channel axis treated as a 1-D signal.
        return self.conv(pooled[:, None, :])[:, 0, :]

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights, shape ``B x C x 1 x 1``."""
        logits = 0
        if self.pooling in ("avg", "avgmax"):
            logits = logits + self._respond(x.mean(dim=(2, 3)))
        if self.pooling in ("max", "avgmax"):
            logits = logits + self._respond(x.amax(dim=(2, 3)))
        return torch.sigmoid(logits)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ECAsE(nn.Module):
    """ECAsE (seed 000 Fig. 3.2, "ECAs" module): sSE spatial attention plus ECA channel attention
    that pools with both max and average pooling.

    The seed's paragraph also mentions "downsamples the image by 2*2, stride 2 convolution"; we read
    that as the down-sampling step of the encoder stage that hosts the module (x5 in DResUNet), not
    as part of the attention, so ECAsE keeps the shape of its input like every other attention
    block here. The two gates are combined as in :class:`SCSE` (``mode="add"`` by default, or
    ``"max"``); the seed does not say which.
    """

    def __init__(self, channels: int, mode: str = "add", kernel_size: int | None = None):
        super().__init__()
        self.mode = _check_mode(mode)
        self.eca = ECA(channels, kernel_size=kernel_size, pooling="avgmax")
        self.sse = SSE(channels)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.eca.gate(x), self.sse.gate(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _combine(x, *self.gates(x), self.mode)


class FPRM(nn.Module):
    """Feature pyramid refinement module: fuses feature maps of several scales into one map.

    Seed 000 only says it "added a module of fprm ... to facilitate the fusion of information between
    high-level semantic information and low-level features, so that it can have rich semantic
    information and also preserve more information of low-level", placed after the decoder and
    before the classifier. Our reading is a feature-pyramid (FPN-style) top-down fusion:

    1. a lateral 1x1 convolution maps every input level to ``out_channels``;
    2. top-down pathway: starting from the coarsest (most semantic) level, each level is upsampled
       (bilinear, to the exact size of the next finer level, so odd sizes work) and added to the
       next finer lateral;
    3. each merged level is refined by a 3x3 conv-BN-ReLU;
    4. all refined levels are upsampled to the finest resolution, concatenated and fused by a 1x1
       conv-BN-ReLU into one ``out_channels`` map at the finest input resolution.

    Inputs are passed as a sequence ordered from coarsest to finest, with channel counts
    ``in_channels`` in the same order. An alternative reading of the seed (a pyramid made by
    repeated max pooling of the last decoder map, "four consecutive maximum pooling") is not
    implemented because it would fuse only one level of semantics.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        if len(in_channels) < 1:
            raise ValueError("FPRM needs at least one input level")
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.refine = nn.ModuleList(Conv2dNormActivation(out_channels, out_channels, 3) for _ in in_channels)
        self.fuse = Conv2dNormActivation(out_channels * len(in_channels), out_channels, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.lateral):
            raise ValueError(f"FPRM expects {len(self.lateral)} feature maps, got {len(features)}")
        merged: list[torch.Tensor] = []
        top = None
        for feature, lateral in zip(features, self.lateral):
            level = lateral(feature)
            if top is not None:
                level = level + F.interpolate(top, size=level.shape[-2:], mode="bilinear", align_corners=False)
            merged.append(level)
            top = level
        size = merged[-1].shape[-2:]
        refined = []
        for level, refine in zip(merged, self.refine):
            level = refine(level)
            if level.shape[-2:] != size:
                level = F.interpolate(level, size=size, mode="bilinear", align_corners=False)
            refined.append(level)
        return self.fuse(torch.cat(refined, dim=1))


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class DeformConv2d(nn.Module):
    """Modulated deformable convolution (DCNv2, Zhu et al. 2019) using ``torchvision.ops.deform_conv2d``.

    A regular convolution ``offset_conv`` (same kernel, stride, padding and dilation as the main
    kernel) predicts, for every output position and every kernel sampling point, a 2-D offset
    ``(dy, dx)`` and, when ``modulated`` (DCNv2, the default), a mask logit whose sigmoid scales the
    sampled value. Offsets use torchvision's layout: channel ``2k`` is the y offset and ``2k + 1`` the
    x offset of kernel point ``k`` (row-major over the kernel), repeated per offset group.

    Initialisation follows the DCNv2 paper: ``offset_conv`` has zero weights and zero bias, so at the
    start every offset is 0 (the regular sampling grid) and every mask is ``sigmoid(0) = 0.5``; a
    freshly built layer therefore computes exactly half the plain convolution (plus bias), which
    the following batch norm absorbs. The main weight uses PyTorch's default Conv2d initialisation.

    ``forward(x, offset=None, mask=None)``: with neither given, offsets and mask are predicted from
    ``x``. Passing either one switches to explicit mode (for tests and analysis): a missing offset
    means zeros, a missing mask means all ones (plain DCNv1 sampling). Explicit shapes are
    ``B x 2*G*kh*kw x H_out x W_out`` and ``B x G*kh*kw x H_out x W_out`` with ``G = offset_groups``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        offset_groups: int = 1,
        modulated: bool = True,
    ):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        if in_channels % offset_groups:
            raise ValueError("in_channels must be divisible by offset_groups")
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.dilation = _pair(dilation)
        if padding is None:
            padding = tuple(d * (k - 1) // 2 for k, d in zip(self.kernel_size, self.dilation))
        self.padding = _pair(padding)
        self.groups = groups
        self.offset_groups = offset_groups
        self.modulated = modulated
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        n_points = offset_groups * kh * kw
        self._n_offset = 2 * n_points
        self.offset_conv = nn.Conv2d(
            in_channels,
            self._n_offset + (n_points if modulated else 0),
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same scheme as nn.Conv2d's default initialisation.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def predict_offset_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The learned ``(offset, mask)`` for input ``x`` (mask is None when not ``modulated``)."""
        out = self.offset_conv(x)
        offset = out[:, : self._n_offset]
        mask = torch.sigmoid(out[:, self._n_offset :]) if self.modulated else None
        return offset, mask

    def forward(
        self, x: torch.Tensor, offset: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if offset is None and mask is None:
            offset, mask = self.predict_offset_mask(x)
        elif offset is None:
            h_out, w_out = mask.shape[-2:]
            offset = x.new_zeros(x.shape[0], self._n_offset, h_out, w_out)
        return deform_conv2d(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"offset_groups={self.offset_groups}, modulated={self.modulated}"
        )


#: Names accepted by :func:`make_attention`.
ATTENTION_KINDS = ("none", "se", "cse", "sse", "scse", "eca", "ecase")


def make_attention(kind: str, channels: int, **kwargs) -> nn.Module:
    """An attention block for ``channels`` channels chosen by short name (case-insensitive).

    ``"none"`` gives ``nn.Identity``; ``"se"``, ``"cse"``, ``"sse"``, ``"scse"``, ``"eca"`` and ``"ecase"``
    give :class:`SE`, :class:`CSE`, :class:`SSE`, :class:`SCSE`, :class:`ECA`, :class:`ECAsE`; extra
    keyword arguments go to the block's constructor.
    """
    key = str(kind).lower()
    if key in ("none", ""):
        return nn.Identity()
    builders = {"se": SE, "cse": CSE, "sse": SSE, "scse": SCSE, "eca": ECA, "ecase": ECAsE}
    if key not in builders:
        raise CovidlensError(f"unknown attention {kind!r}; choose one of: {', '.join(ATTENTION_KINDS)}.")
    return builders[key](channels, **kwargs)


#: Builds a double-convolution stage: ``(in_channels, out_channels, mid_channels) -> module``.
BlockFactory = Callable[[int, int, int], nn.Module]


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BN -> ReLU) twice; ``mid_channels`` is the width between the two convolutions.

    The two ``Conv2dNormActivation`` units are unpacked into one flat sequence (keys ``0`` to ``5``)."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        mid = mid_channels or out_channels
        super().__init__(*Conv2dNormActivation(in_channels, mid, 3), *Conv2dNormActivation(mid, out_channels, 3))


class ResDoubleConv(nn.Module):
    """Residual double convolution: 3x3 conv-BN-ReLU, 3x3 conv-BN, optional attention on the residual
    branch (as in SE-ResNet, seed 000 Fig. 2.12), plus a shortcut (identity, or 1x1 conv-BN when the
    channel count changes), then ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, mid_channels: int | None = None, attention: str = "none"
    ):
        super().__init__()
        mid = mid_channels or out_channels
        self.body = nn.Sequential(
            *Conv2dNormActivation(in_channels, mid, 3),
            *Conv2dNormActivation(mid, out_channels, 3, activation_layer=None),
        )
        self.attention = make_attention(attention, out_channels)
        if in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = Conv2dNormActivation(in_channels, out_channels, 1, activation_layer=None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.attention(self.body(x)) + self.shortcut(x))


class Down(nn.Sequential):
    """2x2 max pooling (stride 2) followed by a double-convolution block (``block``, default
    :class:`DoubleConv`)."""

    def __init__(self, in_channels: int, out_channels: int, block: BlockFactory = DoubleConv):
        super().__init__(nn.MaxPool2d(2), block(in_channels, out_channels, out_channels))


def pad_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Zero-pad ``x`` (evenly, extra pixel at the bottom/right) to the spatial size of ``reference``."""
    dy = reference.shape[-2] - x.shape[-2]
    dx = reference.shape[-1] - x.shape[-1]
    if dy == 0 and dx == 0:
        return x
    return F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])


class Up(nn.Module):
    """Upsample by 2, zero-pad to the skip connection's size, concatenate ``[skip, upsampled]``,
    double convolution.

    ``in_channels`` is the channel count after concatenation. Transposed mode: the deeper map has
    ``in_channels`` channels and a 2x2 stride-2 transposed convolution halves them to match the skip.
    Bilinear mode: the deeper map already has ``in_channels // 2`` channels; the block's middle width
    is ``in_channels // 2``. Padding instead of cropping lets inputs be any size, not only
    multiples of 16 (seed 000: "padding the smaller feature map first, and then concat").
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = False, block: BlockFactory = DoubleConv):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = block(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = block(in_channels, out_channels, out_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, pad_to(self.up(deep), skip)], dim=1))


class OutConv(nn.Conv2d):
    """1x1 convolution from the decoder's channels to one map per output class (the UNet's
    segmentation head; the UNet-family classifiers pool first and use an equivalent ``nn.Linear``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=1)
