import torch
from torch import nn

from covidlens.models import create_model, get_model_spec


def test_features_stay_one_flat_sequence_so_target_layers_and_old_keys_hold():
    vgg = create_model("vgg")
    # conv, BN, ReLU, pool per stage: the last stage's ReLU is features.14 (the CAM target).
    assert isinstance(vgg.features[14], nn.ReLU) and get_model_spec("vgg").target_layer == "features.14"
    assert isinstance(vgg.features[12], nn.Conv2d) and vgg.features[12].bias is None
    keys = set(vgg.state_dict())
    assert {"features.0.weight", "features.1.running_mean", "features.4.weight", "classifier.1.weight"} <= keys
    cnn = create_model("simple_cnn", widths=(8, 16, 24))
    assert isinstance(cnn.features[10], nn.ReLU) and get_model_spec("simple_cnn").target_layer == "features.10"
    assert cnn.features[8].out_channels == 24


def test_vgg_options_reach_the_network():
    torch.manual_seed(0)
    model = create_model("vgg", num_classes=2, widths=(8, 16), hidden=12, dropout=0.1, in_channels=1).eval()
    assert model.classifier[1].out_features == 12 and model.classifier[3].p == 0.1
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 2)
