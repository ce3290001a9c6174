import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from covidlens.evaluation.metrics import (
    binary_metrics,
    bootstrap_ci,
    confusion,
    paired_bootstrap_difference,
    threshold_for_sensitivity,
)


@pytest.fixture
def scores():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    prob = np.clip(0.35 * y + rng.normal(0.35, 0.2, 300), 0, 1)
    return y, prob


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_metrics_agree_with_scikit_learn(scores, threshold):
    y, prob = scores
    pred = (prob >= threshold).astype(int)
    m = binary_metrics(y, prob, threshold)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["specificity"] == pytest.approx(recall_score(1 - y, 1 - pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["auc"] == pytest.approx(roc_auc_score(y, prob))


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_data(scores):
    y, prob = scores
    point = binary_metrics(y, prob)
    ci = bootstrap_ci(y, prob, n_boot=500)
    for name, (low, high) in ci.items():
        assert low <= point[name] <= high
    small = bootstrap_ci(y[:60], prob[:60], n_boot=500)
    assert (small["auc"][1] - small["auc"][0]) > (ci["auc"][1] - ci["auc"][0])


def test_paired_difference_is_zero_for_one_model_and_excludes_zero_for_a_clearly_better_one(scores):
    y, prob = scores
    assert paired_bootstrap_difference(y, prob, prob, n_boot=200) == (0.0, 0.0, 0.0)
    rng = np.random.default_rng(2)
    worse = np.clip(prob + rng.normal(0, 0.3, len(prob)), 0, 1)
    diff, low, high = paired_bootstrap_difference(y, prob, worse, "auc", n_boot=500)
    assert diff == pytest.approx(roc_auc_score(y, prob) - roc_auc_score(y, worse))
    assert 0 < low <= diff <= high
    # the paired interval is narrower than the gap between the two separate intervals suggests
    separate = bootstrap_ci(y, prob, n_boot=500)["auc"], bootstrap_ci(y, worse, n_boot=500)["auc"]
    assert high - low < (separate[0][1] - separate[0][0]) + (separate[1][1] - separate[1][0])
    flipped = paired_bootstrap_difference(y, worse, prob, "auc", n_boot=500)
    assert flipped[0] == pytest.approx(-diff) and flipped[2] < 0


def test_paired_difference_refuses_unknown_metric_and_mismatched_lengths(scores):
    y, prob = scores
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap_difference(y, prob, prob, "kappa")
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap_difference(y, prob, prob[:-1])


def test_sensitivity_threshold_reaches_target_and_is_the_highest_such(scores):
    y, prob = scores
    t = threshold_for_sensitivity(y, prob, 0.95)
    assert binary_metrics(y, prob, t)["recall"] >= 0.95
    above = np.nextafter(t, 1.0)
    assert binary_metrics(y, prob, above)["recall"] < 0.95


def test_confusion_layout_rows_true_columns_predicted():
    matrix = confusion([0, 0, 1, 1, 1], [0.1, 0.9, 0.8, 0.7, 0.2], 0.5)
    assert matrix.tolist() == [[1, 1], [1, 2]]


def test_undefined_ratios_are_nan_not_zero():
    m = binary_metrics([0, 0, 1], [0.1, 0.2, 0.3], threshold=0.9)
    assert np.isnan(m["precision"])
