"""Image classifiers: one logit per class (a single logit for a binary task).

Importing this package registers every classifier: seed 000's SimpleCNN and VGG (:mod:`.seed000`)
and its UNet family (:mod:`.unet_classifier`), seed 003's improved ResNet50 (:mod:`.resnet_fpn`),
torchvision's ImageNet backbones (:mod:`.torchvision_models`) and EfficientNet-Lite0
(:mod:`.efficientnet_lite`), and seed 004's VGG16-BN (:mod:`.vgg`).
"""

from covidlens.models.classification import (  # noqa: F401  (registration)
    efficientnet_lite,
    resnet_fpn,
    seed000,
    torchvision_models,
    unet_classifier,
    vgg,
)
