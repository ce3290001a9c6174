"""Segmentation training: masks read right, augmentation keeps image and mask aligned, validation
slices carved deterministically, and a real 2-epoch run on MedSeg exports a reloadable checkpoint."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from covidlens.checkpoint import load_checkpoint
from covidlens.data.datamodule import carve_validation, read_image_and_mask, read_mask
from covidlens.data.datasets import Sample, load_dataset
from covidlens.data.transforms import SegmentationEvalPreset, SegmentationTrainPreset
from covidlens.errors import CovidlensError
from covidlens.models import create_model
from covidlens.segmentation import segment_batch
from covidlens.training.fit import train
from tests.segmentation.runs import tiny_segmentation_config, tiny_segmentation_run

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@pytest.fixture(scope="module")
def seg_run(data_root, tmp_path_factory):
    return tiny_segmentation_run(data_root, tmp_path_factory)


def _drawn():
    """A dark slice with a bright off-centre blob, and the mask of exactly that blob."""
    grey = np.full((90, 120), 30, dtype=np.uint8)
    mask = np.zeros((90, 120), dtype=np.int64)
    grey[15:45, 10:50] = 220
    mask[15:45, 10:50] = 1
    grey[60:75, 90:110] = 220  # a second blob of class 2
    mask[60:75, 90:110] = 2
    return Image.fromarray(grey), mask


def _bright_under_mask(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Share of bright pixels that lie on the mask, and of mask pixels that are bright; "bright" is
    above the middle of the slice's own range, which brightness and contrast jitter move."""
    grey = x[0]
    bright = grey > (grey.min() + grey.max()) / 2
    on = y > 0
    return float((bright & on).sum() / bright.sum()), float((bright & on).sum() / on.sum())


def test_augmentation_moves_image_and_mask_together():
    image, mask = _drawn()
    preset = SegmentationTrainPreset(64, MEAN, STD, 3, crop_scale=0.5, hflip=0.5, brightness=0.3, contrast=0.3,
                                     rotation=20, translate=0.1)
    torch.manual_seed(0)
    checked = 0
    for _ in range(20):
        x, y = preset(image, mask)
        assert x.shape == (3, 64, 64) and y.shape == (64, 64) and y.dtype == torch.int64
        assert set(torch.unique(y).tolist()) <= {0, 1, 2}
        if y.sum() == 0:  # the crop missed both blobs
            continue
        bright_on_mask, mask_bright = _bright_under_mask(x, y)
        assert bright_on_mask > 0.8 and mask_bright > 0.8  # edges: bilinear image, nearest mask
        checked += 1
    assert checked >= 10
    # the check can fail: a mask flipped on its own no longer covers the bright pixels
    x, y = SegmentationEvalPreset(64, MEAN, STD)(image, mask)
    assert min(_bright_under_mask(x, y)) > 0.95
    assert _bright_under_mask(x, torch.flip(y, dims=[1]))[0] < 0.3


def test_binary_and_palette_masks_read_as_class_indices_turned_with_the_image(data_root):
    binary = load_dataset("medseg-infnet", data_root).split("train")[0]
    multi = load_dataset("medseg-infnet-multiclass", data_root).split("train")[0]
    assert binary.path == multi.path and binary.rot90 == -1
    raw = np.asarray(Image.open(binary.mask))
    b = read_mask(binary, 2)
    assert set(np.unique(b)) == {0, 1}
    assert np.array_equal(b, np.rot90(raw > 127, -1).astype(np.int64))
    image, m = read_image_and_mask(multi, 3)
    assert m.shape == (image.height, image.width) == raw.shape[::-1]
    assert set(np.unique(m)) <= {0, 1, 2} and (m == 2).any()
    assert np.array_equal(m > 0, b > 0)  # the lesions of the 3-class mask are the binary infection mask
    with pytest.raises(CovidlensError, match="mask classes"):
        read_mask(multi, 2)  # a 3-class palette mask is not silently thresholded into a binary one


def test_a_mask_of_the_wrong_size_is_one_sentence(data_root, tmp_path):
    sample = load_dataset("medseg-infnet", data_root).split("train")[0]
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(small)
    with pytest.raises(CovidlensError, match="must have its image's size"):
        read_image_and_mask(Sample(sample.path, -1, "train", "x", mask=small, rot90=-1), 2)


def test_validation_slices_are_carved_deterministically_from_train(data_root):
    train = load_dataset("medseg-infnet", data_root).split("train")
    kept, val = carve_validation(train, 8, seed=0)
    again_kept, again_val = carve_validation(list(reversed(train)), 8, seed=0)
    assert len(val) == 8 and len(kept) == 42 and {s.group for s in val}.isdisjoint(s.group for s in kept)
    assert {s.path for s in val} == {s.path for s in again_val}
    assert {s.path for s in carve_validation(train, 8, seed=1)[1]} != {s.path for s in val}
    assert all(s.split == "train" for s in val)


def test_a_classifier_on_a_segmentation_set_is_refused_before_any_folder(data_root, tmp_path):
    config = tiny_segmentation_config(data_root, tmp_path, "wrong")
    config.model.name, config.model.kwargs, config.model.pretrained = "efficientnet_lite0", {}, False
    with pytest.raises(CovidlensError, match="segmentation model"):
        train(config, progress=False)
    config = tiny_segmentation_config(data_root, tmp_path, "mixing")
    config.augment.mixing, config.augment.mixing_prob = "mixup", 0.5
    with pytest.raises(CovidlensError, match="mixing"):
        train(config, progress=False)
    assert not (tmp_path / "wrong").exists() and not (tmp_path / "mixing").exists()


def test_two_epoch_run_logs_val_dice_and_exports_a_segmentation_checkpoint(seg_run):
    for rel in ("config.yaml", "model/model.safetensors", "model/model.json", "checkpoints/last.ckpt"):
        assert (seg_run / rel).is_file(), rel
    with (seg_run / "logs" / "metrics.csv").open() as handle:
        dice = [float(r["val_dice"]) for r in csv.DictReader(handle) if r.get("val_dice")]
    assert len(dice) == 2 and all(0.0 <= d <= 1.0 for d in dice)
    info = load_checkpoint(seg_run / "model").info
    assert info.task == "segmentation" and info.classes == ["background", "infection"]
    assert info.num_outputs == 2 and info.positive_class is None and info.input_size == 64


def test_checkpoint_reloads_to_identical_masks(seg_run, data_root):
    samples = load_dataset("medseg-infnet", data_root).split("test")[:4]
    images = [s.image() for s in samples]
    first = segment_batch(load_checkpoint(seg_run / "model"), images)
    second = segment_batch(load_checkpoint(seg_run / "model"), images)
    assert all(p.shape == (2, im.height, im.width) for p, im in zip(first, images))
    assert all(np.allclose(p.sum(0), 1.0, atol=1e-5) for p in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    # the exported weights are the best epoch's Lightning weights
    best = sorted((seg_run / "checkpoints").glob("best-*.ckpt"))[0]
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    ckpt = load_checkpoint(seg_run / "model")
    reference = create_model("unet_seg", num_classes=2, base_channels=8)
    reference.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    ckpt.model.load_state_dict(reference.state_dict())
    third = segment_batch(ckpt, images)
    assert all(np.array_equal(a.argmax(0), b.argmax(0)) for a, b in zip(first, third))


def test_slice_dice_and_the_three_class_loss(data_root, tmp_path):
    from covidlens.training.segmentation import SegmentationModule, slice_dice

    target = torch.zeros(2, 8, 8, dtype=torch.int64)
    target[0, :4, :4] = 1  # slice 0: ground-glass only; slice 1: nothing
    logits = torch.full((2, 3, 8, 8), -5.0)
    logits[:, 0] = 5.0
    logits[0, 1, :4, :2] = 10.0  # half the ground-glass found, no consolidation anywhere
    dice = slice_dice(logits, target)
    assert dice.shape == (2, 2)
    assert dice[0, 0] == pytest.approx(2 * 8 / (8 + 16)) and dice[0, 1] == 1.0  # absent and not predicted
    assert dice[1].tolist() == [1.0, 1.0]
    config = tiny_segmentation_config(data_root, tmp_path, "three", dataset="medseg-infnet-multiclass")
    module = SegmentationModule(config.to_dict(), 3)
    x = torch.randn(2, 3, 64, 64)
    y = torch.randint(0, 3, (2, 64, 64))
    loss = module.loss(module(x), y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in module.model.parameters() if p.requires_grad)
