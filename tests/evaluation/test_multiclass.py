import time

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

from covidlens.errors import CovidlensError
from covidlens.evaluation.metrics import (
    binary_metrics,
    bootstrap_ci,
    multiclass_bootstrap_ci,
    multiclass_confusion,
    multiclass_metrics,
)

NAMES = ["normal", "covid", "pneumonia", "other"]


def _case(n, num_classes, seed, signal=1.5):
    """Labels and softmax probabilities of a model that is right more often than not."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    logits = rng.normal(0, 1, (n, num_classes))
    logits[np.arange(n), y] += signal
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_multiclass_metrics_equal_scikit_learn_per_class_and_macro():
    y, probs = _case(250, 4, seed=0)
    m = multiclass_metrics(y, probs, NAMES)
    pred = probs.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, average=None)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    for k, name in enumerate(NAMES):
        assert m[f"precision/{name}"] == pytest.approx(precision[k])
        assert m[f"recall/{name}"] == pytest.approx(recall[k])
        assert m[f"f1/{name}"] == pytest.approx(f1[k])
        assert m[f"auc/{name}"] == pytest.approx(roc_auc_score(y == k, probs[:, k]))
    for name in ("precision", "recall", "f1"):
        assert m[f"macro_{name}"] == pytest.approx(
            precision_recall_fscore_support(y, pred, average="macro")[("precision", "recall", "f1").index(name)])
    assert m["macro_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert 0.5 < m["macro_auc"] < 1.0 and m["accuracy"] < 1.0
    expected = {"accuracy", "macro_precision", "macro_recall", "macro_f1", "macro_auc"} | {
        f"{metric}/{name}" for metric in ("precision", "recall", "f1", "auc") for name in NAMES}
    assert set(m) == expected


def test_a_perfect_three_class_classifier_scores_one_everywhere_with_degenerate_intervals():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 0, 2, 1])
    probs = np.full((len(y), 3), 0.1)
    probs[np.arange(len(y)), y] = 0.8
    names = NAMES[:3]
    assert all(v == 1.0 for v in multiclass_metrics(y, probs, names).values())
    ci = multiclass_bootstrap_ci(y, probs, names, n_boot=200, groups=np.arange(len(y)) // 2)
    assert set(ci) == set(multiclass_metrics(y, probs, names))
    assert all(interval == (1.0, 1.0) for interval in ci.values())


def test_undefined_values_are_nan_and_left_out_of_the_macro_average():
    # class 2 ("pneumonia") is never predicted; class 3 ("other") has no images and is never predicted
    y = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 0, 0, 1, 1])
    probs = np.eye(4)[pred] * 0.7 + 0.075
    m = multiclass_metrics(y, probs, NAMES)
    assert np.isnan(m["precision/pneumonia"]) and m["recall/pneumonia"] == 0.0 and m["f1/pneumonia"] == 0.0
    assert np.isnan(m["recall/other"]) and np.isnan(m["f1/other"]) and np.isnan(m["auc/other"])
    # hand-computed: precision 2/3 and 1/2 over the two defined classes; recall 1, 1/2, 0 over three
    assert m["macro_precision"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["macro_recall"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["accuracy"] == pytest.approx(3 / 5)


def test_multiclass_bootstrap_equals_scoring_each_resample_with_multiclass_metrics():
    y, probs = _case(60, 3, seed=1, signal=1.0)
    probs = np.round(probs, 1)  # ties in every class's score
    names = NAMES[:3]
    rng = np.random.default_rng(3)
    draws = []
    for _ in range(60):
        index = rng.integers(0, len(y), len(y))
        if len(np.unique(y[index])) == 3:  # resamples lacking a class are skipped
            draws.append(multiclass_metrics(y[index], probs[index], names))
    ci = multiclass_bootstrap_ci(y, probs, names, n_boot=60, seed=3)
    for key in ci:
        values = np.array([d[key] for d in draws])
        values = values[~np.isnan(values)]
        assert ci[key] == pytest.approx((np.quantile(values, 0.025), np.quantile(values, 0.975)), rel=1e-12), key


def test_two_class_multiclass_interval_matches_the_binary_one():
    y, probs = _case(200, 2, seed=2)
    binary = bootstrap_ci(y, probs[:, 1], 0.5, n_boot=500, seed=6)
    multi = multiclass_bootstrap_ci(y, probs, ["neg", "pos"], n_boot=500, seed=6)
    assert multi["recall/pos"] == pytest.approx(binary["recall"])
    assert multi["recall/neg"] == pytest.approx(binary["specificity"])
    assert multi["auc/pos"] == pytest.approx(binary["auc"])
    assert multi["accuracy"] == pytest.approx(binary["accuracy"])
    point = multiclass_metrics(y, probs, ["neg", "pos"])
    assert point["f1/pos"] == pytest.approx(binary_metrics(y, probs[:, 1])["f1"])


def test_group_interval_is_wider_for_duplicated_images():
    y, probs = _case(150, 3, seed=4, signal=1.0)
    patient = np.repeat(np.arange(len(y)), 4)
    names = NAMES[:3]
    by_image = multiclass_bootstrap_ci(y[patient], probs[patient], names, n_boot=1000)
    by_group = multiclass_bootstrap_ci(y[patient], probs[patient], names, n_boot=1000, seed=1, groups=patient)
    deduplicated = multiclass_bootstrap_ci(y, probs, names, n_boot=1000, seed=2)
    for key in ("accuracy", "macro_auc", "recall/covid"):
        width = [ci[key][1] - ci[key][0] for ci in (by_image, by_group, deduplicated)]
        assert width[1] > 1.5 * width[0], key
        assert width[1] == pytest.approx(width[2], rel=0.25), key


def test_multiclass_group_bootstrap_refuses_a_class_from_one_patient():
    y, probs = _case(90, 3, seed=5)
    groups = [f"p{i}" if label != 2 else "p-pneumonia" for i, label in enumerate(y)]
    with pytest.raises(CovidlensError, match="every 'pneumonia' image belongs to one group"):
        multiclass_bootstrap_ci(y, probs, NAMES[:3], groups=groups)


def test_600_images_and_2000_resamples_take_seconds():
    y, probs = _case(600, 3, seed=6)
    groups = np.arange(600) // 3
    start = time.perf_counter()
    ci = multiclass_bootstrap_ci(y, probs, NAMES[:3], n_boot=2000, groups=groups)
    bootstrap_ci(y == 1, probs[:, 1], n_boot=2000, groups=groups)
    assert time.perf_counter() - start < 10
    assert ci["macro_auc"][0] < multiclass_metrics(y, probs, NAMES[:3])["macro_auc"] < ci["macro_auc"][1]


def test_confusion_rows_sum_to_class_counts_and_columns_to_predictions():
    y, probs = _case(120, 4, seed=7)
    matrix = multiclass_confusion(y, probs, 4)
    assert matrix.shape == (4, 4)
    assert matrix.sum(axis=1).tolist() == np.bincount(y, minlength=4).tolist()
    assert matrix.sum(axis=0).tolist() == np.bincount(probs.argmax(axis=1), minlength=4).tolist()
    assert np.trace(matrix) == (probs.argmax(axis=1) == y).sum()
    hand = multiclass_confusion([0, 1, 2, 2, 1], [0, 2, 2, 1, 1], 3)
    assert hand.tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]
    assert multiclass_confusion([0, 0], [1, 1], 3).tolist() == [[0, 2, 0], [0, 0, 0], [0, 0, 0]]


def test_inputs_that_do_not_fit_are_refused():
    y, probs = _case(20, 3, seed=8)
    with pytest.raises(ValueError, match="images x 4 classes"):
        multiclass_metrics(y, probs, NAMES)
    with pytest.raises(ValueError, match="class indices"):
        multiclass_metrics(np.r_[y[:-1], 3], probs, NAMES[:3])
    with pytest.raises(ValueError, match="integer predicted class"):
        multiclass_confusion(y, probs[:, 0], 3)
    with pytest.raises(ValueError, match="one per image"):
        multiclass_bootstrap_ci(y, probs, NAMES[:3], groups=[1, 2])


def test_paired_multiclass_difference_is_zero_for_one_model_and_matches_slow_resamples():
    from sklearn.metrics import f1_score

    from covidlens.evaluation.metrics import paired_multiclass_difference

    rng = np.random.default_rng(3)
    names = ["normal", "viral", "bacterial"]
    y = rng.integers(0, 3, 60)
    good = np.eye(3)[np.where(rng.random(60) < 0.8, y, (y + 1) % 3)] * 0.7 + 0.1
    poor = np.eye(3)[np.where(rng.random(60) < 0.5, y, (y + 2) % 3)] * 0.7 + 0.1
    assert paired_multiclass_difference(y, good, good, names, n_boot=200) == (0.0, 0.0, 0.0)
    estimate, lo, hi = paired_multiclass_difference(y, good, poor, names, "macro_f1", n_boot=200)
    expected = f1_score(y, good.argmax(1), average="macro") - f1_score(y, poor.argmax(1), average="macro")
    assert estimate == pytest.approx(expected)
    assert 0 < lo < estimate < hi
    # The accuracy difference of every resample equals the one computed on the resampled image list.
    estimate, lo, hi = paired_multiclass_difference(y, good, poor, names, "accuracy", n_boot=300, seed=5)
    draw_rng = np.random.default_rng(5)
    slow = []
    for _ in range(300):
        idx = draw_rng.integers(0, 60, 60)
        if len(np.unique(y[idx])) == 3:
            slow.append((good[idx].argmax(1) == y[idx]).mean() - (poor[idx].argmax(1) == y[idx]).mean())
    assert (lo, hi) == pytest.approx((np.quantile(slow, 0.025), np.quantile(slow, 0.975)))
    with pytest.raises(ValueError, match="unknown metric"):
        paired_multiclass_difference(y, good, poor, names, "kappa", n_boot=20)
