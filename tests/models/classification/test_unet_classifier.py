import pytest
import torch

from covidlens.models import create_model, get_model_spec, list_models
from covidlens.models.blocks import FPRM, SCSE, ECAsE, OutConv
from covidlens.models.classification.unet_classifier import DResUNetClassifier, ResUNetClassifier, UNetClassifier

SEED000 = [
    "unet_classifier",
    "resunet_classifier",
    "resunet_ecsa_classifier",
    "resunet_fprm_classifier",
    "dresunet_classifier",
]


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_full_width_unet_has_the_seeds_parameter_count():
    # Seed 000: "about 28 M (... with transpose convolution about 31 M)", 7.75 M at half and < 2 M
    # at a quarter of the channels.
    full = count(UNetClassifier(base_channels=64, bilinear=False))
    assert 28e6 <= full <= 31.5e6
    assert full == count(create_model("unet_classifier", full_width=True))
    half = count(UNetClassifier(base_channels=32))
    assert abs(half - 7.75e6) / 7.75e6 < 0.01
    assert count(UNetClassifier(base_channels=16)) < 2e6
    # Bilinear upsampling halves the bottleneck: a much smaller network.
    assert count(UNetClassifier(base_channels=64, bilinear=True)) < full * 0.6


def test_seed000_models_are_registered_with_seed_settings():
    for name in SEED000:
        assert name in list_models(task="classification", modality="ct")
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
    [
        (UNetClassifier, {}),
        (UNetClassifier, {"bilinear": True}),
        (ResUNetClassifier, {"fprm": True, "bilinear": True}),
        (DResUNetClassifier, {}),
        (DResUNetClassifier, {"bilinear": True}),
    ],
)
def test_unets_handle_sizes_that_are_not_multiples_of_16(cls, kwargs):
    model = cls(base_channels=4, **kwargs)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 50, 37)).shape == (1, 1)


def test_resunet_variants_use_the_attention_the_seed_names():
    def kinds(model):
        return {type(m) for m in model.modules()}

    plain = kinds(create_model("resunet_classifier"))
    assert SCSE not in plain and ECAsE not in plain
    assert SCSE in kinds(create_model("resunet_classifier", attention="scse"))
    ecsa = kinds(create_model("resunet_ecsa_classifier"))
    assert ECAsE in ecsa and SCSE not in ecsa
    assert FPRM in kinds(create_model("resunet_fprm_classifier"))
    dres = create_model("dresunet_classifier")
    assert isinstance(dres.x5.attention, ECAsE) and FPRM in kinds(dres)


def test_builder_arguments_reach_the_network():
    model = create_model("dresunet_classifier", in_channels=1, base_channels=4, hidden=7)
    assert model.x1[0].in_channels == 1 and model.x1[0].out_channels == 4
    assert model.classifier[0].out_features == 7
    assert create_model("unet_classifier", base_channels=8, full_width=True).inc[0].out_channels == 64
    assert create_model("resunet_classifier", bilinear=True).bilinear


def test_dresunet_gradients_reach_the_offset_convolutions():
    torch.manual_seed(0)
    model = create_model("dresunet_classifier", base_channels=4)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    for block in (model.x2, model.x3, model.x4, model.x5):
        grad = block.deform.offset_conv.weight.grad
        assert grad is not None and grad.abs().sum() > 0
    assert model.head_conv[0].offset_conv.weight.grad.abs().sum() > 0


def test_unet_head_equals_the_seeds_outconv_then_global_pooling():
    torch.manual_seed(0)
    model = UNetClassifier(num_classes=3, base_channels=4).eval()
    outc = OutConv(4, 3)
    outc.weight.data = model.fc.weight.data[:, :, None, None].clone()
    outc.bias.data = model.fc.bias.data.clone()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), outc(model.forward_features(x)[-1]).mean(dim=(2, 3)), atol=1e-5)


def test_state_dict_keys_are_those_of_checkpoints_saved_before_the_move():
    """Keys as the hand-written conv-BN-ReLU layers wrote them before Conv2dNormActivation and the
    move to models/classification: checkpoints of the old names keep loading strictly."""
    unet = create_model("unet_classifier", base_channels=4).state_dict()
    for key in ("inc.0.weight", "inc.1.running_var", "inc.3.weight", "inc.4.num_batches_tracked",
                "down1.1.0.weight", "up1.up.weight", "up1.conv.4.bias", "fc.weight"):
        assert key in unet, key
    assert "inc.2.weight" not in unet and "inc.0.bias" not in unet  # ReLU at 2; conv without bias
    resunet = create_model("resunet_fprm_classifier", base_channels=4).state_dict()
    for key in ("inc.body.0.weight", "inc.body.4.running_mean", "inc.shortcut.0.weight", "inc.shortcut.1.weight",
                "inc.attention.cse.fc.0.weight", "fprm.lateral.0.weight", "fprm.refine.0.0.weight",
                "fprm.refine.0.1.running_mean", "fprm.fuse.0.weight"):
        assert key in resunet, key
    dres = create_model("dresunet_classifier", base_channels=4).state_dict()
    for key in ("x1.0.weight", "x1.1.running_mean", "x2.deform.weight", "x2.deform.offset_conv.bias",
                "x2.body.0.weight", "x2.body.2.weight", "x2.body.3.running_var", "x2.body.5.weight",
                "x2.body.6.bias", "x2.project.0.weight", "x2.project.1.weight", "x3.shortcut.0.weight",
                "x44.conv.0.0.weight", "x44.conv.1.cse.fc.0.weight", "head_conv.0.weight", "head_conv.1.running_mean",
                "classifier.2.weight"):
        assert key in dres, key
    assert len(dres) == 247 and len(unet) == 118  # counts at the commit before the move
