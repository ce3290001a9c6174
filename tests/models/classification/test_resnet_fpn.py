from collections import OrderedDict

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

from covidlens.models import create_model, get_model_spec, upgrade_keys
from covidlens.models.classification import resnet_fpn, torchvision_models


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("resnet50_fpn_attention", num_classes=3, fpn_channels=64).eval()


def test_resnet50_fpn_attention_structure_and_forward(model):
    for layer in (model.layer2, model.layer3, model.layer4):
        assert isinstance(layer[-1], resnet_fpn.AttentionBottleneck)
        assert isinstance(layer[-1].attention, resnet_fpn.NonLocal2d)
    assert not isinstance(model.layer1[-1], resnet_fpn.AttentionBottleneck)
    with torch.no_grad():
        pyramid = model.forward_pyramid(torch.randn(2, 3, 64, 64))
    assert [tuple(p.shape[1:]) for p in pyramid] == [(64, 16, 16), (64, 8, 8), (64, 4, 4), (64, 2, 2)]
    assert isinstance(model.fpn, torchvision.ops.FeaturePyramidNetwork)
    spec = get_model_spec("resnet50_fpn_attention")
    assert spec.pretrained_source == get_model_spec("resnet50").pretrained_source


def test_pyramid_is_the_standard_top_down_fpn(model):
    """P5 = 3x3(lateral(C5)); P4 = 3x3(lateral(C4) + nearest-upsampled merged level 5), at odd sizes."""
    fpn = model.fpn
    feats = [torch.randn(1, c, s, s) for c, s in zip((256, 512, 1024, 2048), (13, 7, 4, 2))]
    with torch.no_grad():
        out = list(fpn(OrderedDict(zip("abcd", feats))).values())
        m5 = fpn.inner_blocks[3](feats[3])
        m4 = fpn.inner_blocks[2](feats[2]) + torch.nn.functional.interpolate(m5, size=(4, 4), mode="nearest")
        assert torch.allclose(out[3], fpn.layer_blocks[3](m5), atol=1e-5)
        assert torch.allclose(out[2], fpn.layer_blocks[2](m4), atol=1e-5)
    assert [o.shape[-1] for o in out] == [13, 7, 4, 2]


def _old_layout(state):
    """The keys covidlens's own FPN wrote before it used torchvision's (fpn.lateral.i / fpn.output.i)."""
    renamed = {}
    for key, value in state.items():
        key = key.replace("fpn.inner_blocks.", "fpn.lateral.").replace("fpn.layer_blocks.", "fpn.output.")
        if key.startswith(("fpn.lateral.", "fpn.output.")):
            head, index, _zero, param = key.rsplit(".", 3)
            key = f"{head}.{index}.{param}"
        renamed[key] = value
    return renamed


def test_checkpoints_with_the_old_pyramid_keys_load_strictly_and_predict_the_same(model, tmp_path):
    old = _old_layout(model.state_dict())
    assert "fpn.lateral.0.weight" in old and "fpn.output.3.bias" in old and not any("inner_blocks" in k for k in old)
    save_file({k: v.contiguous() for k, v in old.items()}, str(tmp_path / "old.safetensors"))
    torch.manual_seed(1)
    fresh = create_model("resnet50_fpn_attention", num_classes=3, fpn_channels=64).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), model(x))
        fresh.load_state_dict(load_file(str(tmp_path / "old.safetensors")), strict=True)
        assert torch.allclose(fresh(x), model(x), atol=1e-6)
    fresh.load_state_dict(model.state_dict(), strict=True)  # the new layout loads too


def test_upgrade_keys_names_the_old_pyramid_keys_as_todays_model_does(model):
    """What a checkpoint reader checks before building: the mapped stored names are the model's."""
    current = list(model.state_dict())
    mapping = upgrade_keys("resnet50_fpn_attention", _old_layout(model.state_dict()))
    assert sorted(mapping.values()) == sorted(current)
    assert mapping["fpn.lateral.2.weight"] == "fpn.inner_blocks.2.0.weight"
    assert mapping["fpn.output.0.bias"] == "fpn.layer_blocks.0.0.bias"
    assert upgrade_keys("resnet50_fpn_attention", current) == {k: k for k in current}


def test_non_local_block_starts_as_identity_and_attends_over_positions():
    torch.manual_seed(0)
    block = resnet_fpn.NonLocal2d(8).eval()
    x = torch.randn(2, 8, 5, 6)
    assert torch.allclose(block(x), x)
    attn = block.attention_map(x)
    assert attn.shape == (2, 30, 30)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 30))
    assert set(block.state_dict()) >= {"out.0.weight", "out.1.weight", "out.1.running_mean"}


def test_resnet50_fpn_attention_loads_imagenet_weights_into_the_backbone(monkeypatch):
    reference = torchvision.models.resnet50().state_dict()
    monkeypatch.setattr(torchvision_models, "_imagenet_state_dict", lambda weights: reference)
    model = create_model("resnet50_fpn_attention", pretrained=True, fpn_channels=32)
    mine = model.state_dict()
    for key, value in reference.items():
        if not key.startswith("fc."):
            assert torch.equal(mine[key], value), key
    assert model.fc.out_features == 1
