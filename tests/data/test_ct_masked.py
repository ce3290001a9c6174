"""Lung-masked COVID-CT slices (covidlens.data.ct_masked) on 2 real COVID-CT images: black outside the
lung mask, the image kept whole where no lung is found (and counted), and a CSV table with the same
classes, split and groups that load_csv reads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CT_LUNG_MODEL = REPO / "runs" / "ct_lungs_unet_lite0" / "model_last"


@pytest.fixture(scope="module")
def two_slices(data_root):
    from covidlens.data.datasets import load_dataset

    table = load_dataset("covid-ct", data_root)
    picked = [next(s for s in table.split("test") if s.label == k) for k in (0, 1)]
    import dataclasses

    return dataclasses.replace(table, samples=picked)


def disc_then_nothing(checkpoint, images, batch_size=16):
    """A stand-in lung model: a centred disc for the first slice, no lung for the second."""
    masks = []
    for i, image in enumerate(images):
        h, w = np.asarray(image).shape[:2]
        rows, cols = np.ogrid[:h, :w]
        disc = (rows - h / 2) ** 2 + (cols - w / 2) ** 2 < (min(h, w) / 4) ** 2
        masks.append(disc if i % 2 == 0 else np.zeros((h, w), bool))
    return masks


def test_masked_table_blacks_out_outside_the_lungs_and_keeps_lungless_slices_whole(two_slices, tmp_path, monkeypatch):
    import covidlens.segmentation.ct_lungs as ct_lungs
    import covidlens.segmentation.lungs as lungs
    from covidlens.data.ct_masked import ct_masked_table
    from covidlens.data.sets.core import load_csv

    monkeypatch.setattr(ct_lungs, "ct_lung_masks", disc_then_nothing)
    monkeypatch.setattr(lungs, "load_lung_model", lambda checkpoint: checkpoint)
    result = ct_masked_table("stand-in", two_slices, work=tmp_path, log=lambda _: None)
    assert result.images == 2 and result.kept_whole == 1
    assert result.kept_whole_paths == [str(two_slices.samples[1].path)]

    back = load_csv(result.table)
    assert back.classes == two_slices.classes
    assert [(s.label, s.split, s.group) for s in back.samples] == [(s.label, s.split, s.group) for s in two_slices.samples]
    first, second = (np.asarray(Image.open(s.path)) for s in back.samples)
    original = [np.asarray(s.image().convert("L")) for s in two_slices.samples]
    disc = disc_then_nothing(None, original[:1])[0]
    assert first.shape == original[0].shape
    assert (first[~disc] == 0).all() and np.array_equal(first[disc], original[0][disc])
    assert np.array_equal(second, original[1])

    # A second call reuses the copies on disk and does not ask the lung model again.
    monkeypatch.setattr(ct_lungs, "ct_lung_masks", lambda *a, **k: pytest.fail("copies were not reused"))
    assert ct_masked_table("stand-in", two_slices, work=tmp_path, log=lambda _: None).kept_whole == 1


@pytest.mark.skipif(not (CT_LUNG_MODEL / "model.json").is_file(), reason=f"no CT lung model at {CT_LUNG_MODEL}")
def test_the_learned_ct_lung_model_masks_two_real_slices(two_slices):
    from covidlens.data.ct_masked import mask_ct_images

    greys = [np.asarray(s.image().convert("L")) for s in two_slices.samples]
    masked, masks, empty = mask_ct_images(str(CT_LUNG_MODEL), greys)
    assert not empty.any()
    for grey, image, lung in zip(greys, masked, masks):
        arr = np.asarray(image)
        assert arr.shape == grey.shape == lung.shape
        assert 0.05 < lung.mean() < 0.7
        assert (arr[~lung] == 0).all() and np.array_equal(arr[lung], grey[lung])
