"""The registry: every model builds, trains a step and says what it is; names, filters and
arguments are checked before anything is built."""

import inspect

import pytest
import torch
from torch import nn

from covidlens.errors import CovidlensError
from covidlens.models import (
    LEGACY_NAMES,
    create_model,
    get_model_spec,
    list_models,
    model_arguments,
    register_model,
    upgrade_keys,
)
from covidlens.models.registry import _REGISTRY, MODALITIES, TASKS


@pytest.mark.parametrize("name", list_models(task="classification"))
@pytest.mark.parametrize("num_classes", [1, 3])
def test_every_registered_classifier_runs_forward_and_backward(name, num_classes):
    """Segmenters have their own forward contract, checked in tests/models/segmentation."""
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


@pytest.mark.parametrize("name", list_models())
def test_every_model_declares_its_task_and_modalities(name):
    spec = get_model_spec(name)
    assert spec.task in TASKS
    assert spec.modalities and set(spec.modalities) <= set(MODALITIES)


def test_the_classifiers_are_registered_for_classification_on_ct_and_cxr():
    classifiers = list_models(task="classification")
    expected = {"simple_cnn", "unet_classifier", "dresunet_classifier", "resnet50_fpn_attention", "efficientnet_lite0"}
    assert expected <= set(classifiers)
    assert list_models(task="classification", modality="ct") == classifiers
    assert list_models(task="classification", modality="cxr") == classifiers


@pytest.fixture
def toy_models():
    """Two throw-away entries that differ in task, modality and weights, removed afterwards."""

    def seg(num_classes=1, pretrained=False):
        return nn.Conv2d(3, num_classes, 1)

    names = {"toy_seg_ct": ("segmentation", ("ct",), ""), "toy_cls_cxr": ("classification", ("cxr",), "test:weights")}
    for name, (task, modalities, source) in names.items():
        register_model(name, description="test-only", task=task, modalities=modalities, pretrained_source=source)(seg)
    yield names
    for name in names:
        del _REGISTRY[name]


def test_list_models_filters_by_task_modality_and_weights(toy_models):
    assert "toy_seg_ct" in list_models()
    assert "toy_seg_ct" in list_models(task="segmentation")
    assert "toy_seg_ct" not in list_models(task="classification")
    assert "toy_cls_cxr" not in list_models(task="segmentation")
    assert "toy_seg_ct" in list_models(modality="ct") and "toy_seg_ct" not in list_models(modality="cxr")
    assert "toy_cls_cxr" in list_models(modality="cxr") and "toy_cls_cxr" not in list_models(modality="ct")
    assert "toy_cls_cxr" in list_models(pretrained=True, modality="cxr", task="classification")
    assert "toy_cls_cxr" not in list_models(pretrained=False)
    assert "vgg" in list_models(pretrained=False) and "vgg" not in list_models(pretrained=True)
    assert "resnet18" in list_models(pretrained=True, task="classification", modality="ct")
    assert "toy_seg_ct" not in list_models(task="segmentation", modality="cxr")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "detection"}, "unknown task 'detection'; choose one of: classification, segmentation."),
        ({"modality": "mri"}, "unknown modality 'mri'; choose one of: ct, cxr."),
    ],
)
def test_list_models_refuses_unknown_filters_with_a_sentence(kwargs, message):
    with pytest.raises(CovidlensError) as err:
        list_models(**kwargs)
    assert str(err.value) == message


def test_registration_refuses_bad_declarations():
    def ok(num_classes=1, pretrained=False):
        return nn.Identity()

    def hidden(num_classes=1, pretrained=False, **kwargs):
        return nn.Identity()

    with pytest.raises(ValueError, match="task must be one of"):
        register_model("toy_bad_task", description="x", task="detection")(ok)
    with pytest.raises(ValueError, match="modalities must be"):
        register_model("toy_bad_modality", description="x", modalities=("mri",))(ok)
    with pytest.raises(ValueError, match="modalities must be"):
        register_model("toy_no_modality", description="x", modalities=())(ok)
    with pytest.raises(ValueError, match=r"instead of \*kwargs"):
        register_model("toy_hidden", description="x")(hidden)
    with pytest.raises(ValueError, match="must take pretrained"):
        register_model("toy_no_pretrained", description="x")(lambda num_classes=1: nn.Identity())
    with pytest.raises(ValueError, match="old name of 'unet_classifier'"):
        register_model("unet", description="x")
    with pytest.raises(ValueError, match="registered twice"):
        register_model("vgg", description="x")(ok)
    assert not [n for n in _REGISTRY if n.startswith("toy_")]


def test_unknown_model_lists_choices():
    with pytest.raises(CovidlensError, match="choose one of: .*efficientnet_lite0"):
        create_model("resnet9000")


def test_scratch_only_model_refuses_pretrained():
    with pytest.raises(CovidlensError, match="no pretrained weights"):
        create_model("vgg", pretrained=True)


def test_unknown_model_argument_is_refused_with_one_sentence_naming_the_accepted_ones():
    with pytest.raises(CovidlensError) as err:
        create_model("efficientnet_lite0", widthh=2)
    assert str(err.value) == (
        "model 'efficientnet_lite0' has no argument 'widthh'; it takes dropout, drop_connect_rate, bn_momentum."
    )
    with pytest.raises(CovidlensError) as err:
        create_model("resnet18", base_channels=8)
    assert str(err.value) == (
        "model 'resnet18' has no argument 'base_channels'; it takes no arguments besides num_classes and pretrained."
    )
    # An argument of a sibling model is still refused: resunet_fprm_classifier always has its FPRM head.
    with pytest.raises(CovidlensError, match="no argument 'fprm'"):
        create_model("resunet_fprm_classifier", fprm=False)
    with pytest.raises(CovidlensError, match=r"^model 'vgg' has no arguments 'depth', 'width'; it takes widths, hidden"):
        create_model("vgg", depth=3, width=2)


def test_model_arguments_lists_each_models_own_options_with_defaults():
    args = model_arguments("dresunet_classifier")
    assert list(args) == ["in_channels", "base_channels", "full_width", "bilinear", "hidden", "dropout"]
    assert args["base_channels"].default == 16 and args["dropout"].default == 0.5
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in args.values())
    assert model_arguments("resunet_classifier")["attention"].default == "none"
    assert model_arguments("resunet_ecsa_classifier")["attention"].default == "ecase"
    assert dict((k, p.default) for k, p in model_arguments("efficientnet_lite0").items()) == {
        "dropout": 0.2, "drop_connect_rate": 0.2, "bn_momentum": 0.1
    }
    assert list(model_arguments("resnet50_fpn_attention")) == [
        "fpn_channels", "dropout", "attention_reduction", "attention_sub_sample"
    ]
    assert model_arguments("mobilenet_v2") == {}
    assert "num_classes" not in model_arguments("vgg") and "pretrained" not in model_arguments("vgg")


@pytest.mark.parametrize("name", list_models())
def test_every_listed_argument_is_really_accepted(name):
    """Each name model_arguments reports reaches the builder: passing its own default builds the model."""
    defaults = {k: p.default for k, p in model_arguments(name).items()}
    if name == "resnet50_fpn_attention":
        defaults["fpn_channels"] = 32  # keep it small; the default is checked above
    assert isinstance(create_model(name, **defaults), nn.Module)


def test_model_arguments_changes_the_model_it_names():
    assert create_model("vgg", hidden=32).classifier[1].out_features == 32
    assert create_model("efficientnet_lite0", bn_momentum=0.01)._bn0.momentum == 0.01
    assert create_model("simple_cnn", widths=[8, 16]).classifier.in_features == 16


def test_legacy_names_map_to_registered_classifiers():
    assert LEGACY_NAMES == {
        "unet": "unet_classifier",
        "resunet": "resunet_classifier",
        "resunet_ecsa": "resunet_ecsa_classifier",
        "resunet_fprm": "resunet_fprm_classifier",
        "dresunet": "dresunet_classifier",
    }
    for old, new in LEGACY_NAMES.items():
        assert old not in list_models()
        assert get_model_spec(new).task == "classification"
        with pytest.raises(CovidlensError) as err:
            get_model_spec(old)
        assert str(err.value).startswith(f"model {old!r} is now called {new!r}; use the new name")
        assert str(err.value).endswith("LEGACY_NAMES).") and "\n" not in str(err.value)


def test_upgrade_keys_leaves_models_whose_layout_never_changed_alone():
    keys = list(create_model("unet_classifier", base_channels=4).state_dict())
    assert upgrade_keys("unet_classifier", keys) == {k: k for k in keys}
    assert [n for n in list_models() if get_model_spec(n).legacy_key] == ["resnet50_fpn_attention"]
    with pytest.raises(CovidlensError, match="now called 'dresunet_classifier'"):
        upgrade_keys("dresunet", keys)
