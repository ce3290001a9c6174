"""VGG16 with batch normalisation as seed 004 (the SUTD 50.039 small-project report) trained it.

The seed's Fig. 3 lists the network layer by layer: torchvision's ``vgg16_bn`` convolutional part
(thirteen 3x3 convolutions, each followed by batch norm and ReLU, in five stages of 64-128-256-512-512
channels closed by 2x2 max pooling) on a 1-channel 150x150 input, then a classifier of its own: the
4x4x512 map flattened, ``Linear(8192, 4096)``, ``BatchNorm1d``, ReLU, ``Linear(4096, 4096)``,
``BatchNorm1d``, ReLU, ``Linear(4096, K)``; no dropout. With one input channel and three classes that
is 65,090,499 parameters, the seed's total. Choices made where the seed is silent or differs from
torchvision:

* the layers keep torchvision's ``vgg16_bn`` indices (``features.0`` ... ``features.43``), so its
  state-dict keys and the CAM target ``features.42`` (the last ReLU) read the same;
* PyTorch's default initialisation everywhere, as the seed says it used (torchvision re-initialises
  convolutions with Kaiming normal);
* an adaptive average pool to 4x4 before the classifier: at the seed's 150 px the map already is
  4x4 and the pool does nothing; at other sizes it lets the same classifier run.

From scratch only: the seed trained without pretrained weights, and no weights come with it.
"""

from __future__ import annotations

from torch import nn

from covidlens.models.registry import register_model

#: torchvision's configuration "D": output channels of each 3x3 convolution, "M" a 2x2 max pool.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
#: Side of the feature map the classifier reads (150 px halved five times, rounded down).
POOLED_SIDE = 4


class VGG16BN(nn.Module):
    def __init__(self, num_classes: int = 3, in_channels: int = 1, hidden: int = 4096):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(POOLED_SIDE)
        self.classifier = nn.Sequential(
            nn.Linear(channels * POOLED_SIDE * POOLED_SIDE, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@register_model(
    "vgg16_bn",
    description="seed 004 VGG16 with batch norm (torchvision's vgg16_bn layers, the seed's BN classifier), from scratch",
    input_size=150,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    target_layer="features.42",
    tags=("seed004",),
)
def vgg16_bn(num_classes: int = 1, pretrained: bool = False, in_channels: int = 3, hidden: int = 4096) -> VGG16BN:
    return VGG16BN(num_classes=num_classes, in_channels=in_channels, hidden=hidden)
