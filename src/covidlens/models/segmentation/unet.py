"""Seed 001's UNet for lesion segmentation, trained from scratch.

Seed 001 segments pneumonia lesions on CT slices with the original UNet (Ronneberger et al. 2015):
an encoder of four 2x down-samplings, a mirrored decoder with skip connections, and a 1x1
convolution to one logit map per mask class. It is built from the same parts as seed 000's UNet
classifier (:mod:`covidlens.models.blocks`), so the two differ only in the head: here
:class:`~covidlens.models.blocks.OutConv` keeps every pixel instead of pooling.

``base_channels`` is the width multiplier: stage widths are b, 2b, 4b, 8b, 16b (64 gives the paper's
31.0 M parameters with transposed-convolution upsampling, 32 gives 7.8 M, 16 gives 1.9 M). Inputs of
any size work (the decoder pads to each skip's size); the output has the input's height and width.
"""

from __future__ import annotations

import torch
from torch import nn

from covidlens.models.blocks import Down, DoubleConv, OutConv, Up
from covidlens.models.registry import register_model


class UNet(nn.Module):
    """Encoder ``inc, down1..down4``, decoder ``up1..up4``, head ``outc``: logits B x K x H x W."""

    def __init__(self, num_classes: int = 2, in_channels: int = 3, base_channels: int = 32, bilinear: bool = False):
        super().__init__()
        b = base_channels
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(in_channels, b)
        self.down1 = Down(b, 2 * b)
        self.down2 = Down(2 * b, 4 * b)
        self.down3 = Down(4 * b, 8 * b)
        self.down4 = Down(8 * b, 16 * b // factor)
        self.up1 = Up(16 * b, 8 * b // factor, bilinear)
        self.up2 = Up(8 * b, 4 * b // factor, bilinear)
        self.up3 = Up(4 * b, 2 * b // factor, bilinear)
        self.up4 = Up(2 * b, b, bilinear)
        self.outc = OutConv(b, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.down4(x4)
        x = self.up1(x, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        return self.outc(self.up4(x, x1))


@register_model(
    "unet_seg",
    description="seed 001 UNet for lesion segmentation (base 32 = 7.8 M; base 64 = 31.0 M), from scratch",
    task="segmentation",
    input_size=256,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    tags=("seed001",),
)
def unet_seg(
    num_classes: int = 2,
    pretrained: bool = False,
    in_channels: int = 3,
    base_channels: int = 32,
    bilinear: bool = False,
) -> UNet:
    """Seed 001's UNet; ``base_channels`` is the width multiplier (64 = the original paper)."""
    return UNet(num_classes, in_channels, base_channels, bilinear)


__all__ = ["UNet"]
