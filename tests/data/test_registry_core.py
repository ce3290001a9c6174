"""The registry's own behaviour: descriptions, the named positive class, the seeded group split and the
near-duplicate grouping (on images the tests make)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from covidlens.data.datasets import (
    Sample,
    SampleTable,
    describe_dataset,
    group_split,
    list_datasets,
    load_dataset,
)
from covidlens.data.sets import near_duplicates
from covidlens.errors import CovidlensError

REGISTERED = {
    "covid-ct": ("ct", "classification"),
    "medseg-infnet": ("ct", "segmentation"),
    "medseg-infnet-multiclass": ("ct", "segmentation"),
    "mosmed-masks": ("ct", "segmentation"),
    "ny-sbu-dicom": ("ct", "classification"),
    "covid-ct-md": ("ct", "classification"),
    "covid-ct-md-3class": ("ct", "classification"),
    "covid-ct-md-dicom": ("ct", "classification"),
    "covid-chestxray": ("cxr", "classification"),
    "covid19-radiography": ("cxr", "classification"),
    "sutd-3class": ("cxr", "classification"),
    "sutd-3class-patient": ("cxr", "classification"),
    "cxr-adult-3class": ("cxr", "classification"),
    "lung-masks-shenzhen-montgomery": ("cxr", "segmentation"),
}


def test_every_set_is_listed_with_modality_task_layout_and_traps():
    assert set(list_datasets()) == set(REGISTERED)
    for name, (modality, task) in REGISTERED.items():
        info = describe_dataset(name)
        assert (info.name, info.modality, info.task) == (name, modality, task)
        assert len(info.description) > 100 and info.traps and all(t.strip() for t in info.traps)


def test_unknown_set_is_refused_with_the_known_names():
    with pytest.raises(CovidlensError, match="covid-ct"):
        describe_dataset("covid-cat")


def test_every_table_agrees_with_its_registration(data_root):
    for name, (modality, task) in REGISTERED.items():
        table = load_dataset(name, data_root)
        assert (table.name, table.modality, table.task) == (name, modality, task)
        assert table.group_kind in {"patient", "patient+figure", "figure", "near-duplicate", "slab", "image"}
        assert all(-1 <= s.label < len(table.classes) for s in table.samples)
        assert (table.mask_classes is not None) == (task == "segmentation")


def test_positive_index_follows_the_named_class(data_root):
    table = load_dataset("covid-ct", data_root, positive_class="NonCOVID")
    assert table.positive_class == "NonCOVID" and table.positive_index == 0
    assert load_dataset("sutd-3class", data_root).positive_index is None
    with pytest.raises(CovidlensError, match="not a class"):
        load_dataset("covid-ct", data_root, positive_class="covid")


def test_counts_show_unlabelled_samples_separately(tmp_path):
    samples = [Sample(tmp_path / "a", 0, "train", "a"), Sample(tmp_path / "b", -1, "train", "b")]
    table = SampleTable("t", ["x", "y"], samples, positive_class="y")
    assert table.counts()["train"] == {"x": 1, "y": 0, "unlabelled": 1}


def test_group_split_keeps_groups_whole_and_is_near_the_fractions():
    groups = [f"p{i // 3}" for i in range(3000)]
    labels = [i // 3 % 2 for i in range(3000)]
    splits = group_split(groups, labels, seed=0)
    where = {}
    for g, s in zip(groups, splits):
        where.setdefault(g, set()).add(s)
    assert all(len(v) == 1 for v in where.values())
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert share == pytest.approx({"train": 0.7, "val": 0.1, "test": 0.2}, abs=0.01)
    assert group_split(groups, labels, seed=1) != splits


def test_group_split_is_the_same_in_another_process_with_another_hash_seed():
    code = (
        "import json; from covidlens.data.datasets import group_split;"
        "print(json.dumps(group_split([f'g{i % 97}' for i in range(500)], [i % 2 for i in range(500)])))"
    )
    runs = [
        json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                  env={**os.environ, "PYTHONHASHSEED": seed}).stdout)
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1] == group_split([f"g{i % 97}" for i in range(500)], [i % 2 for i in range(500)])


def _radiograph(seed: int) -> Image.Image:
    """A smooth random grey image: structure at the scale the hash looks at."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (8, 8)).astype(np.uint8)
    return Image.fromarray(small).resize((224, 224), Image.Resampling.BICUBIC)


def test_near_duplicates_are_grouped_and_distinct_images_are_not(tmp_path, monkeypatch):
    monkeypatch.setenv("COVIDLENS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "set"
    folder.mkdir()
    base = _radiograph(0)
    base.save(folder / "a.jpg", quality=95)
    labelled = base.copy()
    ImageDraw.Draw(labelled).text((5, 5), "day 1", fill=255)
    labelled.save(folder / "b.jpg", quality=70)
    base.crop((4, 4, 220, 220)).resize((224, 224)).save(folder / "c.png")
    for seed in range(1, 6):
        _radiograph(seed).save(folder / f"other{seed}.jpg")
    paths = sorted(folder.iterdir())
    groups = dict(zip((p.name for p in paths), near_duplicates.near_duplicate_groups(paths, folder)))
    assert groups["a.jpg"] == groups["b.jpg"] == groups["c.png"] == "a.jpg"
    assert len({groups[f"other{s}.jpg"] for s in range(1, 6)} | {"a.jpg"}) == 6


def test_hash_cache_is_used_and_a_changed_file_is_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("COVIDLENS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "set"
    folder.mkdir()
    for seed in range(3):
        _radiograph(seed).save(folder / f"{seed}.png")
    paths = sorted(folder.iterdir())
    first = near_duplicates.near_duplicate_groups(paths, folder)
    hashed = []
    real = near_duplicates.image_hash
    monkeypatch.setattr(near_duplicates, "image_hash", lambda p: hashed.append(p.name) or real(p))
    assert near_duplicates.near_duplicate_groups(paths, folder) == first and hashed == []
    _radiograph(0).save(folder / "2.png")  # now a copy of 0.png, with a new size and mtime
    assert near_duplicates.near_duplicate_groups(paths, folder) == ["0.png", "1.png", "0.png"]
    assert hashed == ["2.png"]
