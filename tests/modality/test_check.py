"""The modality check: real CT slices and chest X-rays are told apart, and pictures that are neither
(blank, noise, 16-bit noise, a CMYK square, a 1x1 image, a photo-like colour image) are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from covidlens.modality import ModalityCheck, check_modality, mismatch_message
from covidlens.modality.check import WEIGHTS, weights_record

# Images from the test splits the modality CNN was not trained on.
CT_SLICES = ["ct/covid-ct/CT_COVID/2020.03.22.20040782-p25-1542.png", "ct/covid-ct/CT_NonCOVID/112.png",
             "ct/medseg-infnet/test/images/18.jpg"]
CXRS = ["cxr/covid19-radiography/COVID/COVID-100.jpg", "cxr/lung-masks-shenzhen-montgomery/images/CHNCXR_0005_0.png",
        "cxr/sutd-3class/test/normal/0.jpg"]


@pytest.mark.parametrize("name", CT_SLICES)
def test_real_ct_slices_are_ct(data_root, name):
    check = check_modality(data_root / name)
    assert check.kind == "ct", check
    assert check.probabilities["ct"] > 0.5


@pytest.mark.parametrize("name", CXRS)
def test_real_chest_xrays_are_cxr(data_root, name):
    check = check_modality(data_root / name)
    assert check.kind == "cxr", check


def test_a_ct_dicom_is_ct_by_its_header(data_root):
    check = check_modality(data_root / "ct/ny-sbu-dicom/A002304/axial/19001231-076.dcm")
    assert check.kind == "ct" and "DICOM" in check.reason


def _photo_like(size=160) -> Image.Image:
    """Sky, green textured ground and a shaded red ball with its shadow, slightly blurred."""
    rng = np.random.default_rng(3)
    y = np.linspace(0, 1, size)[:, None, None]
    sky = np.array([70, 120, 230]) * (1 - y) + np.array([200, 220, 250]) * y
    ground = np.array([60, 140, 40]) * (0.8 + 0.3 * rng.random((size, size, 1)))
    pixels = np.where(np.arange(size)[:, None, None] > size // 2, ground, sky).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    draw.ellipse([40, 110, 120, 125], fill=(30, 70, 20))
    draw.ellipse([50, 50, 110, 110], fill=(200, 30, 30))
    return image.filter(ImageFilter.GaussianBlur(1.0))


def _save(image: Image.Image, path, **kw):
    image.save(path, **kw)
    return path


@pytest.mark.parametrize("make", [
    pytest.param(lambda d: _save(Image.new("L", (256, 256), 128), d / "blank.png"), id="blank"),
    pytest.param(lambda d: _save(Image.new("L", (1, 1), 128), d / "one.png"), id="1x1-grey"),
    pytest.param(lambda d: _save(Image.new("CMYK", (200, 200), (40, 90, 10, 20)), d / "cmyk.jpg"), id="cmyk-square"),
    pytest.param(lambda d: _save(Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)),
                                 d / "noise.png"), id="8-bit-noise"),
    pytest.param(lambda d: _save(Image.fromarray(np.random.default_rng(1).integers(0, 65536, (128, 128), dtype=np.uint16)),
                                 d / "noise16.png"), id="16-bit-noise"),
    pytest.param(lambda d: _save(_photo_like(), d / "photo.jpg", quality=90), id="photo-like"),
])
def test_pictures_that_are_neither_are_other(tmp_path, make):
    path = make(tmp_path)
    if path.name == "noise16.png":
        with Image.open(path) as stored:
            assert stored.mode.startswith("I")  # really written as 16 bits
    check = check_modality(path)
    assert check.kind == "other", check
    assert mismatch_message(check, "ct").startswith("this does not look like a chest CT slice or a chest X-ray")


def test_in_memory_images_and_arrays_are_checked_too():
    assert check_modality(Image.new("RGB", (300, 300), (255, 0, 0))).kind == "other"
    assert check_modality(np.full((64, 64), 7, np.uint8)).kind == "other"
    assert check_modality(_photo_like()).kind == "other"


def test_mismatch_messages():
    cxr, ct, other = (ModalityCheck(k, {k: 1.0}, "reason") for k in ("cxr", "ct", "other"))
    assert mismatch_message(ct, "ct") is None and mismatch_message(cxr, "cxr") is None
    assert mismatch_message(cxr, "ct") == "this looks like a chest X-ray, but the model is a CT model (reason), so it gives no verdict."
    assert mismatch_message(ct, "cxr").startswith("this looks like a chest CT slice, but the model is a chest X-ray model")
    assert mismatch_message(other, "ct") == ("this does not look like a chest CT slice or a chest X-ray (reason), "
                                             "so the CT model gives no verdict.")


def test_weights_are_small_and_say_how_they_were_made():
    assert WEIGHTS.stat().st_size < 1_000_000
    record = weights_record()
    assert "benchmarks/modality.py" in record["command"]
    assert {row["group"] for row in record["test"]} >= {"ct: covid-ct", "cxr: covid19-radiography", "other: noise16"}
    assert record["rule_margins"]["real_images_refused_by_rules"] == []
    json.dumps(record)


@pytest.mark.parametrize("name", ["camera", "moon"])
def test_real_grey_photographs_held_out_of_training_are_other(name):
    """scikit-image's cameraman and moon (grey photographs the CNN never trained on: benchmarks/modality.py
    holds them out) go through the CNN, not a rule, and are refused."""
    skimage_data = pytest.importorskip("skimage.data")
    check = check_modality(Image.fromarray(getattr(skimage_data, name)()))
    assert check.kind == "other" and "CNN" in check.reason, check


def test_a_real_colour_photograph_is_other():
    import matplotlib.cbook

    check = check_modality(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    assert check.kind == "other", check
