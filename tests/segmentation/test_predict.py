"""Prediction: probability maps at the image's size, the lung-mask hook, and files with overlays."""

import csv

import numpy as np
import pytest
from PIL import Image

from covidlens.checkpoint import load_checkpoint
from covidlens.data.datasets import load_dataset
from covidlens.errors import CovidlensError
from covidlens.segmentation import apply_lung_mask, segment_files, segment_image


def test_segment_image_gives_probabilities_at_the_images_size(seg_run, data_root):
    sample = load_dataset("medseg-infnet", data_root).split("test")[0]
    image = sample.image()
    ckpt = load_checkpoint(seg_run / "model")
    probs = segment_image(ckpt, image)
    assert probs.shape == (2, image.height, image.width) and probs.dtype == np.float32
    assert np.allclose(probs.sum(0), 1.0, atol=1e-5)
    assert np.array_equal(segment_image(ckpt, np.asarray(image)), probs)  # array and PIL input agree
    # the file on disk is stored turned; the sample's image is the usual view: same pixels, other shape
    assert segment_image(ckpt, sample.path).shape == (2, image.width, image.height)


def test_lung_mask_hook_moves_lesions_outside_the_lungs_to_background(seg_run, data_root):
    image = load_dataset("medseg-infnet", data_root).split("test")[1].image()
    ckpt = load_checkpoint(seg_run / "model")
    h, w = image.height, image.width
    left_half = np.zeros((h, w), dtype=bool)
    left_half[:, : w // 2] = True
    plain = segment_image(ckpt, image)
    filtered = segment_image(ckpt, image, lung_mask=lambda grey: left_half)
    assert np.array_equal(filtered[:, left_half], plain[:, left_half])
    assert (filtered[1, ~left_half] == 0).all() and (filtered[0, ~left_half] == 1).all()
    with pytest.raises(CovidlensError, match="lung mask is empty"):
        apply_lung_mask(plain, np.zeros((h, w), dtype=bool))
    with pytest.raises(CovidlensError, match="must match"):
        apply_lung_mask(plain, np.ones((h + 1, w), dtype=bool))


def test_segment_files_writes_masks_overlays_and_a_page(seg_run, data_root, tmp_path):
    folder = data_root / "ct" / "medseg-infnet" / "test" / "images"
    files = sorted(folder.glob("*.jpg"))[:2]
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    results = segment_files(seg_run / "model", [files[0], bad, files[1]], tmp_path / "out")
    assert [r.path for r in results] == [str(files[0]), str(bad), str(files[1])]
    assert results[1].error and not results[0].error
    mask = Image.open(tmp_path / "out" / results[0].mask_png)
    assert mask.mode == "P" and mask.size == Image.open(files[0]).size
    assert set(np.unique(np.asarray(mask))) <= {0, 1}
    fraction = float((np.asarray(mask) == 1).mean())
    assert results[0].fractions["infection"] == pytest.approx(fraction)
    assert (tmp_path / "out" / results[2].overlay_png).is_file()
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count("<img") == 2
    with (tmp_path / "out" / "segments.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and rows[1]["error"]


def test_a_classifier_checkpoint_is_refused(seg_run, tmp_path):
    import json
    import shutil

    fake = tmp_path / "clf"
    shutil.copytree(seg_run / "model", fake)
    meta = json.loads((fake / "model.json").read_text())
    meta["task"] = "classification"
    (fake / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CovidlensError):
        segment_image(fake, np.zeros((64, 64), dtype=np.uint8))
