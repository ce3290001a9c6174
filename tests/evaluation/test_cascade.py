"""Seed 004's cascade: the same three labels as the 3-class model, probabilities that sum to 1, and an
operating point that never misses more infected validation images than the plain decision."""

import numpy as np
import pytest
import torch
from PIL import Image

from covidlens.checkpoint import Checkpoint, ModelInfo
from covidlens.data.datasets import Sample
from covidlens.data.sets.cxr import SUTD_CLASSES
from covidlens.errors import CovidlensError
from covidlens.evaluation.cascade import (
    CASCADE_CLASSES,
    cascade_predict,
    cascade_probabilities,
    fewest_missed_threshold,
    infected_counts,
    infected_score,
    operating_point_predictions,
    per_class_rates,
)
from covidlens.evaluation.metrics import multiclass_confusion, multiclass_metrics
from covidlens.inference import class_probabilities
from covidlens.models import create_model


def _checkpoint(classes, positive, tmp_path):
    torch.manual_seed(len(classes) + len(positive or ""))
    outputs = 1 if positive else len(classes)
    model = create_model("simple_cnn", num_classes=outputs, widths=(4,), in_channels=1)
    info = ModelInfo("simple_cnn", list(classes), 32, [0.5], [0.5], modality="cxr", positive_class=positive,
                     num_outputs=outputs, in_channels=1, model_kwargs={"widths": [4], "in_channels": 1})
    return Checkpoint(model, info, tmp_path)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    samples = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(path)
        samples.append(Sample(path, i % 3, "test", f"p{i}"))
    return samples


def test_the_cascade_and_the_3_class_model_give_the_same_labels_and_probabilities_summing_to_1(images, tmp_path):
    three = _checkpoint(SUTD_CLASSES, None, tmp_path)
    stage1 = _checkpoint(["infected", "normal"], "infected", tmp_path)  # the order load_csv gives
    stage2 = _checkpoint(["non-covid", "covid"], "covid", tmp_path)
    assert list(CASCADE_CLASSES) == three.info.classes == SUTD_CLASSES
    y = np.array([s.label for s in images])
    for probs in (class_probabilities(three, images), cascade_predict(stage1, stage2, images)):
        assert probs.shape == (len(images), 3) and (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        metrics = multiclass_metrics(y, probs, CASCADE_CLASSES)
        assert {f"recall/{c}" for c in SUTD_CLASSES} <= set(metrics)
        assert multiclass_confusion(y, probs, 3).sum() == len(images)
    # Each stage's probability is read by class name, whatever column the stage model put it in.
    p_infected = class_probabilities(stage1, images)[:, 0]
    np.testing.assert_allclose(cascade_predict(stage1, stage2, images)[:, 0], 1 - p_infected, atol=1e-6)
    with pytest.raises(CovidlensError, match="stage-1 model must be a binary model with a class 'infected'"):
        cascade_predict(stage2, stage1, images)


def test_cascade_probabilities_follow_the_two_stages():
    probs = cascade_probabilities([0.2, 0.9, 0.6], [0.5, 0.1, 0.8])
    np.testing.assert_allclose(probs, [[0.8, 0.1, 0.1], [0.1, 0.09, 0.81], [0.4, 0.48, 0.12]])
    # The most probable of the three is the stage-by-stage decision here.
    assert list(probs.argmax(axis=1)) == [0, 2, 1]


def test_the_fewest_missed_threshold_misses_no_more_infected_validation_images_than_half():
    rng = np.random.default_rng(1)
    y_val = rng.integers(0, 3, 200)
    # An imperfect model: infected images get higher P(infected) on average, with overlap.
    p_infected = np.clip(0.35 + 0.3 * (y_val != 0) + rng.normal(0, 0.2, 200), 0.01, 0.99)
    probs = cascade_probabilities(p_infected, rng.uniform(0.05, 0.95, 200))
    threshold = fewest_missed_threshold(y_val, probs)
    at_point = infected_counts(y_val, operating_point_predictions(probs, threshold))
    at_half = infected_counts(y_val, operating_point_predictions(probs, 0.5))
    assert at_half["missed_infected"] > 0  # the data leaves something to gain
    assert at_point["missed_infected"] == 0 <= at_half["missed_infected"]
    assert at_point["normal_called_infected"] >= at_half["normal_called_infected"]  # what it costs
    # It is the highest such threshold: just above it, an infected image is missed.
    score = infected_score(probs)
    assert threshold == score[y_val != 0].min()
    assert infected_counts(y_val, operating_point_predictions(probs, np.nextafter(threshold, 1)))["missed_infected"] == 1
    # 0.5 on P(infected) is the most probable class wherever P(normal) < 0.5 beats the other two.
    clear = (score < 0.5) | (probs[:, 0] < probs[:, 1:].max(axis=1))
    assert (operating_point_predictions(probs, 0.5)[clear] == probs.argmax(axis=1)[clear]).all()


def test_operating_point_keeps_the_infected_class_and_rates_come_from_the_matrix():
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.1, 0.3], [0.2, 0.3, 0.5]])
    assert list(operating_point_predictions(probs, 0.35)) == [0, 2, 2]
    rates = per_class_rates([[2, 1, 0], [0, 3, 0], [0, 1, 1]], CASCADE_CLASSES)
    assert rates["accuracy"] == pytest.approx(6 / 8)
    assert rates["precision/covid"] == pytest.approx(3 / 5) and rates["recall/non-covid"] == pytest.approx(0.5)
    assert np.isnan(per_class_rates([[1, 0, 0], [1, 0, 0], [1, 0, 0]], CASCADE_CLASSES)["precision/covid"])


def test_no_infected_validation_image_is_a_sentence():
    with pytest.raises(CovidlensError, match="no infected image"):
        fewest_missed_threshold([0, 0], np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1]]))
