"""Lesion segmentation training: the LightningModule, its data and the exported checkpoint.

:func:`covidlens.training.fit.train` comes here when the data set's task is ``segmentation``
(``data.dataset=medseg-infnet``): this module provides the task's three pieces, :func:`build_datamodule`,
:func:`build_module` and :func:`export`, as :mod:`covidlens.training.classification` does for
classifiers; the Trainer, checkpoints, logs and resume are :mod:`~covidlens.training.fit`'s. Loss and
per-slice Dice are MONAI's; the Dice average over validation slices is a torchmetrics ``MeanMetric``,
so under DDP the processes' shards are gathered before the best epoch is chosen, as for the
classifier's AUC.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss
from monai.metrics import compute_dice
from torchmetrics import MeanMetric

from covidlens.checkpoint import Checkpoint, ModelInfo, save_checkpoint
from covidlens.data.datamodule import SegmentationDataModule
from covidlens.data.datasets import SampleTable
from covidlens.data.transforms import SegmentationEvalPreset, SegmentationTrainPreset
from covidlens.errors import CovidlensError
from covidlens.models import create_model, get_model_spec, list_models
from covidlens.training.config import TrainConfig
from covidlens.training.module import Prepared, TrainingModule


def slice_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """B x (K-1) Dice of the most probable class against the truth, per slice and foreground class.

    A class absent from both truth and prediction scores 1, absent from the truth only 0 (MONAI's
    ``ignore_empty=False``): a false alarm on a lesion-free slice is a miss, not ignored.
    """
    k = logits.shape[1]
    pred = F.one_hot(logits.argmax(1), k).permute(0, 3, 1, 2)
    truth = F.one_hot(target, k).permute(0, 3, 1, 2)
    return compute_dice(pred, truth, include_background=False, ignore_empty=False)


class SegmentationModule(TrainingModule):
    """K-class softmax segmentation (K = 2 for binary infection masks), MONAI Dice(+CE) loss."""

    def __init__(self, config: dict, num_classes: int, pretrained: bool | None = None):
        super().__init__()
        self.save_hyperparameters({"config": config, "num_classes": num_classes})
        self.config: TrainConfig = TrainConfig.from_dict(config)
        m = self.config.model
        self.model = create_model(
            m.name, num_classes=num_classes, pretrained=m.pretrained if pretrained is None else pretrained, **m.kwargs
        )
        self.num_classes = num_classes
        s = self.config.segment
        if s.loss == "dicece":
            self.criterion = DiceCELoss(to_onehot_y=True, softmax=True, include_background=s.include_background)
        elif s.loss == "dice":
            self.criterion = DiceLoss(to_onehot_y=True, softmax=True, include_background=s.include_background)
        else:
            self.criterion = None
        self.val_loss = MeanMetric()
        self.val_dice = MeanMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.criterion is None:
            return F.cross_entropy(logits, target)
        return self.criterion(logits, target[:, None])

    def training_step(self, batch, batch_idx):
        x, target = batch
        loss = self.loss(self(self._layout(x)).float(), target)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, target = batch
        logits = self(self._layout(x)).float()
        self.val_loss.update(self.loss(logits, target), weight=x.shape[0])
        self.val_dice.update(slice_dice(logits, target).mean(dim=1))

    def on_validation_epoch_end(self):
        self.log_dict({"val_loss": self.val_loss.compute(), "val_dice": self.val_dice.compute()}, prog_bar=True)
        self.val_loss.reset()
        self.val_dice.reset()


def check_segmentation_config(config: TrainConfig, table: SampleTable) -> list[str]:
    """The mask class names, after refusing settings that cannot train a segmenter."""
    spec = get_model_spec(config.model.name)
    if spec.task != "segmentation":
        choices = ", ".join(list_models(task="segmentation")) or "none is registered"
        raise CovidlensError(
            f"data set {table.name!r} is a segmentation set but model {config.model.name!r} is a {spec.task} model; "
            f"set model.name to a segmentation model ({choices})."
        )
    if not table.mask_classes or len(table.mask_classes) < 2:
        raise CovidlensError(f"data set {table.name!r} names no mask classes, so a segmenter cannot be trained on it.")
    if config.augment.mixing != "none" and config.augment.mixing_prob > 0:
        raise CovidlensError("augment.mixing mixes class labels and does not apply to masks; set augment.mixing=none.")
    if config.eval.monitor not in (None, "val_dice", "val_loss"):
        raise CovidlensError(f"eval.monitor {config.eval.monitor!r} is a classifier metric; a segmenter uses val_dice or val_loss.")
    return list(table.mask_classes)


def build_datamodule(config: TrainConfig, table: SampleTable) -> Prepared:
    """The segmentation task's data step: masks and slices, augmented together."""
    spec = get_model_spec(config.model.name)
    size = config.model.input_size or spec.input_size
    if size % 32:
        raise CovidlensError(f"model.input_size {size} must be a multiple of 32 for a segmentation network.")
    classes = check_segmentation_config(config, table)
    train_tf = SegmentationTrainPreset.from_config(config.augment, size, spec.mean, spec.std, 3)
    eval_tf = SegmentationEvalPreset(size, spec.mean, spec.std, 3)
    dm = SegmentationDataModule(
        table, len(classes), train_tf, eval_tf, config.optim.batch_size, config.data.num_workers,
        config.data.limit_per_class, config.data.val_slices, config.seed,
    )
    return Prepared(dm, table, spec, size, {"classes": classes})


def build_module(config: TrainConfig, prepared: Prepared) -> SegmentationModule:
    """The segmentation task's Lightning module: one output channel per mask class."""
    return SegmentationModule(config.to_dict(), len(prepared.extra["classes"]))


def export(module: SegmentationModule, config: TrainConfig, prepared: Prepared, folder: Path) -> Checkpoint:
    """Save the network with a format-2 description: task segmentation, classes = mask class names."""
    model = module.model.cpu().eval()
    table, spec = prepared.table, prepared.spec
    info = ModelInfo(
        model=config.model.name,
        task="segmentation",
        modality=config.data.modality or table.modality,
        classes=list(table.mask_classes),
        positive_class=None,
        input_size=prepared.size,
        mean=list(spec.mean),
        std=list(spec.std),
        num_outputs=len(table.mask_classes),
        model_kwargs=dict(config.model.kwargs),
        dataset=config.data.dataset,
    )
    save_checkpoint(model, info, folder)
    return Checkpoint(model, info, folder)
