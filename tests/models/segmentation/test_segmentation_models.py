"""Segmenters: one forward contract (B x K x H x W logits at the input's size), registered apart
from the classifiers, and pretrained encoders that really hold the published weights."""

from urllib.error import URLError

import pytest
import torch
import torchvision

from covidlens.errors import CovidlensError
from covidlens.models import create_model, get_model_spec, list_models, model_arguments
from covidlens.models.classification.efficientnet_lite import LITE_VARIANTS
from covidlens.models.segmentation import deeplabv3

SEGMENTERS = [
    "deeplabv3_mobilenet_v3",
    "deeplabv3_resnet50",
    "unet_efficientnet_lite0",
    "unet_efficientnet_lite1",
    "unet_efficientnet_lite2",
    "unet_seg",
]


def test_the_registry_lists_exactly_the_segmenters_for_segmentation():
    assert list_models(task="segmentation") == SEGMENTERS
    assert not set(SEGMENTERS) & set(list_models(task="classification"))
    assert list_models(task="segmentation", modality="ct") == SEGMENTERS
    assert list_models(task="segmentation", modality="cxr") == SEGMENTERS
    assert list_models(task="segmentation", pretrained=False) == ["unet_seg"]


@pytest.mark.parametrize("name", SEGMENTERS)
@pytest.mark.parametrize("num_classes", [2, 3])
def test_every_segmenter_returns_logits_at_the_input_size_and_trains(name, num_classes):
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes)
    for size in [(64, 64), (64, 96)]:
        model.zero_grad()
        x = torch.randn(2, 3, *size)
        out = model(x)
        assert isinstance(out, torch.Tensor) and out.shape == (2, num_classes, *size)
        torch.nn.functional.cross_entropy(out, torch.randint(0, num_classes, (2, *size))).backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None for g in grads) and all(g.abs().sum() > 0 for g in grads[-2:])


@pytest.mark.parametrize("name", SEGMENTERS)
def test_every_segmenter_declares_how_to_feed_it(name):
    spec = get_model_spec(name)
    assert spec.task == "segmentation" and spec.target_layer == ""
    assert spec.input_size % 32 == 0
    expected_mean = (0.485, 0.456, 0.406) if name.startswith("deeplabv3") else (0.5, 0.5, 0.5)
    assert spec.mean == expected_mean


def test_unet_width_multiplier_sets_the_size():
    """Base 64 is the original UNet (31.0 M with transposed convolutions); each halving of the
    width divides the parameters by about four."""
    sizes = {
        b: sum(p.numel() for p in create_model("unet_seg", num_classes=2, base_channels=b).parameters())
        for b in (16, 32, 64)
    }
    assert sizes == {16: 1_942_594, 32: 7_763_074, 64: 31_037_698}
    assert list(model_arguments("unet_seg")) == ["in_channels", "base_channels", "bilinear"]
    assert create_model("unet_seg", num_classes=3, bilinear=True)(torch.randn(2, 3, 64, 64)).shape == (2, 3, 64, 64)


def test_unknown_segmenter_argument_is_refused_with_a_sentence():
    with pytest.raises(CovidlensError, match="^model 'deeplabv3_resnet50' has no argument 'aux_loss'"):
        create_model("deeplabv3_resnet50", aux_loss=True)


def _lite_file(index: int) -> dict[str, torch.Tensor]:
    path = LITE_VARIANTS[f"efficientnet_lite{index}"].weights_path()
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_lite_unet_encoder_holds_the_packages_imagenet_weights(index):
    state = _lite_file(index)
    model = create_model(f"unet_efficientnet_lite{index}", num_classes=2, pretrained=True)
    encoder = model.encoder.state_dict()
    assert set(encoder) == {k for k in state if not k.startswith(("_conv_head.", "_bn1.", "_fc."))}
    for key in ("_conv_stem.weight", "_blocks.5._depthwise_conv.weight", "_blocks.15._bn2.running_var"):
        assert torch.equal(encoder[key], state[key])
    scratch = create_model(f"unet_efficientnet_lite{index}", num_classes=2).encoder.state_dict()
    assert not torch.equal(scratch["_conv_stem.weight"], state["_conv_stem.weight"])


def test_lite_unet_encoder_is_the_classifiers_trunk():
    """The segmenter's encoder computes exactly the pretrained classifier's stage outputs."""
    seg = create_model("unet_efficientnet_lite1", pretrained=True).eval()
    clf = create_model("efficientnet_lite1", num_classes=1000, pretrained=True).eval()
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        ours, theirs = seg.encoder.features(x), clf.features(x)
    assert [f.shape[1] for f in ours] == [16, 24, 40, 112, 320]
    assert [f.shape[-2:] for f in ours] == [(96 // s, 64 // s) for s in (2, 4, 8, 16, 32)]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize(
    "name, classifier, prefix",
    [
        ("deeplabv3_resnet50", torchvision.models.resnet50, ""),
        ("deeplabv3_mobilenet_v3", torchvision.models.mobilenet_v3_large, "features."),
    ],
)
def test_deeplab_pretrained_loads_the_imagenet_classifier_into_its_backbone(monkeypatch, name, classifier, prefix):
    """The backbone takes every tensor of torchvision's ImageNet classifier but its head (the file
    itself needs the network, so a classifier's state dict of the same layout stands in for it)."""
    torch.manual_seed(1)
    imagenet = classifier(weights=None).state_dict()
    monkeypatch.setattr(deeplabv3, "_imagenet_state_dict", lambda weights: imagenet)
    backbone = create_model(name, num_classes=2, pretrained=True).net.backbone.state_dict()
    first = next(iter(backbone))
    assert torch.equal(backbone[first], imagenet[prefix + first])
    assert len(backbone) == len([k for k in imagenet if not k.startswith(("fc.", "classifier."))])


def test_deeplab_pretrained_offline_names_the_file_and_the_cache(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(CovidlensError) as err:
        create_model("deeplabv3_mobilenet_v3", pretrained=True)
    message = str(err.value)
    file = torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    assert file in message and str(tmp_path / "checkpoints" / file) in message and "\n" not in message
