"""Segmentation models: per-pixel logits B x num_classes x H x W at the input's height and width.

Importing this package registers every segmenter (registry task ``"segmentation"``): seed 001's
UNet (:mod:`.unet`), torchvision's DeepLabV3 (:mod:`.deeplabv3`) and UNets over the
EfficientNet-Lite encoders with ImageNet weights (:mod:`.unet_efficientnet_lite`). Every builder
takes ``num_classes`` (mask classes, softmax over them) and ``pretrained``.
"""

from covidlens.models.segmentation import deeplabv3, unet, unet_efficientnet_lite  # noqa: F401  (registration)
