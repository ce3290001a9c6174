"""CXR lungs (stage 1 of segment-then-classify): a tiny real lung model trained on Shenzhen and
Montgomery manual masks, its masks on held-out real radiographs, the stage-2 inputs and ``covidlens lungs``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidlens.errors import CovidlensError
from covidlens.segmentation.lungs import (
    LUNG_CLASSES,
    apply_lungs,
    bounding_box,
    clean_mask,
    load_lung_model,
    lung_masks,
)

_RUN = {}


@pytest.fixture(scope="module")
def lung_run(data_root, tmp_path_factory):
    """64 px UNet over the ImageNet Lite0 encoder, 64 training radiographs, 4 epochs (about a minute)."""
    if "run" not in _RUN:
        from covidlens.training.config import load_config
        from covidlens.training.fit import train

        config = load_config(str(Path(__file__).parents[2] / "configs" / "cxr_lungs_unet.yaml"), [
            f"trainer.out_dir={tmp_path_factory.mktemp('lungruns')}", f"data.root={data_root}",
            "data.limit_per_class=64", "model.input_size=64", "optim.epochs=4", "optim.lr=3e-3",
            "trainer.accelerator=cpu",
        ])
        _RUN["run"] = train(config, progress=False, task="segmentation")
    return _RUN["run"] / "model"


@pytest.fixture(scope="module")
def test_cxrs(data_root):
    from covidlens.data.datasets import load_dataset

    return load_dataset("lung-masks-shenzhen-montgomery", data_root).split("test")[:6]


def test_lung_masks_of_real_radiographs_are_binary_image_sized_and_plausible(lung_run, test_cxrs):
    images = [Image.open(s.path).convert("L") for s in test_cxrs]
    masks = lung_masks(lung_run, images)
    for image, mask, sample in zip(images, masks, test_cxrs):
        assert mask.dtype == bool and mask.shape == (image.height, image.width)
        truth = np.asarray(Image.open(sample.mask)) > 127
        assert 0.08 <= mask.mean() <= 0.55, f"{sample.path.name}: lungs {mask.mean():.1%} of the image"
        dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
        assert dice > 0.6, f"{sample.path.name}: Dice {dice:.3f} against the manual mask"


def test_masking_keeps_the_image_size_and_blacks_out_only_outside_the_lungs():
    grey = np.full((40, 50), 200, np.uint8)
    lung = np.zeros((40, 50), bool)
    lung[10:30, 5:20] = lung[10:30, 30:45] = True
    masked = apply_lungs(grey, lung, "masked")
    assert masked.shape == grey.shape and masked.dtype == np.uint8
    assert (masked[lung] == 200).all() and (masked[~lung] == 0).all()
    cropped = apply_lungs(grey, lung, "cropped")
    top, bottom, left, right = bounding_box(lung)
    assert cropped.shape == (bottom - top, right - left)
    assert top <= 10 and bottom >= 30 and left <= 5 and right >= 45
    assert apply_lungs(grey, lung, "raw") is grey
    with pytest.raises(CovidlensError, match="empty"):
        apply_lungs(grey, np.zeros_like(lung), "masked")
    with pytest.raises(CovidlensError, match="must match"):
        apply_lungs(grey, lung[:20], "cropped")
    with pytest.raises(CovidlensError, match="one of"):
        apply_lungs(grey, lung, "blurred")


def test_clean_mask_drops_specks_and_fills_holes():
    lung = np.zeros((100, 100), bool)
    lung[20:80, 10:45] = True
    lung[40:45, 20:25] = False  # a catheter's hole
    lung[2:4, 90:92] = True  # a speck on the shoulder
    clean = clean_mask(lung)
    assert clean[42, 22] and not clean[3, 91]


def test_a_lesion_model_is_not_a_lung_model(seg_run):
    with pytest.raises(CovidlensError, match="background, lung"):
        load_lung_model(seg_run / "model")


def test_lungs_command_writes_masks_overlays_and_fractions(lung_run, test_cxrs, tmp_path, capsys):
    from covidlens.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for s in test_cxrs[:2]:
        Image.open(s.path).save(folder / s.path.name)
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["lungs", str(folder), "--checkpoint", str(lung_run), "--out", str(out)]) == 1  # one file failed
    rows = list(csv.DictReader((out / "lungs.csv").open()))
    assert len(rows) == 3
    good = [r for r in rows if not r["error"]]
    assert len(good) == 2 and all(0.08 <= float(r["lung_fraction"]) <= 0.55 for r in good)
    mask = np.asarray(Image.open(out / good[0]["mask_png"]))
    assert set(np.unique(mask)) <= {0, 255} and mask.shape == (256, 256)
    assert (out / good[0]["overlay_png"]).is_file() and (out / "index.html").is_file()
    printed = capsys.readouterr()
    assert "lungs" in printed.out and "broken.png" in printed.err
    assert LUNG_CLASSES == ["background", "lung"]


def test_lungs_command_refuses_a_ct_slice_unless_told_not_to_check(lung_run, data_root, tmp_path, capsys):
    from covidlens.cli import main

    ct = data_root / "ct/covid-ct/CT_COVID/2020.02.24.20027201-p19-670.png"
    assert main(["lungs", str(ct), "--checkpoint", str(lung_run), "--out", str(tmp_path / "checked")]) == 1
    (row,) = csv.DictReader((tmp_path / "checked" / "lungs.csv").open())
    assert row["error"].startswith("this looks like a chest CT slice, but the lung model reads chest X-rays")
    err = capsys.readouterr().err
    assert "finds no lungs" in err and "1 of 1 images were refused by the modality check" in err
    assert "could not be read" not in err
    assert main(["lungs", str(ct), "--checkpoint", str(lung_run), "--out", str(tmp_path / "unchecked"),
                 "--no-modality-check"]) == 0
