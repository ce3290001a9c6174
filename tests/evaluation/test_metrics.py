import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from covidlens.errors import CovidlensError
from covidlens.evaluation.metrics import (
    METRICS,
    binary_metrics,
    bootstrap_ci,
    confusion,
    paired_bootstrap_difference,
)
from covidlens.evaluation.operating_points import choose_for_sensitivity


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
    t = choose_for_sensitivity(y, prob, 0.95)
    assert binary_metrics(y, prob, t)["recall"] >= 0.95
    above = np.nextafter(t, 1.0)
    assert binary_metrics(y, prob, above)["recall"] < 0.95


def test_confusion_layout_rows_true_columns_predicted():
    matrix = confusion([0, 0, 1, 1, 1], [0.1, 0.9, 0.8, 0.7, 0.2], 0.5)
    assert matrix.tolist() == [[1, 1], [1, 2]]


def test_undefined_ratios_are_nan_not_zero():
    m = binary_metrics([0, 0, 1], [0.1, 0.2, 0.3], threshold=0.9)
    assert np.isnan(m["precision"])


def _loop_bootstrap_ci(y, prob, threshold, n_boot, seed):
    """The per-resample implementation bootstrap_ci had before it was vectorised (the reference)."""
    rng = np.random.default_rng(seed)
    draws = {name: [] for name in METRICS}
    for _ in range(n_boot):
        index = rng.integers(0, len(y), len(y))
        if len(np.unique(y[index])) == 2:
            for name, value in binary_metrics(y[index], prob[index], threshold).items():
                draws[name].append(value)
    return {name: (np.nanquantile(v, 0.025), np.nanquantile(v, 0.975)) for name, v in draws.items()}


@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_vectorised_bootstrap_reproduces_the_per_resample_values(scores, threshold):
    y, prob = scores
    prob = np.round(prob, 2)  # ties, which the ROC AUC must count half like scikit-learn does
    new = bootstrap_ci(y, prob, threshold, n_boot=150, seed=4)
    old = _loop_bootstrap_ci(y, prob, threshold, 150, 4)
    for name in METRICS:
        assert new[name] == pytest.approx(old[name], rel=1e-12, abs=1e-12), name


def test_vectorised_bootstrap_reproduces_the_per_resample_values_on_a_tiny_set():
    # 8 images: many resamples hold one class only (skipped) or call nothing positive (precision NaN)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    prob = np.array([0.1, 0.2, 0.2, 0.4, 0.6, 0.3, 0.2, 0.7])
    new = bootstrap_ci(y, prob, 0.5, n_boot=200, seed=1)
    old = _loop_bootstrap_ci(y, prob, 0.5, 200, 1)
    for name in METRICS:
        assert new[name] == pytest.approx(old[name], rel=1e-12, abs=1e-12), name


def test_paired_difference_reproduces_the_per_resample_values(scores):
    y, prob = scores
    other = np.clip(prob + np.random.default_rng(3).normal(0, 0.2, len(prob)), 0, 1)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(300):
        index = rng.integers(0, len(y), len(y))
        if len(np.unique(y[index])) == 2:
            draws.append(roc_auc_score(y[index], prob[index]) - roc_auc_score(y[index], other[index]))
    _, low, high = paired_bootstrap_difference(y, prob, other, "auc", n_boot=300)
    assert (low, high) == pytest.approx((np.quantile(draws, 0.025), np.quantile(draws, 0.975)), rel=1e-12)


def _duplicated(y, prob, copies, seed):
    """Every image `copies` times (as identical slices of one patient would be), shuffled, with patient ids."""
    order = np.random.default_rng(seed).permutation(len(y) * copies)
    patient = np.repeat(np.arange(len(y)), copies)[order]
    return y[patient], prob[patient], [f"patient-{p}" for p in patient]


def test_group_bootstrap_of_duplicated_images_matches_the_deduplicated_image_bootstrap(scores):
    y, prob = scores
    dup_y, dup_prob, groups = _duplicated(y, prob, 4, seed=5)
    by_image = bootstrap_ci(dup_y, dup_prob, n_boot=2000)
    by_group = bootstrap_ci(dup_y, dup_prob, n_boot=2000, seed=1, groups=groups)
    deduplicated = bootstrap_ci(y, prob, n_boot=2000, seed=2)
    for name in ("accuracy", "recall", "auc"):
        width = {k: ci[name][1] - ci[name][0] for k, ci in
                 (("image", by_image), ("group", by_group), ("dedup", deduplicated))}
        # copies are not new evidence: resampling images shrinks the interval by about sqrt(4)
        assert width["group"] > 1.5 * width["image"], name
        # resampling patients gives back the interval of the de-duplicated data (other seed, loose)
        assert width["group"] == pytest.approx(width["dedup"], rel=0.2), name
        assert np.mean(by_group[name]) == pytest.approx(np.mean(deduplicated[name]), abs=0.02), name


def test_group_bootstrap_draws_groups_in_order_of_first_appearance(scores):
    y, prob = scores
    # one image per group: the same draws as the image bootstrap
    assert bootstrap_ci(y, prob, n_boot=300, groups=[f"id{i}" for i in range(len(y))]) == bootstrap_ci(
        y, prob, n_boot=300)
    # each image twice in a row, as one group: exactly the image bootstrap of the de-duplicated data
    pairs = np.repeat(np.arange(len(y)), 2)
    by_pair, by_image = bootstrap_ci(y[pairs], prob[pairs], n_boot=300, groups=pairs), bootstrap_ci(y, prob, n_boot=300)
    for name in METRICS:
        assert by_pair[name] == pytest.approx(by_image[name], rel=1e-12), name
    diff = paired_bootstrap_difference(y[pairs], prob[pairs], 1 - prob[pairs], n_boot=300, groups=pairs)
    assert diff == pytest.approx(paired_bootstrap_difference(y, prob, 1 - prob, n_boot=300), rel=1e-12)


def test_group_bootstrap_refuses_a_class_held_by_one_group_and_wrong_lengths(scores):
    y, prob = scores
    groups = np.where(y == 1, "one-patient", np.arange(len(y)).astype(str))
    with pytest.raises(CovidlensError, match="every 'positive' image belongs to one group"):
        bootstrap_ci(y, prob, groups=groups)
    with pytest.raises(CovidlensError, match="one group"):
        paired_bootstrap_difference(y, prob, prob, groups=groups)
    with pytest.raises(ValueError, match="one per image"):
        bootstrap_ci(y, prob, groups=groups[:-1])
