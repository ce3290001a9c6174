"""The training logic as a LightningModule; the network itself stays a plain ``nn.Module``."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from covidlens.models import create_model
from covidlens.training.config import TrainConfig, _build


class ClassifierModule(L.LightningModule):
    """Binary (one logit, BCE) or multi-class (softmax, cross-entropy) image classification."""

    def __init__(self, config: dict, num_outputs: int, pretrained: bool | None = None):
        super().__init__()
        # Plain dicts and numbers only, so Lightning checkpoints load with weights_only=True.
        self.save_hyperparameters({"config": config, "num_outputs": num_outputs})
        self.config: TrainConfig = _build(TrainConfig, config, "")
        m = self.config.model
        self.model = create_model(
            m.name,
            num_classes=num_outputs,
            pretrained=m.pretrained if pretrained is None else pretrained,
            **m.kwargs,
        )
        self.num_outputs = num_outputs
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target`` is class indices, or per-class weights (B x K) from the mixing collate."""
        smoothing = self.config.optim.label_smoothing
        if self.num_outputs == 1:
            target = target.float() if target.dim() == 1 else target[:, 1]
            if smoothing:
                target = target * (1 - smoothing) + 0.5 * smoothing
            return F.binary_cross_entropy_with_logits(logits[:, 0], target)
        return F.cross_entropy(logits, target, label_smoothing=smoothing)

    def on_fit_start(self):
        if self.config.trainer.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.config.trainer.channels_last else x

    def training_step(self, batch, batch_idx):
        x, target = batch
        x = self._layout(x)
        loss = self.loss(self(x), target)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        x = self._layout(x)
        logits = self(x)
        self._val_outputs.append((logits.detach().float().cpu(), y.cpu()))

    def on_validation_epoch_end(self):
        if not self._val_outputs:
            return
        logits = torch.cat([o[0] for o in self._val_outputs])
        y = torch.cat([o[1] for o in self._val_outputs])
        self._val_outputs.clear()
        loss = self.loss(logits, y)
        if self.num_outputs == 1:
            prob = torch.sigmoid(logits[:, 0]).numpy()
            pred = (prob >= 0.5).astype(int)
            auc = roc_auc_score(y.numpy(), prob) if len(np.unique(y.numpy())) == 2 else float("nan")
        else:
            probs = torch.softmax(logits, 1).numpy()
            pred = probs.argmax(1)
            auc = roc_auc_score(y.numpy(), probs, multi_class="ovr") if len(np.unique(y.numpy())) > 1 else float("nan")
        acc = float((pred == y.numpy()).mean())
        self.log_dict({"val_loss": loss, "val_acc": acc, "val_auc": float(auc)}, prog_bar=True)

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
