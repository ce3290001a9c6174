"""UNet, ResUNet and the three improved ResUNets of seed 000 as image classifiers.

Seed 000 ("Using Different Deep Learning Models to Detect COVID-19", sections 2.3.3, 2.3.4 and 3.1)
classifies 256 x 256 chest CT slices with segmentation-style encoder-decoder networks. It describes
them in words and figures only; this module writes them from that description. Shared choices:

* **Classifier head.** The encoder-decoder runs to the end (so every decoder weight is used and
  Grad-CAM can look at a full-resolution map), then global average pooling of the last decoder map
  and one linear layer ``fc`` give the logits. The seed's segmentation ``OutConv`` (a 1x1 conv to
  per-pixel class maps) followed by global average pooling would compute exactly the same function;
  pooling first is cheaper and is the "global pooling + one linear layer" shape that classic CAM
  needs (``fc.weight`` read as 1x1-conv weights gives the seed's per-pixel map). ``OutConv``
  lives in :mod:`covidlens.models.blocks` with the other UNet parts, for segmentation. DResUNet
  has its own head as the seed describes (see there).
* **Width.** ``base_channels`` is the width of the first stage; stages double it up to
  ``16 * base_channels`` at the bottleneck, as in the original UNet (64 -> 1024). The seed quotes
  "about 28 M" parameters for the original UNet, "about 31 M" with transposed-convolution
  upsampling, 7.75 M with half the channels and under 2 M with a quarter: ``base_channels`` 64, 32
  and 16 with ``bilinear=False`` give 31.04 M, 7.76 M and 1.94 M. The registered builders default
  to ``base_channels=16`` (trainable on a CPU); pass ``full_width=True`` (or ``base_channels=64``)
  for the seed's size.
* **Names.** Classes and registry names say ``Classifier`` / ``_classifier`` so that plain ``UNet``
  stays free for the segmentation network; checkpoints under the old names (``unet``, ``resunet``,
  ...) are mapped by :data:`covidlens.models.registry.LEGACY_NAMES`. State-dict keys are unchanged.
* **Upsampling.** ``bilinear=False`` (default) upsamples with a 2x2 stride-2 transposed convolution
  that halves the channels; ``bilinear=True`` uses bilinear interpolation and, to keep parameter
  counts down, halves the channels of the bottleneck and of each decoder stage instead (17.3 M at
  full width). Either way the upsampled map is zero-padded to the skip connection's size and then
  concatenated (the seed: "padding the smaller feature map first, and then concat"), so inputs need
  not be multiples of 16.
* Batch normalisation follows every 3x3 convolution (seed Fig. 2.4, "conv, BN, ReLU" twice).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

from covidlens.models.blocks import FPRM, SCSE, BlockFactory, DeformConv2d, Down, DoubleConv, ResDoubleConv, Up
from covidlens.models.blocks import make_attention
from covidlens.models.registry import register_model


class UNetClassifier(nn.Module):
    """Seed 000's UNet (sections 2.3.3, Fig. 2.10) as a classifier.

    ``inc`` (DoubleConv) and four ``Down`` stages form the encoder (widths b, 2b, 4b, 8b, 16b for
    ``base_channels = b``), four ``Up`` stages the decoder; the last decoder map is averaged over the
    image and ``fc`` (linear) gives the logits. ``block`` swaps the double convolution for another
    block with the same ``(in, out, mid)`` signature (ResUNet uses this). ``forward_features``
    returns every decoder level, coarsest first, for heads that fuse scales.
    """

    def __init__(
        self,
        num_classes: int = 1,
        in_channels: int = 3,
        base_channels: int = 16,
        bilinear: bool = False,
        block: BlockFactory = DoubleConv,
    ):
        super().__init__()
        b = base_channels
        factor = 2 if bilinear else 1
        self.bilinear = bilinear
        self.channels = (16 * b // factor, 8 * b // factor, 4 * b // factor, 2 * b // factor, b)
        self.inc = block(in_channels, b, b)
        self.down1 = Down(b, 2 * b, block)
        self.down2 = Down(2 * b, 4 * b, block)
        self.down3 = Down(4 * b, 8 * b, block)
        self.down4 = Down(8 * b, 16 * b // factor, block)
        self.up1 = Up(16 * b, 8 * b // factor, bilinear, block)
        self.up2 = Up(8 * b, 4 * b // factor, bilinear, block)
        self.up3 = Up(4 * b, 2 * b // factor, bilinear, block)
        self.up4 = Up(2 * b, b, bilinear, block)
        self.fc = nn.Linear(b, num_classes)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Bottleneck and the four decoder outputs, coarsest first (channels ``self.channels``)."""
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        d1 = self.up1(x5, x4)
        d2 = self.up2(d1, x3)
        d3 = self.up3(d2, x2)
        d4 = self.up4(d3, x1)
        return [x5, d1, d2, d3, d4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x)[-1].mean(dim=(2, 3)))


def _res_block(attention: str) -> BlockFactory:
    def build(in_ch: int, out_ch: int, mid: int) -> nn.Module:
        return ResDoubleConv(in_ch, out_ch, mid, attention=attention)

    return build


class ResUNetClassifier(UNetClassifier):
    """UNet classifier whose double convolutions are residual (:class:`ResDoubleConv`), optionally
    with an attention block on every residual branch (``attention``: a :func:`make_attention` name),
    and optionally with an :class:`FPRM` head that fuses the bottleneck and all four decoder levels
    before pooling and ``fc`` (``fprm=True``; the fused map is then the last convolutional feature
    map)."""

    def __init__(
        self,
        num_classes: int = 1,
        in_channels: int = 3,
        base_channels: int = 16,
        bilinear: bool = False,
        attention: str = "scse",
        fprm: bool = False,
    ):
        super().__init__(num_classes, in_channels, base_channels, bilinear, block=_res_block(attention))
        self.fprm = FPRM(self.channels, base_channels) if fprm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)
        top = self.fprm(features) if self.fprm is not None else features[-1]
        return self.fc(top.mean(dim=(2, 3)))


class DResBlock(nn.Module):
    """Encoder block x2-x5 of seed 000's DResUNet (section 3.1, Fig. 3.1).

    Main branch: 3x3 modulated deformable convolution (stride 1 or 2) -> BN -> ReLU, two 3x3
    conv-BN-ReLU, optional attention (ECAsE in x5, "after the second 3x3 convolution"), 1x1 conv ->
    BN. Shortcut: identity, or 1x1 conv (same stride) -> BN when shape changes. Output: ReLU(sum).
    The seed does not say whether BN/ReLU follow the deformable convolution; we add them.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, attention: str = "none"):
        super().__init__()
        self.deform = DeformConv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.body = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            *Conv2dNormActivation(out_channels, out_channels, 3),
            *Conv2dNormActivation(out_channels, out_channels, 3),
        )
        self.attention = make_attention(attention, out_channels)
        self.project = Conv2dNormActivation(out_channels, out_channels, 1, activation_layer=None)
        if in_channels == out_channels and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = Conv2dNormActivation(in_channels, out_channels, 1, stride=stride, activation_layer=None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.attention(self.body(self.deform(x))))
        return self.relu(out + self.shortcut(x))


class _SCSEDoubleConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, mid: int):
        super().__init__(DoubleConv(in_ch, out_ch, mid), SCSE(out_ch))


class DResUNetClassifier(nn.Module):
    """Seed 000's DResUNet (section 3.1, Figs. 3.1-3.4), its best model (85.54 % accuracy).

    Encoder (``b = base_channels``):

    * x1: 3x3 conv -> BN -> ReLU -> 2x2 max pool (b channels, 1/2 resolution);
    * x2: :class:`DResBlock`, deformable conv stride 1 (2b, 1/2);
    * x3, x4: :class:`DResBlock`, deformable conv stride 2 (4b at 1/4, 8b at 1/8);
    * x5: like x3/x4 (16b, 1/16) with :class:`~covidlens.models.blocks.ECAsE` after its second 3x3
      conv. The seed's ECAsE paragraph mentions a "2*2, stride 2 convolution" halving the image;
      we take that to be x5's down-sampling and realise it with the same stride-2 deformable
      convolution as x3/x4.

    Decoder (x44, x33, x22): upsample by 2 (transposed conv, or bilinear with ``bilinear=True``),
    pad, concatenate the skip (x4, x3, x2), (3x3 conv-BN-ReLU) x2. The seed names only these three
    although it speaks of "five up-samplings"; x1 and x2 share a resolution so there is nothing
    left to upsample to. DResUNet is built on the seed's ScseResUNet, so each decoder stage ends
    with :class:`~covidlens.models.blocks.SCSE`.

    Head, in the seed's order where it is coherent: :class:`~covidlens.models.blocks.FPRM` fuses x5,
    x44, x33, x22 into a 2b map at 1/2 resolution; dropout (p=0.5, "ignoring half of the feature
    detectors"); a 1x1 modulated deformable convolution -> BN -> ReLU ("focused by a 1x1 deform
    convolution"; ``head_conv``, the Grad-CAM target); global average pooling; two fully connected
    layers (hidden width ``hidden``, ReLU between). The seed's "four consecutive maximum pooling"
    to 1x1 before the dropout contradicts a later spatial 1x1 deformable convolution and a
    multi-scale FPRM, so it is not implemented; global pooling happens once, before the FC layers.
    """

    def __init__(
        self,
        num_classes: int = 1,
        in_channels: int = 3,
        base_channels: int = 16,
        bilinear: bool = False,
        hidden: int = 128,
        dropout: float = 0.5,
    ):
        super().__init__()
        b = base_channels
        factor = 2 if bilinear else 1
        self.x1 = nn.Sequential(*Conv2dNormActivation(in_channels, b, 3), nn.MaxPool2d(2))
        self.x2 = DResBlock(b, 2 * b, stride=1)
        self.x3 = DResBlock(2 * b, 4 * b, stride=2)
        self.x4 = DResBlock(4 * b, 8 * b, stride=2)
        self.x5 = DResBlock(8 * b, 16 * b // factor, stride=2, attention="ecase")
        self.x44 = Up(16 * b, 8 * b // factor, bilinear, _SCSEDoubleConv)
        self.x33 = Up(8 * b, 4 * b // factor, bilinear, _SCSEDoubleConv)
        self.x22 = Up(4 * b, 2 * b, bilinear, _SCSEDoubleConv)
        self.fprm = FPRM((16 * b // factor, 8 * b // factor, 4 * b // factor, 2 * b), 2 * b)
        self.dropout = nn.Dropout(dropout)
        self.head_conv = nn.Sequential(
            DeformConv2d(2 * b, 2 * b, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(2 * b),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Linear(2 * b, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.x1(x)
        x2 = self.x2(x1)
        x3 = self.x3(x2)
        x4 = self.x4(x3)
        x5 = self.x5(x4)
        x44 = self.x44(x5, x4)
        x33 = self.x33(x44, x3)
        x22 = self.x22(x33, x2)
        fused = self.head_conv(self.dropout(self.fprm([x5, x44, x33, x22])))
        return self.classifier(fused.mean(dim=(2, 3)))


def _width(base_channels: int, full_width: bool) -> int:
    """``full_width=True`` is the seed's size (64), whatever ``base_channels`` says."""
    return 64 if full_width else int(base_channels)


_SEED000 = dict(input_size=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), tags=("seed000",))


@register_model(
    "unet_classifier",
    description="seed 000 UNet as a classifier (base 16 = 1.9 M; full_width=True: 31.0 M), from scratch",
    target_layer="up4",
    **_SEED000,
)
def unet_classifier(
    num_classes: int = 1,
    pretrained: bool = False,
    in_channels: int = 3,
    base_channels: int = 16,
    full_width: bool = False,
    bilinear: bool = False,
) -> UNetClassifier:
    """Seed 000's UNet with a global-average-pool + linear head over the last decoder map."""
    return UNetClassifier(num_classes, in_channels, _width(base_channels, full_width), bilinear)


def _resunet(num_classes, in_channels, base_channels, full_width, bilinear, attention, fprm) -> ResUNetClassifier:
    return ResUNetClassifier(num_classes, in_channels, _width(base_channels, full_width), bilinear, attention, fprm)


@register_model(
    "resunet_classifier",
    description="seed 000 ResUNet: UNet with residual double-conv blocks, no attention, from scratch",
    target_layer="up4",
    **_SEED000,
)
def resunet_classifier(
    num_classes: int = 1,
    pretrained: bool = False,
    in_channels: int = 3,
    base_channels: int = 16,
    full_width: bool = False,
    bilinear: bool = False,
    attention: str = "none",
    fprm: bool = False,
) -> ResUNetClassifier:
    """Table 5.1 lists ResUNet beside the three ScseResUNet variants (the seed's
    ``ScseResUNet_model_list`` holds ECSA, FPRM and DResUNet), so the plain ResUNet has no attention;
    ``attention="scse"`` gives the ScseResUNet trunk the variants share."""
    return _resunet(num_classes, in_channels, base_channels, full_width, bilinear, attention, fprm)


@register_model(
    "resunet_ecsa_classifier",
    description="seed 000 ResUNet-ECSA: residual UNet with ECAsE attention in every block, from scratch",
    target_layer="up4",
    **_SEED000,
)
def resunet_ecsa_classifier(
    num_classes: int = 1,
    pretrained: bool = False,
    in_channels: int = 3,
    base_channels: int = 16,
    full_width: bool = False,
    bilinear: bool = False,
    attention: str = "ecase",
    fprm: bool = False,
) -> ResUNetClassifier:
    """ScseResUNet with its scSE blocks replaced by ECAsE (ECA with max+avg pooling, plus sSE)."""
    return _resunet(num_classes, in_channels, base_channels, full_width, bilinear, attention, fprm)


@register_model(
    "resunet_fprm_classifier",
    description="seed 000 ResUNet-FPRM: ScseResUNet + feature pyramid refinement head, from scratch",
    target_layer="fprm",
    **_SEED000,
)
def resunet_fprm_classifier(
    num_classes: int = 1,
    pretrained: bool = False,
    in_channels: int = 3,
    base_channels: int = 16,
    full_width: bool = False,
    bilinear: bool = False,
    attention: str = "scse",
) -> ResUNetClassifier:
    """ScseResUNet whose bottleneck and four decoder levels are fused by FPRM before the head."""
    return _resunet(num_classes, in_channels, base_channels, full_width, bilinear, attention, fprm=True)


@register_model(
    "dresunet_classifier",
    description="seed 000 DResUNet: deformable residual encoder, ECAsE, scSE decoder, FPRM head, from scratch",
    target_layer="head_conv",
    **_SEED000,
)
def dresunet_classifier(
    num_classes: int = 1,
    pretrained: bool = False,
    in_channels: int = 3,
    base_channels: int = 16,
    full_width: bool = False,
    bilinear: bool = False,
    hidden: int = 128,
    dropout: float = 0.5,
) -> DResUNetClassifier:
    """Seed 000's best model: deformable residual encoder, ECAsE, scSE decoder and an FPRM head."""
    return DResUNetClassifier(num_classes, in_channels, _width(base_channels, full_width), bilinear, hidden, dropout)


__all__ = [
    "UNetClassifier",
    "ResUNetClassifier",
    "DResBlock",
    "DResUNetClassifier",
]
