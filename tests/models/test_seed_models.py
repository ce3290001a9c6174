import pytest
import torch
import torchvision

from covidlens.models import create_model, get_model_spec, list_models
from covidlens.models import resnet_fpn, torchvision_models
from covidlens.models.unet import DResUNet, ResUNet, UNet

SEED000 = ["unet", "resunet", "resunet_ecsa", "resunet_fprm", "dresunet"]


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_full_width_unet_has_the_seeds_parameter_count():
    # Seed 000: "about 28 M (... with transpose convolution about 31 M)", 7.75 M at half and < 2 M
    # at a quarter of the channels.
    full = count(UNet(base_channels=64, bilinear=False))
    assert 28e6 <= full <= 31.5e6
    assert full == count(create_model("unet", full_width=True))
    half = count(UNet(base_channels=32))
    assert abs(half - 7.75e6) / 7.75e6 < 0.01
    assert count(UNet(base_channels=16)) < 2e6
    # Bilinear upsampling halves the bottleneck: a much smaller network.
    assert count(UNet(base_channels=64, bilinear=True)) < full * 0.6


def test_seed000_models_are_registered_with_seed_settings():
    for name in SEED000:
        assert name in list_models()
        spec = get_model_spec(name)
        assert spec.tags == ("seed000",) and spec.input_size == 256
        assert spec.mean == spec.std == (0.5, 0.5, 0.5)
        assert not spec.pretrained_source


@pytest.mark.parametrize("name", SEED000)
def test_seed000_model_forward_at_64_px(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=2, base_channels=8).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "cls, kwargs",
    [(UNet, {}), (UNet, {"bilinear": True}), (ResUNet, {"fprm": True, "bilinear": True}), (DResUNet, {}), (DResUNet, {"bilinear": True})],
)
def test_unets_handle_sizes_that_are_not_multiples_of_16(cls, kwargs):
    model = cls(base_channels=4, **kwargs)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 50, 37)).shape == (1, 1)


def test_resunet_variants_use_the_attention_the_seed_names():
    from covidlens.models.blocks import SCSE, ECAsE, FPRM

    def kinds(model):
        return {type(m) for m in model.modules()}

    assert SCSE not in kinds(create_model("resunet")) and ECAsE not in kinds(create_model("resunet"))
    assert SCSE in kinds(create_model("resunet", attention="scse"))
    assert ECAsE in kinds(create_model("resunet_ecsa")) and SCSE not in kinds(create_model("resunet_ecsa"))
    assert FPRM in kinds(create_model("resunet_fprm"))
    dres = create_model("dresunet")
    assert isinstance(dres.x5.attention, ECAsE) and FPRM in kinds(dres)


def test_dresunet_gradients_reach_the_offset_convolutions():
    torch.manual_seed(0)
    model = create_model("dresunet", base_channels=4)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    for block in (model.x2, model.x3, model.x4, model.x5):
        grad = block.deform.offset_conv.weight.grad
        assert grad is not None and grad.abs().sum() > 0
    assert model.head_conv[0].offset_conv.weight.grad.abs().sum() > 0


def test_resnet50_fpn_attention_structure_and_forward():
    torch.manual_seed(0)
    model = create_model("resnet50_fpn_attention", num_classes=3).eval()
    for layer in (model.layer2, model.layer3, model.layer4):
        assert isinstance(layer[-1], resnet_fpn.AttentionBottleneck)
        assert isinstance(layer[-1].attention, resnet_fpn.NonLocal2d)
    assert not isinstance(model.layer1[-1], resnet_fpn.AttentionBottleneck)
    with torch.no_grad():
        pyramid = model.forward_pyramid(torch.randn(2, 3, 64, 64))
    assert [tuple(p.shape[1:]) for p in pyramid] == [(256, 16, 16), (256, 8, 8), (256, 4, 4), (256, 2, 2)]
    spec = get_model_spec("resnet50_fpn_attention")
    assert spec.pretrained_source == get_model_spec("resnet50").pretrained_source


def test_non_local_block_starts_as_identity_and_attends_over_positions():
    torch.manual_seed(0)
    block = resnet_fpn.NonLocal2d(8).eval()
    x = torch.randn(2, 8, 5, 6)
    assert torch.allclose(block(x), x)
    attn = block.attention_map(x)
    assert attn.shape == (2, 30, 30)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 30))


def test_resnet50_fpn_attention_loads_imagenet_weights_into_the_backbone(monkeypatch):
    reference = torchvision.models.resnet50().state_dict()
    monkeypatch.setattr(torchvision_models, "_imagenet_state_dict", lambda weights: reference)
    model = create_model("resnet50_fpn_attention", pretrained=True)
    mine = model.state_dict()
    for key, value in reference.items():
        if not key.startswith("fc."):
            assert torch.equal(mine[key], value), key
    assert model.fc.out_features == 1


def test_unet_head_equals_the_seeds_outconv_then_global_pooling():
    from covidlens.models.unet import OutConv

    torch.manual_seed(0)
    model = UNet(num_classes=3, base_channels=4).eval()
    outc = OutConv(4, 3)
    outc.weight.data = model.fc.weight.data[:, :, None, None].clone()
    outc.bias.data = model.fc.bias.data.clone()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), outc(model.forward_features(x)[-1]).mean(dim=(2, 3)), atol=1e-5)
