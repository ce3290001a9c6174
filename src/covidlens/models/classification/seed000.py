"""SimpleCNN and VGG as seed 000 ("Using Different Deep Learning Models to Detect COVID-19") describes them.

The thesis gives only words and a figure: SimpleCNN is "a very simple 3x3 convolution" network used
as the floor of the comparison, and its VGG uses "four convolutional layers and two fully connected
layers" with VGG's 3x3 kernels and 2x2 max pooling. Choices made where the seed is silent:

* channel widths double per stage (SimpleCNN 32-64-128, VGG 64-128-256-512), as in VGGNet;
* batch normalisation after every convolution, since both are trained from scratch on a few hundred
  images and plain VGG-style stacks train poorly there without it;
* an adaptive average pool before the classifier so that any input size works (the seed used 256 px).
"""

from __future__ import annotations

from torch import nn
from torchvision.ops import Conv2dNormActivation

from covidlens.models.registry import register_model


def _conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    """A 3x3 conv-BN-ReLU unit as three layers of the flat ``features`` sequence, so that
    ``target_layer`` indices and the keys of checkpoints saved before stay what they were."""
    return list(Conv2dNormActivation(in_ch, out_ch, 3))


class SimpleCNN(nn.Module):
    def __init__(self, num_classes: int = 1, widths: tuple[int, ...] = (32, 64, 128), in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        for width in widths:
            layers += _conv_bn_relu(in_channels, width) + [nn.MaxPool2d(2)]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


class SeedVGG(nn.Module):
    def __init__(
        self,
        num_classes: int = 1,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        hidden: int = 256,
        dropout: float = 0.5,
        in_channels: int = 3,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for width in widths:
            layers += _conv_bn_relu(in_channels, width) + [nn.MaxPool2d(2)]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * 16, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


@register_model(
    "simple_cnn",
    description="seed 000 SimpleCNN: three 3x3 conv blocks, from scratch",
    input_size=256,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    target_layer="features.10",
    tags=("seed000",),
)
def simple_cnn(
    num_classes: int = 1, pretrained: bool = False, widths: tuple[int, ...] = (32, 64, 128), in_channels: int = 3
) -> SimpleCNN:
    return SimpleCNN(num_classes=num_classes, widths=tuple(widths), in_channels=in_channels)


@register_model(
    "vgg",
    description="seed 000 VGG: four 3x3 conv layers + two fully connected layers, from scratch",
    input_size=256,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    target_layer="features.14",
    tags=("seed000",),
)
def vgg(
    num_classes: int = 1,
    pretrained: bool = False,
    widths: tuple[int, ...] = (64, 128, 256, 512),
    hidden: int = 256,
    dropout: float = 0.5,
    in_channels: int = 3,
) -> SeedVGG:
    return SeedVGG(num_classes, tuple(widths), hidden, dropout, in_channels)
