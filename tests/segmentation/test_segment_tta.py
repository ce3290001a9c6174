"""Flip test-time augmentation of the lesion model: with it, the mirrored slice gets the mirrored
probabilities (without it an untrained network has no such symmetry), and the CLI takes --tta."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from covidlens.checkpoint import ModelInfo, load_checkpoint, save_checkpoint
from covidlens.models import create_model
from covidlens.segmentation.predict import segment_batch


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("unet_seg", num_classes=2, base_channels=4).eval()
    info = ModelInfo(model="unet_seg", classes=["background", "infection"], input_size=64, mean=[0.5] * 3,
                     std=[0.5] * 3, task="segmentation", num_outputs=2, model_kwargs={"base_channels": 4},
                     dataset="medseg-infnet")
    return load_checkpoint(save_checkpoint(model, info, tmp_path_factory.mktemp("seg") / "model"))


def test_flip_tta_makes_the_prediction_mirror_symmetric(segmenter, data_root):
    path = sorted((data_root / "ct" / "medseg-infnet").rglob("*.jpg"))[0]
    image = Image.open(path).convert("L").resize((96, 80))
    mirrored = ImageOps.mirror(image)
    with_tta = segment_batch(segmenter, [image, mirrored], tta=True)
    plain = segment_batch(segmenter, [image, mirrored], tta=False)
    assert np.allclose(with_tta[0], with_tta[1][:, :, ::-1], atol=1e-5)
    assert not np.allclose(plain[0], plain[1][:, :, ::-1], atol=1e-3)
    assert np.allclose(with_tta[0].sum(axis=0), 1.0, atol=1e-5)
    assert np.allclose(with_tta[0], (plain[0] + plain[1][:, :, ::-1]) / 2, atol=1e-5)
