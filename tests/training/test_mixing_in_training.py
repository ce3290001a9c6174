"""Batch mixing really reaches the loss during training: the targets a training step sees are soft
mixtures, not the one-hot labels of the images."""

import pytest
import torch

from covidlens.training.fit import train
from covidlens.training.module import ClassifierModule
from tests.conftest import tiny_config


@pytest.mark.parametrize("method,prob,mixed", [("mixup", 1.0, True), ("cutmix", 1.0, True), ("mixup", 0.0, False)])
def test_training_step_loss_sees_mixed_targets(data_root, tmp_path, monkeypatch, method, prob, mixed):
    seen = []
    original = ClassifierModule.loss

    def recording_loss(self, logits, target):
        if self.training:
            seen.append(target.detach().clone())
        return original(self, logits, target)

    monkeypatch.setattr(ClassifierModule, "loss", recording_loss)
    config = tiny_config(data_root, tmp_path, f"{method}-{prob}", epochs=1)
    config.augment.mixing, config.augment.mixing_prob, config.augment.mixing_alpha = method, prob, 1.0
    train(config, progress=False)
    assert seen, "no training step ran"
    if not mixed:
        # Without mixing the loss gets the plain class indices.
        assert all(t.dim() == 1 for t in seen)
        return
    soft = torch.cat([t for t in seen if t.dim() == 2])
    assert soft.numel(), "mixing was configured but the loss never saw soft targets"
    assert torch.allclose(soft.sum(1), torch.ones(len(soft)))
    strictly_between = ((soft > 1e-6) & (soft < 1 - 1e-6)).any(1)
    # Rows whose partner image has the same class stay one-hot; the others weigh both classes.
    assert strictly_between.float().mean() > 0.2, "mixed batches should weigh both classes in many rows"
