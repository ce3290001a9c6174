"""The registered CT sets against the data README's numbers and traps (real data, headers only where
possible)."""

import csv
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image

from covidlens.data.datasets import load_dataset


def test_covid_ct_groups_are_patients_or_figures_and_never_straddle(data_root):
    table = load_dataset("covid-ct", data_root)
    assert table.group_kind == "patient+figure" and table.positive_class == "COVID"
    covid = {s.group for s in table.samples if s.label == 1}
    # The map names 213 patients (128 + 32 + 53, as the README's split says; its "216" is the paper's count).
    assert len(covid) == 213 and all(g.startswith("Patient") for g in covid)
    patients_per_split = Counter()
    where = defaultdict(set)
    for s in table.samples:
        where[s.group].add(s.split)
    for g in covid:
        patients_per_split[next(iter(where[g]))] += 1
    assert patients_per_split == {"train": 128, "val": 32, "test": 53}
    assert all(len(v) == 1 for g, v in where.items() if g in covid)
    assert "NonCOVID:12" in where  # '12%0.jpg' and '12%1.jpg' are one figure


@pytest.mark.parametrize("name,mask_values", [("medseg-infnet", {0, 255}), ("medseg-infnet-multiclass", {0, 1, 2})])
def test_medseg_every_image_has_a_mask_of_its_size_and_the_turn(data_root, name, mask_values):
    table = load_dataset(name, data_root)
    assert table.counts() == {"train": {"unlabelled": 50}, "val": {"unlabelled": 0}, "test": {"unlabelled": 48}}
    assert len(table.mask_classes) == len(mask_values)
    assert {s.rot90 for s in table.samples} == {-1}
    assert len({s.group for s in table.samples}) == 98 and table.group_kind == "image"
    for s in table.samples:
        with Image.open(s.path) as image, Image.open(s.mask) as mask:
            assert mask.size == image.size, s.path
    for s in table.samples[::20]:
        assert set(np.unique(np.asarray(Image.open(s.mask)))) <= mask_values


def test_mosmed_labels_from_the_registry_and_spacing_from_the_header(data_root):
    table = load_dataset("mosmed-masks", data_root)
    assert table.classes == ["CT-0", "CT-1", "CT-2", "CT-3", "CT-4"]
    assert table.counts()["test"] == {"CT-0": 0, "CT-1": 50, "CT-2": 0, "CT-3": 0, "CT-4": 0}
    assert sorted(s.group for s in table.samples) == [f"study_{i:04d}" for i in range(255, 305)]
    for s in table.samples:
        assert s.mask == s.path and s.path.name == f"{s.group}_mask.nii.gz"
        thickness, row, col = s.spacing
        assert thickness == 8.0 and row == col and 0.575 <= row <= 1.155
        x, y, depth = (int(v) for v in s.meta["shape"].split("x"))
        assert (x, y) == (512, 512) and 33 <= depth <= 53
    in_plane = [s.spacing[1] for s in table.samples]
    assert min(in_plane) < 0.6 and max(in_plane) > 1.1  # the README's range, both ends


def test_ny_sbu_flags_abdomen_only_and_lung_base_slices(data_root):
    table = load_dataset("ny-sbu-dicom", data_root)
    assert len(table.samples) == 20 and {s.label for s in table.samples} == {-1}
    assert len({s.group for s in table.samples}) == 10 and len({s.series for s in table.samples}) == 20
    region = {str(s.path.relative_to(data_root / "ct" / "ny-sbu-dicom").with_suffix("")): s.meta["region"]
              for s in table.samples}
    assert sorted(k for k, v in region.items() if v == "abdomen") == [
        "A027284/axial/19000925-116", "A027284/axial/19001231-131", "A058062/axial/19001231-084",
        "A058062/axial/19010108-078", "A062055/axial/19001127-136", "A062055/axial/19001228-131",
    ]
    assert sorted(k for k, v in region.items() if v == "lung-base") == [
        "A067967/axial/19001006-028", "A067967/axial/19001231-270",
    ]
    assert Counter(region.values())["lungs"] == 12
    toshiba = next(s for s in table.samples if s.path.name == "19010101-23.dcm")
    assert toshiba.spacing == (0.618, 0.618) and toshiba.meta["slice_thickness_mm"] == "5.0"


def test_covid_ct_md_slice_labels_per_scan(data_root):
    table = load_dataset("covid-ct-md", data_root)
    per_scan = defaultdict(list)
    for s in table.samples:
        per_scan[s.series].append(s)
    infected = {k: (sum(s.label for s in v), len(v)) for k, v in per_scan.items()}
    assert infected == {"P001": (80, 148), "cap001": (86, 168), "normal001": (0, 154)}
    assert {s.meta["label_source"] for s in per_scan["normal001"]} == {"normal_unlabelled"}
    assert {s.meta["label_source"] for s in per_scan["P001"] + per_scan["cap001"]} == {"radiologist"}
    assert {k: {s.meta["class"] for s in v} for k, v in per_scan.items()} == {
        "P001": {"COVID-19"}, "cap001": {"CAP"}, "normal001": {"Normal"}}
    for subject, slices in per_scan.items():
        assert [s.slice_index for s in slices] == list(range(len(slices)))
        assert {s.path.name for s in slices} == {f"{subject}.nii.gz"} and {s.group for s in slices} == {subject}
    assert per_scan["P001"][0].spacing == pytest.approx((1.496, 1.496), abs=1e-3)
    assert table.positive_class == "infected" and table.split("test") and len(table.samples) == 470


def test_covid_ct_md_dicom_series_comes_in_label_order(data_root):
    import pydicom

    table = load_dataset("covid-ct-md-dicom", data_root)
    assert [int(s.meta["label_index"]) for s in table.samples] == list(range(40, 80))
    assert sum(s.label for s in table.samples) == 24
    z = [float(pydicom.dcmread(s.path, stop_before_pixels=True).ImagePositionPatient[2]) for s in table.samples]
    assert all(a > b for a, b in zip(z, z[1:]))  # label order = z descending, head to feet
    with (data_root / "ct" / "covid-ct-md" / "labels.csv").open() as handle:
        p001 = {int(r["slice"]): int(r["infected"]) for r in csv.DictReader(handle) if r["subject"] == "P001"}
    assert [s.label for s in table.samples] == [p001[k] for k in range(40, 80)]


def test_covid_ct_without_the_patient_map_groups_by_figure(tmp_path):
    for cls, names in (("COVID", ["7%0.png", "7%1.png"]), ("NonCOVID", ["12%0.jpg"])):
        (tmp_path / f"CT_{cls}").mkdir()
        (tmp_path / "splits" / cls).mkdir(parents=True)
        for name in names:
            Image.new("L", (8, 8)).save(tmp_path / f"CT_{cls}" / name, format="PNG")
        for split in ("train", "val", "test"):
            (tmp_path / "splits" / cls / f"{split}CT_{cls}.txt").write_text("\n".join(names) if split == "test" else "")
    table = load_dataset(str(tmp_path))
    assert table.group_kind == "figure"
    assert [s.group for s in table.samples] == ["NonCOVID:12", "COVID:7", "COVID:7"]
