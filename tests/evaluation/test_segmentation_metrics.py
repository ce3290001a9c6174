"""Segmentation metrics against cases computed by hand, including empty masks, and their intervals."""

import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_iou

from covidlens.errors import CovidlensError
from covidlens.evaluation.segmentation import bootstrap_intervals, confusion_counts, ratios, summarise

BINARY = ["background", "infection"]


def _square(shape, top, left, size, value=1):
    a = np.zeros(shape, dtype=np.int64)
    a[top : top + size, left : left + size] = value
    return a


def test_dice_iou_sensitivity_specificity_by_hand():
    truth = _square((4, 4), 0, 0, 2)  # 4 lesion pixels
    pred = np.zeros((4, 4), dtype=np.int64)
    pred[0, 0] = pred[0, 1] = 1  # 2 hits
    pred[3, 2] = pred[3, 3] = 1  # 2 false alarms
    counts = confusion_counts(truth, pred, 2)
    assert counts[1].tolist() == [2, 2, 2, 10]
    r = ratios(counts[1])
    assert r["dice"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))  # 0.5
    assert r["iou"] == pytest.approx(2 / 6)
    assert r["sensitivity"] == pytest.approx(0.5)
    assert r["specificity"] == pytest.approx(10 / 12)


def test_agrees_with_monai_on_random_masks():
    rng = np.random.default_rng(3)
    truth, pred = rng.integers(0, 3, (2, 32, 40))
    counts = confusion_counts(truth, pred, 3)
    r = ratios(counts)
    one_hot = lambda a: torch.nn.functional.one_hot(torch.as_tensor(a), 3).permute(2, 0, 1)[None]  # noqa: E731
    assert np.allclose(r["dice"][1:], compute_dice(one_hot(pred), one_hot(truth), include_background=False).numpy()[0])
    assert np.allclose(r["iou"][1:], compute_iou(one_hot(pred), one_hot(truth), include_background=False).numpy()[0])


def test_empty_truth_is_scored_or_skipped_as_asked():
    empty = np.zeros((8, 8), dtype=np.int64)
    clean = confusion_counts(empty, empty, 2)[1]
    alarm = confusion_counts(empty, _square((8, 8), 2, 2, 2), 2)[1]
    scored, skipped = ratios(np.stack([clean, alarm])), ratios(np.stack([clean, alarm]), "skip")
    assert scored["dice"].tolist() == [1.0, 0.0] and scored["iou"].tolist() == [1.0, 0.0]
    assert np.isnan(skipped["dice"]).all() and np.isnan(scored["sensitivity"]).all()
    assert scored["specificity"].tolist() == [1.0, 60 / 64]
    with pytest.raises(CovidlensError, match="empty_truth"):
        ratios(clean, "ignore")


def test_mean_over_slices_differs_from_pooled_pixels():
    # slice 1: a 2x2 lesion found exactly; slice 2: a 6x6 lesion missed entirely
    t1, t2 = _square((10, 10), 0, 0, 2), _square((10, 10), 0, 0, 6)
    counts = np.stack([confusion_counts(t1, t1, 2), confusion_counts(t2, np.zeros_like(t2), 2)])
    s = summarise(counts, BINARY)
    assert s["mean_dice/infection"] == pytest.approx(0.5)
    assert s["pooled_dice/infection"] == pytest.approx(2 * 4 / (2 * 4 + 36))
    assert s["mean_sensitivity/infection"] == pytest.approx(0.5)
    assert s["n_dice/infection"] == 2


def test_three_classes_are_scored_one_against_the_rest():
    truth = np.array([[1, 1, 2, 2], [0, 0, 2, 2]])
    pred = np.array([[1, 2, 2, 2], [0, 0, 0, 2]])
    s = summarise(confusion_counts(truth, pred, 3)[None], ["background", "ground-glass", "consolidation"])
    assert s["mean_dice/ground-glass"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))
    assert s["mean_dice/consolidation"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert "mean_dice/background" not in s


def test_bootstrap_interval_brackets_the_estimate_and_resamples_whole_groups():
    rng = np.random.default_rng(0)
    truths = [_square((16, 16), 2, 2, int(s)) for s in rng.integers(3, 9, 12)]
    preds = [_square((16, 16), 2 + int(d), 2, 6) for d in rng.integers(0, 4, 12)]
    counts = np.stack([confusion_counts(t, p, 2) for t, p in zip(truths, preds)])
    ci = bootstrap_intervals(counts, BINARY, n_boot=500)
    estimate = summarise(counts, BINARY)["mean_dice/infection"]
    lo, hi = ci["mean_dice/infection"]
    assert lo < estimate < hi and hi - lo > 0.01
    # every slice twice, each pair one group: the same draws pick the same pairs, so the same interval
    doubled = np.repeat(counts, 2, axis=0)
    paired = bootstrap_intervals(doubled, BINARY, groups=np.repeat(np.arange(12), 2), n_boot=500)
    assert paired["mean_dice/infection"] == pytest.approx(ci["mean_dice/infection"])
    # resampled as single slices instead, the duplicated set looks twice as large and its interval shrinks
    single = bootstrap_intervals(doubled, BINARY, n_boot=500)
    assert single["mean_dice/infection"][1] - single["mean_dice/infection"][0] < 0.85 * (hi - lo)


def test_interval_of_identical_slices_has_no_width():
    one = confusion_counts(_square((8, 8), 0, 0, 4), _square((8, 8), 0, 0, 3), 2)
    ci = bootstrap_intervals(np.stack([one] * 5), BINARY, n_boot=50)
    lo, hi = ci["mean_dice/infection"]
    assert lo == hi == pytest.approx(2 * 9 / (16 + 9))
    assert all(not math.isnan(v) for v in ci["pooled_iou/infection"])


def test_boundary_distances_measure_the_worst_boundary_error_in_pixels():
    from covidlens.evaluation.segmentation import boundary_distances, distance_summary

    truth = np.zeros((20, 20), int)
    truth[5:10, 5:10] = 1
    wider = np.zeros_like(truth)
    wider[5:10, 5:13] = 1  # three columns too many on one side
    d = boundary_distances(truth, wider, 2)
    assert np.isnan(d[0]).all()
    assert d[1, 1] == pytest.approx(3.0)
    assert 0 < d[1, 0] <= d[1, 1]
    assert np.isnan(boundary_distances(truth, np.zeros_like(truth), 2)[1]).all()  # nothing predicted: undefined
    values, ci = distance_summary(np.stack([d, boundary_distances(truth, truth, 2)]), ["background", "lung"], [0, 1], 50)
    assert values["distance_slices/lung"] == 2
    assert values["mean_hausdorff/lung"] == pytest.approx(1.5)
    assert ci["mean_hausdorff/lung"][0] <= 1.5 <= ci["mean_hausdorff/lung"][1]
