"""The training logic as a LightningModule; the network itself stays a plain ``nn.Module``.

:class:`TrainingModule` is what every task's module shares, :class:`Prepared` what every task's data
step hands to its module and export steps, and :class:`ClassifierModule` the classification task's
module (its data and export steps are in :mod:`covidlens.training.classification`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import CatMetric, MeanMetric
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, MulticlassAccuracy, MulticlassAUROC

from covidlens.models import create_model
from covidlens.training.config import TrainConfig


@dataclass
class Prepared:
    """What a task's ``build_datamodule`` gives its ``build_module`` and ``export``: the Lightning data
    module, the data set's table, the architecture's registry entry and the input side, and the
    task's own facts (``extra``: a classifier's outputs and positive class, a segmenter's mask classes)."""

    datamodule: Any
    table: Any
    spec: Any
    size: int
    extra: dict[str, Any] = field(default_factory=dict)


class TrainingModule(L.LightningModule):
    """What every task's module shares: the optimiser and schedule of ``config.optim`` and the
    channels-last memory layout. Subclasses set ``self.config`` and ``self.model``."""

    config: TrainConfig

    def on_fit_start(self):
        if self.config.trainer.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.config.trainer.channels_last else x

    def configure_optimizers(self):
        o = self.config.optim
        optimizer_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(o.optimizer)
        if optimizer_cls is None:
            raise ValueError(f"unknown optimizer {o.optimizer!r}; use adam or adamw")
        optimizer = optimizer_cls(self.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        steps_per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / max(1, self.trainer.max_epochs)))
        schedule = lr_schedule(o.scheduler, o.epochs, o.warmup_epochs, o.cosine_period, steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class ClassifierModule(TrainingModule):
    """Binary (one logit, BCE on P(positive class)) or K-class (softmax, cross-entropy) classification.

    Validation metrics are torchmetrics objects: under DDP each process scores its shard and the
    states are gathered before ``compute``, so the best epoch is chosen on the whole validation split.
    """

    def __init__(self, config: dict, num_outputs: int, positive_index: int | None = None, pretrained: bool | None = None):
        super().__init__()
        # Plain dicts and numbers only, so Lightning checkpoints load with weights_only=True.
        self.save_hyperparameters({"config": config, "num_outputs": num_outputs, "positive_index": positive_index})
        self.config: TrainConfig = TrainConfig.from_dict(config)
        if num_outputs == 1 and positive_index is None:
            raise ValueError("a single-logit model needs the index of its positive class")
        m = self.config.model
        self.model = create_model(
            m.name,
            num_classes=num_outputs,
            pretrained=m.pretrained if pretrained is None else pretrained,
            **m.kwargs,
        )
        self.num_outputs = num_outputs
        self.positive_index = positive_index
        if num_outputs == 1:
            self.val_auc, self.val_acc = BinaryAUROC(), BinaryAccuracy()
        else:
            self.val_auc = MulticlassAUROC(num_classes=num_outputs, average="macro")
            self.val_acc = MulticlassAccuracy(num_classes=num_outputs, average="micro")
        self.val_loss = MeanMetric()
        self.val_targets = CatMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target`` is class indices, or per-class weights (B x K) from the mixing collate."""
        smoothing = self.config.optim.label_smoothing
        if self.num_outputs == 1:
            target = (target == self.positive_index).float() if target.dim() == 1 else target[:, self.positive_index]
            if smoothing:
                target = target * (1 - smoothing) + 0.5 * smoothing
            return F.binary_cross_entropy_with_logits(logits[:, 0], target)
        return F.cross_entropy(logits, target, label_smoothing=smoothing)

    def training_step(self, batch, batch_idx):
        x, target = batch
        x = self._layout(x)
        loss = self.loss(self(x), target)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(self._layout(x)).float()
        self.val_loss.update(self.loss(logits, y), weight=x.shape[0])
        self.val_targets.update(y.float())
        if self.num_outputs == 1:
            positive = (y == self.positive_index).long()
            prob = torch.sigmoid(logits[:, 0])
            self.val_auc.update(prob, positive)
            self.val_acc.update(prob, positive)
        else:
            probs = torch.softmax(logits, 1)
            self.val_auc.update(probs, y)
            self.val_acc.update(probs, y)

    def on_validation_epoch_end(self):
        auc = self.val_auc.compute() if self._val_has_every_class() else torch.tensor(float("nan"))
        self.log_dict({"val_loss": self.val_loss.compute(), "val_acc": self.val_acc.compute(), "val_auc": auc}, prog_bar=True)
        for metric in (self.val_loss, self.val_acc, self.val_auc, self.val_targets):
            metric.reset()

    def _val_has_every_class(self) -> bool:
        """AUROC of a split missing a class is undefined: log NaN, not torchmetrics' stand-in 0.
        The targets are a synchronised metric, so every DDP process takes the same decision."""
        return len(torch.unique(self.val_targets.compute())) == max(2, self.num_outputs)


def lr_schedule(kind: str, epochs: int, warmup_epochs: int, period: int, steps_per_epoch: int):
    """Learning-rate multiplier per optimiser step: linear warm-up, then the chosen decay."""
    warmup = warmup_epochs * steps_per_epoch
    total = max(1, epochs * steps_per_epoch - warmup)
    cycle = max(1, period * steps_per_epoch)
    if kind not in ("cosine", "cosine_restarts", "constant"):
        raise ValueError(f"unknown scheduler {kind!r}; use cosine, cosine_restarts or constant")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = step - warmup
        if kind == "constant":
            return 1.0
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
        return 0.5 * (1 + math.cos(math.pi * (t % cycle) / cycle))

    return factor
