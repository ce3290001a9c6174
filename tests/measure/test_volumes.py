"""Area, volume and severity arithmetic on masks of known geometry."""

import math

import numpy as np
import pytest

from covidlens.errors import CovidlensError
from covidlens.measure import (
    lesion_volume_ml,
    mask_area_mm2,
    measure_areas,
    measure_volume,
    per_slice_areas_mm2,
    percent_involved,
    pixel_area_mm2,
    restrict_to_lung,
    severity_class,
    voxel_volume_mm3,
)


def _sphere(radius_mm, spacing, centre_offset=(0.3, -0.2, 0.45)):
    """Voxels whose centres lie inside a sphere of radius_mm, on a grid of the given anisotropic spacing;
    also returns each slice's z (mm from the centre)."""
    axes = []
    for step, offset in zip(spacing, centre_offset):
        n = int(math.ceil((radius_mm + 3 * step) / step))
        axes.append((np.arange(-n, n + 1) * step) + offset)
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return (z**2 + y**2 + x**2) <= radius_mm**2, axes[0]


def _disc(radius_mm, spacing, size=160):
    rows = (np.arange(size) - size / 2 + 0.37) * spacing[0]
    cols = (np.arange(size) - size / 2 - 0.21) * spacing[1]
    return (rows[:, None] ** 2 + cols[None, :] ** 2) <= radius_mm**2


def test_sphere_volume_at_anisotropic_spacing():
    spacing = (2.5, 0.7, 0.9)
    radius = 30.0
    mask, _ = _sphere(radius, spacing)
    expected_ml = 4.0 / 3.0 * math.pi * radius**3 / 1000.0  # 113.1 mL
    assert lesion_volume_ml(mask, spacing) == pytest.approx(expected_ml, rel=0.01)
    # The slice spacing matters: the same voxels at 1 mm slices are 2.5 times less volume.
    assert lesion_volume_ml(mask, (1.0, 0.7, 0.9)) == pytest.approx(expected_ml / 2.5, rel=0.01)
    assert voxel_volume_mm3(spacing) == pytest.approx(2.5 * 0.7 * 0.9)


def test_sphere_slice_areas_follow_the_circle_of_each_slice():
    spacing = (2.0, 0.6, 0.8)
    radius = 25.0
    mask, z = _sphere(radius, spacing)
    areas = per_slice_areas_mm2(mask, spacing)
    assert areas.shape == (mask.shape[0],)
    inner = np.abs(z) < 0.8 * radius
    expected = math.pi * (radius**2 - z[inner] ** 2)
    np.testing.assert_allclose(areas[inner], expected, rtol=0.03)
    assert np.all(areas[np.abs(z) > radius] == 0)


def test_disc_area_in_mm2():
    spacing = (0.6, 0.8)
    mask = _disc(40.0, spacing)
    assert pixel_area_mm2(spacing) == pytest.approx(0.48)
    assert mask_area_mm2(mask, spacing) == pytest.approx(math.pi * 40.0**2, rel=0.01)
    # The in-plane pair of a 3-D spacing gives the same pixel area.
    assert pixel_area_mm2((5.0, 0.6, 0.8)) == pytest.approx(0.48)


def test_without_spacing_results_are_in_pixels_and_say_so():
    mask = _disc(40.0, (0.6, 0.8))
    areas = measure_areas(mask)
    assert areas.units == "pixels" and not areas.calibrated
    assert areas.value == np.count_nonzero(mask)
    calibrated = measure_areas(mask, (0.6, 0.8))
    assert calibrated.units == "mm2" and calibrated.calibrated
    assert calibrated.value == pytest.approx(np.count_nonzero(mask) * 0.48)

    sphere, _ = _sphere(10.0, (2.0, 1.0, 1.0))
    assert measure_volume(sphere).units == "voxels"
    assert measure_volume(sphere).value == np.count_nonzero(sphere)
    assert measure_volume(sphere, (2.0, 1.0, 1.0)).units == "mL"
    per_slice = measure_areas(sphere)
    assert per_slice.units == "pixels"
    np.testing.assert_array_equal(per_slice.value, sphere.sum(axis=(1, 2)))


@pytest.mark.parametrize(
    "call",
    [
        lambda m: mask_area_mm2(m, None),
        lambda m: lesion_volume_ml(m[None], None),
        lambda m: per_slice_areas_mm2(m[None], None),
        lambda m: pixel_area_mm2(None),
    ],
)
def test_mm_without_spacing_is_one_clear_sentence(call):
    with pytest.raises(CovidlensError, match="no voxel spacing") as info:
        call(np.ones((4, 4), dtype=bool))
    _assert_one_sentence(info.value)


def test_severity_class_boundaries():
    cases = {
        0.0: "CT-0",
        1e-9: "CT-1",
        24.999: "CT-1",
        25.0: "CT-2",
        49.999: "CT-2",
        50.0: "CT-3",
        74.999: "CT-3",
        75.0: "CT-4",
        100.0: "CT-4",
    }
    for percent, expected in cases.items():
        assert severity_class(percent) == expected, percent


@pytest.mark.parametrize("bad", [-0.1, 100.1, float("nan"), "a lot"])
def test_severity_class_refuses_what_is_not_a_percentage(bad):
    with pytest.raises(CovidlensError, match="from 0 to 100") as info:
        severity_class(bad)
    _assert_one_sentence(info.value)


def test_percent_involved_counts_only_lesion_inside_the_lung():
    lung = np.zeros((10, 10), dtype=bool)
    lung[:, :5] = True  # 50 pixels
    lesion = np.zeros((10, 10), dtype=bool)
    lesion[:2, 3:8] = True  # 10 pixels, 4 of them in the lung
    assert percent_involved(lesion, lung) == pytest.approx(8.0)
    kept = restrict_to_lung(lesion, lung)
    assert kept.dtype == bool and kept.sum() == 4 and not (kept & ~lung).any()
    assert severity_class(percent_involved(lesion, lung)) == "CT-1"
    with pytest.raises(CovidlensError, match="lung mask is empty"):
        percent_involved(lesion, np.zeros_like(lung))


def test_percent_involved_of_a_volume():
    lung = np.zeros((4, 6, 6), dtype=np.uint8)
    lung[:, 1:5, 1:5] = 1  # 64 voxels
    lesion = np.zeros_like(lung)
    lesion[:2, 1:5, 1:5] = 1  # 32 voxels
    assert percent_involved(lesion, lung) == pytest.approx(50.0)
    assert severity_class(percent_involved(lesion, lung)) == "CT-3"


@pytest.mark.parametrize(
    "call,words",
    [
        (lambda: percent_involved(np.zeros((4, 5)), np.zeros((5, 4))), r"\(4, 5\).*\(5, 4\)"),
        (lambda: restrict_to_lung(np.zeros((3, 4, 5)), np.zeros((4, 5))), r"\(3, 4, 5\).*\(4, 5\)"),
        (lambda: lesion_volume_ml(np.zeros((4, 5)), (1, 1, 1)), r"\(4, 5\).*3-D"),
        (lambda: mask_area_mm2(np.zeros((2, 4, 5)), (1, 1)), r"\(2, 4, 5\).*2-D"),
        (lambda: per_slice_areas_mm2(np.zeros(5), (1, 1, 1)), r"\(5,\).*3-D"),
        (lambda: lesion_volume_ml(np.zeros((2, 4, 5)), (1, 1)), r"2 values.*3"),
        (lambda: mask_area_mm2(np.full((4, 5), 255), (1, 1)), r"only 0 and 1"),
        (lambda: mask_area_mm2(np.zeros((4, 5)), (1, -1)), r"positive"),
    ],
)
def test_bad_masks_and_spacings_give_one_clear_sentence(call, words):
    with pytest.raises(CovidlensError, match=words) as info:
        call()
    _assert_one_sentence(info.value)


def _assert_one_sentence(error):
    text = str(error)
    assert "\n" not in text and text.endswith(".")
    assert ". " not in text.replace("e.g. ", "")
