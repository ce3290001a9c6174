from urllib.error import URLError

import pytest
import torch

from covidlens.errors import CovidlensError
from covidlens.models import create_model


def test_missing_torchvision_weights_say_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CovidlensError, match=r"download https://.*resnet18.* to .*checkpoints"):
        create_model("resnet18", pretrained=True)


@pytest.mark.parametrize(
    "name, head", [("resnet18", "fc"), ("densenet121", "classifier"), ("mobilenet_v2", "classifier.1")]
)
def test_torchvision_head_is_replaced_for_the_task(name, head):
    model = create_model(name, num_classes=3)
    assert dict(model.named_modules())[head].out_features == 3
