"""The study verdict at and around its floors, and the operating points it shares with the classifiers."""

from __future__ import annotations

import numpy as np
import pytest

from covidlens.checkpoint import ModelInfo
from covidlens.errors import CovidlensError
from covidlens.evaluation.operating_points import (NAMES, check_name, choose_for_sensitivity, choose_for_specificity,
                                                   classifier_point)
from covidlens.screening.verdict import (PICTURE_FLOORS, SLICE_FLOOR_MM2, VOLUME_FLOOR_ML, VOLUME_FLOOR_PERCENT,
                                         ct_slice_call, ct_volume_call, fit_picture_floors, picture_call)


def test_the_floors_are_the_documented_ones():
    assert VOLUME_FLOOR_ML == {"default": 20.0, "sensitivity": 10.0}
    assert VOLUME_FLOOR_PERCENT == {"default": 0.4, "sensitivity": 0.2}
    assert SLICE_FLOOR_MM2 == {"default": 100.0, "sensitivity": 50.0}
    assert set(PICTURE_FLOORS) == set(NAMES) and PICTURE_FLOORS["sensitivity"] <= PICTURE_FLOORS["default"]


@pytest.mark.parametrize("point, floor", [("default", 20.0), ("sensitivity", 10.0)])
def test_a_volume_has_lesions_from_its_floor_in_ml(point, floor):
    below, at = ct_volume_call(floor - 0.01, 3.0, point), ct_volume_call(floor, 3.0, point)
    assert (below.lesions, below.severity) == ("no", "CT-0")
    assert (at.lesions, at.severity) == ("yes", "CT-1")
    assert f"{floor:g} mL" in at.rule and point in at.rule and at.rule.endswith(".")


def test_between_the_two_floors_only_the_sensitivity_point_calls_lesions():
    assert ct_volume_call(15.0, 0.5, "default").lesions == "no"
    assert ct_volume_call(15.0, 0.5, "sensitivity").lesions == "yes"


@pytest.mark.parametrize("point, floor", [("default", 0.4), ("sensitivity", 0.2)])
def test_without_spacing_the_floor_is_a_share_of_the_lung(point, floor):
    below, at = ct_volume_call(None, floor - 0.001, point), ct_volume_call(None, floor, point)
    assert (below.lesions, below.severity) == ("no", "CT-0")
    assert (at.lesions, at.severity) == ("yes", "CT-1")
    assert "no spacing" in at.rule and f"{floor:g} %" in at.rule


def test_severity_is_ct0_below_the_floor_and_the_mosmed_class_above_it():
    # A small lung can put a few mL over many percent: below the floor it is still CT-0.
    assert ct_volume_call(19.0, 40.0).severity == "CT-0"
    for percent, expected in ((0.5, "CT-1"), (24.99, "CT-1"), (25.0, "CT-2"), (50.0, "CT-3"), (74.9, "CT-3"),
                              (75.0, "CT-4"), (100.0, "CT-4")):
        assert ct_volume_call(500.0, percent).severity == expected, percent


def test_no_lung_means_not_assessed():
    call = ct_volume_call(0.0, None)
    assert (call.lesions, call.severity) == ("not assessed", None)
    assert "No lung" in call.rule
    call = ct_slice_call(0.0, 0.0)
    assert (call.lesions, call.severity) == ("not assessed", None)


@pytest.mark.parametrize("point, floor", [("default", 100.0), ("sensitivity", 50.0)])
def test_a_slice_has_lesions_from_its_floor_in_mm2(point, floor):
    assert ct_slice_call(floor - 0.1, 5000.0, point).lesions == "no"
    at = ct_slice_call(floor, 5000.0, point)
    assert (at.lesions, at.severity) == ("yes", None)
    assert f"{floor:g} mm²" in at.rule


def test_a_slice_without_spacing_is_not_assessed():
    call = ct_slice_call(None, 5000.0)
    assert call.lesions == "not assessed" and "spacing" in call.rule


@pytest.mark.parametrize("point", NAMES)
def test_a_picture_has_lesions_from_its_floor_of_body_share(point):
    floor = PICTURE_FLOORS[point]
    assert picture_call(np.nextafter(floor, 0.0), point).lesions == "no"
    at = picture_call(floor, point)
    assert (at.lesions, at.severity) == ("yes", None)
    assert "no Hounsfield units" in at.rule


@pytest.mark.parametrize("call, args", [(ct_volume_call, (30.0, 1.0)), (ct_slice_call, (200.0, 5000.0)),
                                        (picture_call, (0.5,))])
def test_an_unknown_operating_point_is_refused(call, args):
    with pytest.raises(CovidlensError, match="Unknown operating point '0.5'; choose one of default, sensitivity"):
        call(*args, "0.5")


def test_fitted_picture_floors_keep_their_promises():
    rng = np.random.default_rng(7)
    negatives, positives = rng.uniform(0.0, 0.10, 405), rng.uniform(0.02, 0.40, 301)
    shares = np.concatenate([negatives, positives])
    labels = np.r_[np.zeros(405, int), np.ones(301, int)]
    floors = fit_picture_floors(shares, labels)

    specificity = np.mean(negatives < floors["default"])
    assert specificity >= 0.90
    lower = negatives[negatives < floors["default"]].max()  # the next floor down lets one more negative through
    assert np.mean(negatives < lower) < 0.90

    sensitivity = np.mean(positives >= floors["sensitivity"])
    assert sensitivity >= 0.95
    higher = positives[positives > floors["sensitivity"]].min()
    assert np.mean(positives >= higher) < 0.95

    assert floors["sensitivity"] < floors["default"]


def test_picture_floors_need_both_classes_and_one_label_per_share():
    with pytest.raises(CovidlensError, match="one label per share"):
        fit_picture_floors([0.1, 0.2], [1])
    with pytest.raises(CovidlensError, match="one of each class"):
        fit_picture_floors([], [])
    with pytest.raises(CovidlensError, match="one of each class"):
        fit_picture_floors([0.1, 0.2], [1, 1])
    with pytest.raises(CovidlensError, match="one of each class"):
        fit_picture_floors([0.1, 0.2], [0, 0])


# --- operating points ----------------------------------------------------------------------------


def _info(**fields) -> ModelInfo:
    return ModelInfo(model="tiny", classes=["NonCOVID", "COVID"], input_size=64, mean=[0.5] * 3, std=[0.25] * 3,
                     positive_class="COVID", **fields)


def test_check_name_takes_the_two_names_and_refuses_others():
    assert [check_name(name) for name in NAMES] == ["default", "sensitivity"]
    for wrong in ("0.5", "Default", "specificity", ""):
        with pytest.raises(CovidlensError, match="Unknown operating point"):
            check_name(wrong)


def test_classifier_default_point_is_the_models_threshold():
    point = classifier_point(_info(threshold=0.42))
    assert (point.name, point.threshold) == ("default", 0.42)
    assert "P(COVID) >= 0.420" in point.statement


def test_classifier_sensitivity_point_is_the_validation_threshold():
    point = classifier_point(_info(sensitivity_threshold=0.137, target_sensitivity=0.95), "sensitivity")
    assert (point.name, point.threshold) == ("sensitivity", 0.137)
    assert "0.137" in point.statement and "95% sensitivity" in point.statement


def test_classifier_without_sensitivity_threshold_refuses_that_point():
    with pytest.raises(CovidlensError, match="no validation-chosen sensitivity threshold"):
        classifier_point(_info(), "sensitivity")
    with pytest.raises(CovidlensError, match="Unknown operating point"):
        classifier_point(_info(), "0.5")


def test_a_classifier_without_positive_class_decides_by_its_top_class():
    info = ModelInfo(model="tiny", classes=["normal", "covid", "other"], input_size=64, mean=[0.5] * 3, std=[0.25] * 3)
    point = classifier_point(info)
    assert point.threshold is None and "most probable class" in point.statement


def test_choose_for_specificity_lets_through_at_most_the_allowed_negatives():
    labels = np.r_[np.zeros(20, int), np.ones(3, int)]
    scores = np.r_[np.arange(1, 21) / 20.0, [0.05, 0.5, 0.95]]
    threshold = choose_for_specificity(labels, scores, 0.93)  # 1.4 negatives may pass: one does
    assert 0.95 < threshold < 0.95 + 1e-9
    assert np.mean(scores[:20] < threshold) == pytest.approx(0.95)
    assert choose_for_specificity(labels, scores, 1.0) > 1.0
    with pytest.raises(CovidlensError, match="without negative cases"):
        choose_for_specificity(np.ones(3), [0.1, 0.2, 0.3], 0.9)


def test_choose_for_specificity_allows_exactly_the_share_the_target_allows():
    labels = np.zeros(10, int)
    scores = np.arange(1, 11) / 10.0
    threshold = choose_for_specificity(labels, scores, 0.90)
    assert np.mean(scores < threshold) == pytest.approx(0.90)


def test_choose_for_sensitivity_is_the_highest_threshold_reaching_the_target():
    labels = np.r_[np.ones(10, int), np.zeros(2, int)]
    scores = np.r_[np.arange(1, 11) / 10.0, [0.0, 1.0]]
    threshold = choose_for_sensitivity(labels, scores, 0.8)
    assert threshold == pytest.approx(0.3)
    assert np.mean(scores[:10] >= threshold) >= 0.8

