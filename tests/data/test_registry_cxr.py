"""The registered chest X-ray sets against the data README's numbers and traps (real data)."""

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict

import pytest

from covidlens.data.datasets import load_dataset


def _straddling(table) -> set[str]:
    where = defaultdict(set)
    for s in table.samples:
        where[s.group].add(s.split)
    return {g for g, splits in where.items() if len(splits) > 1}


def test_covid_chestxray_keeps_frontal_labelled_xrays(data_root):
    table = load_dataset("covid-chestxray", data_root)
    assert table.classes == ["other", "COVID-19"] and table.positive_class == "COVID-19"
    total = Counter(s.label for s in table.samples)
    # README: 451 COVID-19 X-ray images of which 24 are lateral; 19 No Finding + 105 other pneumonias,
    # 20 lateral, and 4 images listed twice (under two patient ids).
    assert total == {1: 451 - 24, 0: 19 + 105 - 20 - 4}
    assert {s.meta["view"] for s in table.samples} == {"PA", "AP", "AP Supine"}
    assert "todo" not in {s.meta["finding"] for s in table.samples}
    assert len({s.path for s in table.samples}) == len(table.samples)
    assert {s.group for s in table.samples if "+" in s.group} == {"285+339", "287+340"}


def test_covid_chestxray_split_is_patient_disjoint_and_near_70_10_20(data_root):
    table = load_dataset("covid-chestxray", data_root)
    assert not _straddling(table) and table.group_kind == "patient"
    share = Counter(s.split for s in table.samples)
    assert share["train"] / len(table.samples) == pytest.approx(0.7, abs=0.03)
    assert share["val"] / len(table.samples) == pytest.approx(0.1, abs=0.03)
    for split in ("train", "val", "test"):
        assert {s.label for s in table.split(split)} == {0, 1}


def test_covid_chestxray_split_is_stable_across_processes(data_root):
    code = (
        "import json, sys; from covidlens.data.datasets import load_dataset;"
        "print(json.dumps({s.path.name: s.split for s in load_dataset('covid-chestxray', sys.argv[1]).samples}))"
    )
    here = {s.path.name: s.split for s in load_dataset("covid-chestxray", data_root).samples}
    there = json.loads(subprocess.run([sys.executable, "-c", code, str(data_root)], capture_output=True, text=True,
                                      check=True, env={**os.environ, "PYTHONHASHSEED": "123"}).stdout)
    assert there == here


def test_covid_chestxray_masks_are_the_lungvae_ones(data_root):
    table = load_dataset("covid-chestxray", data_root)
    masked = [s for s in table.samples if s.mask is not None]
    assert 150 < len(masked) <= 210
    assert all(s.mask.is_file() and s.mask.name == f"{s.path.stem}_mask.png" for s in masked)
    assert {s.meta["mask_source"] for s in masked} == {"lungVAE model output"}


def test_covid19_radiography_near_duplicates_stay_on_one_side(data_root):
    table = load_dataset("covid19-radiography", data_root)
    assert table.classes == ["Normal", "COVID"] and table.positive_class == "COVID"
    assert Counter(s.label for s in table.samples) == {1: 1201, 0: 1200}
    assert table.group_kind == "near-duplicate" and not _straddling(table)
    sizes = Counter(Counter(s.group for s in table.samples).values())
    assert 100 <= sum(n for k, n in sizes.items() if k > 1) <= 200  # some groups, no giant one
    assert max(sizes) < 20
    # Byte-identical files are near-duplicates by any measure: each set of them must share a group.
    by_digest = defaultdict(set)
    for s in table.samples:
        by_digest[hashlib.md5(s.path.read_bytes()).hexdigest()].add(s.group)
    assert all(len(groups) == 1 for groups in by_digest.values()) and len(by_digest) < len(table.samples)


def test_covid19_radiography_split_is_near_70_10_20_per_class(data_root):
    table = load_dataset("covid19-radiography", data_root)
    for split, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        for n in table.counts()[split].values():
            assert n / 1200 == pytest.approx(share, abs=0.02)


def test_sutd_official_split_counts_and_its_patient_leak(data_root):
    table = load_dataset("sutd-3class", data_root)
    assert table.classes == ["normal", "covid", "non-covid"] and table.positive_class is None
    assert table.counts() == {
        "train": {"normal": 1341, "covid": 1345, "non-covid": 2530},
        "val": {"normal": 8, "covid": 9, "non-covid": 8},
        "test": {"normal": 234, "covid": 139, "non-covid": 242},
    }
    assert len(_straddling(table)) == 170  # the course split is not patient-disjoint
    types = Counter((table.classes[s.label], s.meta["kermany_type"]) for s in table.samples)
    assert types[("covid", "virus")] + types[("non-covid", "bacteria")] + types[("normal", "normal")] == 5840


def test_sutd_patient_variant_is_patient_disjoint_and_keeps_the_official_test(data_root):
    official = load_dataset("sutd-3class", data_root)
    variant = load_dataset("sutd-3class-patient", data_root)
    assert not _straddling(variant)
    assert [s.path for s in variant.samples] == [s.path for s in official.samples]
    official_test = {s.path for s in official.split("test")}
    assert official_test < {s.path for s in variant.split("test")}
    moved = Counter((a.split, b.split) for a, b in zip(official.samples, variant.samples) if a.split != b.split)
    assert set(moved) <= {("train", "test"), ("train", "val"), ("val", "test")}


def test_shenzhen_montgomery_masks_sources_and_findings(data_root):
    table = load_dataset("lung-masks-shenzhen-montgomery", data_root)
    assert len(table.samples) == 704 and table.mask_classes == ["background", "lung"]
    assert all(s.mask.name == s.path.name and s.mask.parent.name == "masks" for s in table.samples)
    assert Counter(s.meta["source"] for s in table.samples) == {"Shenzhen": 566, "Montgomery": 138}
    assert Counter(s.meta["finding"] for s in table.samples) == {"normal": 359, "tuberculosis": 345}
    counts = Counter(s.split for s in table.samples)
    assert counts["train"] / 704 == pytest.approx(0.7, abs=0.02) and counts["val"] / 704 == pytest.approx(0.1, abs=0.02)
    for split in ("train", "val", "test"):
        assert {s.meta["source"] for s in table.split(split)} == {"Shenzhen", "Montgomery"}
    again = load_dataset("lung-masks-shenzhen-montgomery", data_root)
    assert [s.split for s in again.samples] == [s.split for s in table.samples]


def test_adult_3class_joins_the_two_collections_with_patient_disjoint_splits(data_root):
    table = load_dataset("cxr-adult-3class", data_root)
    assert table.classes == ["normal", "other-pneumonia", "COVID-19"] and table.positive_class == "COVID-19"
    assert table.modality == "cxr" and not _straddling(table)
    by = Counter((table.classes[s.label], s.meta["source"]) for s in table.samples)
    cohen = load_dataset("covid-chestxray", data_root)
    findings = Counter(s.meta["finding"] for s in cohen.samples)
    # Every covid-chestxray image keeps its finding; No Finding joins the radiography Normals.
    assert by[("COVID-19", "covid-chestxray")] == sum(n for f, n in findings.items() if "COVID-19" in f)
    assert by[("normal", "covid-chestxray")] == findings["No Finding"]
    assert by[("other-pneumonia", "covid-chestxray")] == len(cohen.samples) - by[("COVID-19", "covid-chestxray")] - findings["No Finding"]
    assert by[("normal", "covid19-radiography")] == 1200 and ("COVID-19", "covid19-radiography") not in by
    # The radiography Normals keep that set's own near-duplicate split; covid-chestxray patients are not
    # split across sides even where one patient has two findings.
    radiography = {s.path: s.split for s in load_dataset("covid19-radiography", data_root).samples}
    assert all(radiography[s.path] == s.split for s in table.samples if s.meta["source"] == "covid19-radiography")
    for split in ("train", "val", "test"):
        assert {s.label for s in table.split(split)} == {0, 1, 2}
