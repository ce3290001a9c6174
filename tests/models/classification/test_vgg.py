"""Seed 004's VGG16-BN and its preset: 1 grey channel at 150 px, and an augmentation that only translates."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from covidlens.data.datasets import Sample, SampleTable
from covidlens.models import create_model, get_model_spec
from covidlens.training.config import load_config
from covidlens.training.classification import build_datamodule

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "seed004_vgg16bn.yaml"
SEED_PARAMETERS = 65_090_499  # seed 004's Fig. 3: 1 channel, 3 classes, 150x150


def test_vgg16_bn_on_one_grey_channel_is_the_seeds_network_and_gives_k_logits_at_150_px():
    torch.manual_seed(0)
    model = create_model("vgg16_bn", num_classes=3, in_channels=1).eval()
    assert sum(p.numel() for p in model.parameters()) == SEED_PARAMETERS
    assert model.features[0].in_channels == 1
    with torch.no_grad():
        assert model.features(torch.zeros(1, 1, 150, 150)).shape == (1, 512, 4, 4)
        logits = model(torch.randn(2, 1, 150, 150))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    spec = get_model_spec("vgg16_bn")
    assert spec.input_size == 150 and spec.mean[0] == 0.5 and spec.std[0] == 0.5 and not spec.pretrained_source
    assert isinstance(dict(model.named_modules())[spec.target_layer], nn.ReLU)
    assert isinstance(model.features[43], nn.MaxPool2d)  # target_layer is the last ReLU, just before it


def test_binary_vgg16_bn_gives_one_logit():
    model = create_model("vgg16_bn", num_classes=1, in_channels=1, hidden=32).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 150, 150)).shape == (2, 1)


def _shift(image: np.ndarray, out: np.ndarray, reach: int) -> tuple[int, int] | None:
    """The (dy, dx) with ``out`` = ``image`` moved by it and the uncovered border 0, or None."""
    h, w = image.shape
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            moved = np.zeros_like(image)
            moved[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = image[max(-dy, 0):h - max(dy, 0),
                                                                                 max(-dx, 0):w - max(dx, 0)]
            if np.array_equal(moved, out):
                return dy, dx
    return None


def test_the_seed004_training_transform_only_ever_translates(tmp_path):
    config = load_config(CONFIG)
    size, spec = config.model.input_size, get_model_spec(config.model.name)
    rng = np.random.default_rng(0)
    # Noise from 1 to 255: any flip or rotation is told apart from a shift, and 0 only comes from the border.
    image = rng.integers(1, 256, (size, size), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(image).save(path)
    table = SampleTable("toy", ["normal", "covid", "non-covid"], [Sample(path, 0, "train", "p")], modality="cxr")
    transform = build_datamodule(config, table).datamodule.train_transform  # exactly what the trainer applies
    reach = int(np.ceil(config.augment.translate * size))
    assert _shift(image, np.fliplr(image), reach) is None and _shift(image, np.rot90(image), reach) is None
    shifts = []
    for draw in range(40):
        torch.manual_seed(draw)
        x = transform(Image.fromarray(image))
        assert x.shape[-2:] == (size, size)
        grey = np.rint((x[0].numpy() * spec.std[0] + spec.mean[0]) * 255).astype(np.uint8)
        shift = _shift(image, grey, reach)
        assert shift is not None, f"draw {draw} is not a translation of the input"
        shifts.append(shift)
    assert len(set(shifts)) > 5  # it does translate
