"""The CT lung label builder on one real NY-SBU slice, the segmentation CSV table it writes, and the
metric functions of benchmarks/ct_lung_model.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidlens.data.sets.core import load_csv
from covidlens.errors import CovidlensError
from covidlens.segmentation import ct_lung_labels as labels

REPO = Path(__file__).resolve().parents[2]
SLICE = "A098752/axial/19001231-32.dcm"  # lungs with a small posterior opacity (seen by eye)
ABDOMEN = "A027284/axial/19000925-116.dcm"  # abdomen only (data README)


def _scan(data_root: Path, file: str) -> labels.ScanSlices:
    from covidlens.data.io import read_scan

    scan = read_scan(data_root / "ct" / "ny-sbu-dicom" / file)
    patient = file.split("/")[0]
    return labels.ScanSlices(f"nysbu-{patient}", patient, scan.pixels[None], tuple(scan.spacing), "ny-sbu DICOM slice", [0])


@pytest.fixture(scope="module")
def lung_slice(data_root):
    return _scan(data_root, SLICE)


def test_hu_labels_find_both_lungs_and_drop_the_trachea(lung_slice):
    hu, spacing = lung_slice.hu[0], lung_slice.spacing
    lung = labels.hu_lung_labels(hu, spacing)
    area_cm2 = lung.sum() * spacing[0] * spacing[1] / 100
    assert 80 < area_cm2 < 400  # two lungs of an adult, mid chest
    from scipy import ndimage as ndi

    pieces, n = ndi.label(lung)
    sizes = sorted(np.bincount(pieces.ravel())[1:], reverse=True)
    assert n >= 2 and sizes[1] > 0.3 * sizes[0]  # a left and a right lung
    assert np.percentile(hu[lung], 25) > labels.GAS_QUARTILE_HU  # no pure-air piece (airway) kept


def test_abdomen_slice_has_no_lung(data_root):
    scan = _scan(data_root, ABDOMEN)
    assert not labels.hu_lung_labels(scan.hu[0], scan.spacing).any()


def test_augmented_copy_keeps_image_and_mask_aligned(lung_slice):
    hu, lung = lung_slice.hu[0], labels.hu_lung_labels(lung_slice.hu[0], lung_slice.spacing)
    for k in range(6):
        grey, mask, what = labels.augment_slice(hu, lung, labels._rng_for("test", k))
        assert grey.dtype == np.uint8 and grey.shape == mask.shape and 128 <= max(grey.shape) <= 512
        assert set(np.unique(mask)) <= {0, 1} and mask.any() and "window" in what
    again = labels.augment_slice(hu, lung, labels._rng_for("test", 0))
    first = labels.augment_slice(hu, lung, labels._rng_for("test", 0))
    assert np.array_equal(again[0], first[0])  # seeded per slice: the derived set is reproducible


def test_missed_lesion_counts_dense_lesion_next_to_the_lung_only():
    hu = np.full((40, 40), -850.0)
    lung = np.zeros((40, 40), bool)
    lung[10:30, 5:20] = True
    hu[10:30, 20:24] = 20.0  # consolidation just outside the lung
    hu[10:30, 35:40] = 20.0  # soft tissue far from it
    lesion = np.zeros_like(lung)
    lesion[10:30, 20:24] = lesion[10:30, 35:40] = True
    missed = labels.missed_lesion(hu, lung, lesion, (1.0, 1.0), reach_mm=8.0)
    assert missed[10:30, 20:24].all() and not missed[:, 35:].any() and not (missed & lung).any()


def test_build_writes_a_segmentation_table(lung_slice, data_root, tmp_path):
    table_path = labels.build_ct_lung_labels(
        data_root, tmp_path / "derived", variants=2, test_group="nobody", val_patients=0,
        overlays_dir=tmp_path / "overlays", scans=[lung_slice, _scan(data_root, ABDOMEN)],
    )
    table = load_csv(table_path)
    assert table.task == "segmentation" and table.mask_classes == labels.LUNG_LABEL_CLASSES
    assert table.group_kind == "patient" and {s.group for s in table.samples} == {"A098752", "A027284"}
    assert len(table.samples) == 6 and {s.split for s in table.samples} == {"train"}  # 2 slices x (plain + 2 copies)
    for sample in table.samples:
        image, mask = Image.open(sample.path), np.asarray(Image.open(sample.mask))
        assert image.mode == "L" and image.size == mask.shape[::-1] and set(np.unique(mask)) <= {0, 255}
    assert list((tmp_path / "overlays").glob("nysbu-A098752_000_kept_*.png"))
    assert (tmp_path / "derived" / "excluded.csv").read_text().startswith("scan,slice,split")


def test_segmentation_csv_refuses_mixed_mask_classes(tmp_path):
    (tmp_path / "t.csv").write_text("path,mask,mask_classes\na.png,a_m.png,background;lung\nb.png,b_m.png,background;lesion\n")
    with pytest.raises(CovidlensError, match="same mask_classes"):
        load_csv(tmp_path / "t.csv")


def test_missing_data_root_is_one_sentence(tmp_path):
    with pytest.raises(CovidlensError, match="is missing"):
        labels.read_hu_scans(tmp_path)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ct_lung_model", REPO / "benchmarks" / "ct_lung_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_metrics(bench):
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    assert bench.dice(a, b) == 1.0
    a[:5] = True
    b[:, :5] = True
    assert bench.dice(a, b) == pytest.approx(2 * 25 / 100)
    assert bench.pooled_dice([a, a], [a, b]) == pytest.approx(2 * (50 + 25) / (100 + 100))
    lung = np.zeros((10, 10), bool)
    lung[:, :8] = True
    lesion = np.zeros((10, 10), bool)
    lesion[0, 6:10] = True  # 2 of 4 inside
    pooled, mean, low = bench.lesion_kept([lesion, a & lung, np.zeros_like(a)], [lung, lung, lung])
    assert low == pytest.approx(0.5) and mean == pytest.approx(0.75) and pooled == pytest.approx((2 + 40) / (4 + 40))
    m, lo, hi = bench.bootstrap_mean([1.0, 1.0, 1.0], n_boot=50)
    assert m == lo == hi == 1.0


def test_a_dark_cystic_lung_is_not_taken_for_an_airway(data_root):
    """cap001's right lung is cystic (in-slice first quartile below -915 HU); removing airways by the
    gas rule alone cut it out of 50 slices' labels (slice 82: 32 of 9800 right-lung pixels left).
    Seen by eye on the overlays."""
    from scipy import ndimage as ndi

    from covidlens.data.io import read_scan

    scan = read_scan(data_root / "ct" / "covid-ct-md" / "volumes" / "cap001.nii.gz")
    lung = labels.hu_lung_labels(scan.pixels, scan.spacing)[82]
    pieces, n = ndi.label(lung)
    sizes = sorted(np.bincount(pieces.ravel())[1:], reverse=True)
    assert n >= 2 and sizes[1] > 0.5 * sizes[0]
    mid = lung.shape[1] // 2
    assert lung[:, :mid].sum() > 0.3 * lung.sum() and lung[:, mid:].sum() > 0.3 * lung.sum()
