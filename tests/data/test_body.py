"""The body cut out of an 8-bit CT slice (covidlens.data.body): margins, text and the scanner's padding
go, the patient stays, and slices already cut to the chest are left whole."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from covidlens.data.body import body_crop_and_box, body_mask, crop_to_body
from covidlens.data.datasets import load_dataset
from covidlens.data.io import read_image
from covidlens.data.transforms import EvalPreset, TrainPreset
from covidlens.errors import CovidlensError

# A COVID-CT slice on a black background (body at the top edge), and one of MedSeg's lung crops.
BLACK_BACKGROUND = "ct/covid-ct/CT_COVID/2020.02.24.20027201-p19-670.png"
LUNG_CROP = "ct/medseg-infnet/test/images/18.jpg"


def _in_a_white_figure_with_text(slice_: Image.Image, pad: int = 60) -> tuple[Image.Image, tuple[int, int]]:
    """The slice pasted into a white paper margin with a panel letter and a caption, as in a preprint."""
    figure = Image.new("L", (slice_.width + 2 * pad, slice_.height + 2 * pad), 255)
    figure.paste(slice_, (pad, pad))
    draw = ImageDraw.Draw(figure)
    draw.text((8, 8), "B", fill=0)
    draw.text((pad, slice_.height + pad + 20), "Fig. 3  ground-glass opacity", fill=0)
    return figure, (pad, pad)


def test_a_slice_on_black_keeps_the_body_and_loses_the_background(data_root):
    grey = np.asarray(read_image(data_root / BLACK_BACKGROUND))
    body = body_mask(grey)
    h, w = grey.shape
    assert not body[h - 1, 0] and not body[h - 1, w - 1]  # the dark corners below the body
    assert body[h // 2, w // 2] and body[h // 2, w // 4] and body[h // 2, 3 * w // 4]  # mediastinum and both lungs
    assert 0.5 < body.mean() < 0.95


def test_a_white_figure_margin_and_its_text_are_removed(data_root):
    slice_ = read_image(data_root / BLACK_BACKGROUND)
    figure, (left, top) = _in_a_white_figure_with_text(slice_)
    crop, (rows, cols) = body_crop_and_box(figure)
    # The box lies inside the pasted slice, give or take the box's 2 % margin, so letter and caption
    # are outside it; the margin strip inside the box is blacked out with the rest of the outside.
    dy, dx = 0.03 * slice_.height, 0.03 * slice_.width
    assert rows.start >= top - dy and cols.start >= left - dx
    assert rows.stop <= top + slice_.height + dy and cols.stop <= left + slice_.width + dx
    pixels = np.asarray(crop)
    assert pixels.max() > 200  # the body itself is still there
    assert (pixels[:, :3] == 0).all() and (pixels[:, -3:] == 0).all()  # no white paper at the sides


def test_a_lung_crop_is_kept_whole(data_root):
    grey = np.asarray(read_image(data_root / LUNG_CROP))
    assert body_mask(grey).all()
    assert crop_to_body(Image.fromarray(grey)).size == (grey.shape[1], grey.shape[0])


def test_the_field_of_view_disc_of_a_dicom_slice_is_background(data_root):
    sample = next(s for s in load_dataset("ny-sbu-dicom", data_root).samples if "A002304" in str(s.path))
    grey = np.asarray(sample.image())
    body = body_mask(grey)
    assert not body[0, 0] and not body[0, -1] and not body[-1, 0] and not body[-1, -1]
    assert body[grey.shape[0] // 2, grey.shape[1] // 2]
    assert body.mean() < 0.8  # the disc's padding and the air inside it are both out


def test_blank_and_tiny_images():
    assert body_mask(np.zeros((64, 64), np.uint8)).all()  # nothing to find: keep the image
    with pytest.raises(CovidlensError, match="2-D grey slice"):
        body_mask(np.zeros((4, 4), np.uint8))


def test_presets_cut_to_the_body_before_resizing(data_root):
    slice_ = read_image(data_root / BLACK_BACKGROUND)
    figure, _ = _in_a_white_figure_with_text(slice_)
    mean, std = (0.5,) * 3, (0.5,) * 3
    whole = EvalPreset(64, mean, std)(figure)
    body = EvalPreset(64, mean, std, region="body")(figure)
    assert whole.shape == body.shape == (3, 64, 64)
    # The white margin fills the whole-image corner; the body crop's corner is the blacked-out outside.
    assert whole[0, 0, 0] > 0.9 and body[0, 0, 0] < -0.9
    with pytest.raises(CovidlensError, match="region must be one of"):
        EvalPreset(64, mean, std, region="lungs")


def test_jpeg_augmentation_reencodes_training_images(data_root):
    image = read_image(data_root / BLACK_BACKGROUND)
    plain = dict(crop_scale=1.0, hflip=0.0, brightness=0.0, contrast=0.0)
    torch.manual_seed(0)
    kept = TrainPreset(128, (0.5,), (0.5,), 1, **plain)(image)
    torch.manual_seed(0)
    jpeg = TrainPreset(128, (0.5,), (0.5,), 1, **plain, jpeg_prob=1.0, jpeg_quality=(20, 20))(image)
    assert kept.shape == jpeg.shape
    difference = (kept - jpeg).abs()
    assert 0.005 < difference.mean() < 0.1  # quality 20 changes pixels, but the slice is the same slice


def test_downscale_augmentation_blurs_but_keeps_the_size(data_root):
    image = read_image(data_root / BLACK_BACKGROUND)
    plain = dict(crop_scale=1.0, hflip=0.0, brightness=0.0, contrast=0.0)
    kept = TrainPreset(128, (0.5,), (0.5,), 1, **plain)(image)
    torch.manual_seed(0)  # the factor is drawn from [0.2, 1]: fix the draw
    small = TrainPreset(128, (0.5,), (0.5,), 1, **plain, downscale_prob=1.0, downscale_min=0.2)(image)
    assert kept.shape == small.shape == (1, 128, 128)
    detail = lambda x: (x[:, 1:, :] - x[:, :-1, :]).abs().mean()  # noqa: E731
    assert detail(small) < detail(kept)  # fewer sharp edges after shrinking and growing back
