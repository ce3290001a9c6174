"""``train``: one function that turns a :class:`TrainConfig` into a trained checkpoint folder.

The data set's task decides what is trained: a classifier (:class:`ClassifierModule`) on a
classification set, a segmenter (:class:`~covidlens.training.segmentation.SegmentationModule`) on a
segmentation set such as ``medseg-infnet``; the loop, logs and export are shared.

Lightning's Trainer owns the loop, devices (CPU, one or many GPUs, several nodes through DDP),
precision, logging (TensorBoard and CSV) and the resumable ``last.ckpt``. At the end the best epoch on
the validation split is exported as a safetensors checkpoint (see :mod:`covidlens.checkpoint`) together
with the operating point chosen on that same validation split.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.fabric.utilities.exceptions import MisconfigurationException

from covidlens.checkpoint import DEFAULT_PREPROCESSING, Checkpoint, ModelInfo, save_checkpoint
from covidlens.data.datamodule import ClassificationDataModule
from covidlens.data.datasets import load_dataset
from covidlens.data.mixing import MixingCollate
from covidlens.data.transforms import EvalPreset, TrainPreset
from covidlens.errors import CovidlensError
from covidlens.evaluation.operating_points import choose_for_sensitivity
from covidlens.inference import class_probabilities
from covidlens.models import get_model_spec
from covidlens.training.config import TrainConfig, save_config
from covidlens.training.module import ClassifierModule
from covidlens.training.segmentation import (
    SegmentationModule,
    build_segmentation_datamodule,
    export_segmentation_model,
)

MODEL_DIR = "model"
LAST_CKPT = "checkpoints/last.ckpt"


def run_folder(config: TrainConfig) -> Path:
    return Path(config.trainer.out_dir) / config.name


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*predict_dataloader.*")


class EpochLine(L.Callback):
    """One line per epoch on the main process (loss, validation metrics, seconds), so that a run
    without a progress bar (``make demo``, a log file) is never silent for minutes."""

    def __init__(self):
        self._started = 0.0

    def on_train_epoch_start(self, trainer, module):
        self._started = time.time()

    def on_train_epoch_end(self, trainer, module):
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        shown = "  ".join(
            f"{key} {float(metrics[key]):.3f}"
            for key in ("train_loss", "val_loss", "val_auc", "val_acc", "val_dice") if key in metrics
        )
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {shown}  {time.time() - self._started:.0f} s",
              flush=True)


def resolve_positive_class(config: TrainConfig, table) -> str | None:
    """The positive class is named by the config or the data set, never taken from a position.

    A two-class task needs one (its single logit is P(positive class)); a K-class task may have none.
    """
    chosen = config.data.positive_class or table.positive_class
    if chosen is not None and chosen not in table.classes:
        raise CovidlensError(
            f"positive class {chosen!r} is not a class of {table.name!r} ({', '.join(table.classes)}); "
            "set data.positive_class to one of them."
        )
    if chosen is None and len(table.classes) == 2:
        raise CovidlensError(
            f"data set {table.name!r} has two classes ({', '.join(table.classes)}) and none is named positive; "
            "set data.positive_class (e.g. --set data.positive_class=" + table.classes[-1] + ")."
        )
    return chosen


def input_channels(config: TrainConfig, spec) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Channels the network reads (its ``in_channels`` argument, 3 when it has none) and the
    registered normalisation cut to that many channels (a 1-channel model gets the grey image)."""
    channels = int(config.model.kwargs.get("in_channels", 3))
    return channels, tuple(spec.mean[:channels]), tuple(spec.std[:channels])


def build_datamodule(config: TrainConfig, table=None):
    spec = get_model_spec(config.model.name)
    size = config.model.input_size or spec.input_size
    table = table if table is not None else load_dataset(config.data.dataset, config.data.root)
    if spec.task != "classification":
        raise CovidlensError(
            f"model {config.model.name!r} is a {spec.task} model; data set {table.name!r} needs a classifier."
        )
    if table.task != "classification":
        raise CovidlensError(f"data set {table.name!r} is a {table.task} set; a classifier trains on a classification set.")
    a = config.augment
    channels, mean, std = input_channels(config, spec)
    train_tf = TrainPreset(
        size, mean, std, channels, a.crop_scale, a.hflip, a.brightness, a.contrast, a.rotation, a.translate,
        a.noise_std, config.data.region, a.jpeg_prob, tuple(a.jpeg_quality), a.downscale_prob, a.downscale_min,
    )
    eval_tf = EvalPreset(size, mean, std, channels, config.data.region)
    collate = None
    if a.mixing != "none" and a.mixing_prob > 0:
        collate = MixingCollate(max(len(table.classes), 2), a.mixing, a.mixing_prob, a.mixing_alpha, seed=config.seed)
    dm = ClassificationDataModule(
        table, train_tf, eval_tf, config.optim.batch_size, config.data.num_workers, config.data.limit_per_class,
        collate,
    )
    return dm, table, spec, size


def train(
    config: TrainConfig,
    resume: bool = False,
    callbacks: list[L.Callback] | None = None,
    progress: bool = True,
    task: str | None = None,
) -> Path:
    """Train, export the best validation epoch, and return the run folder.

    The data set's task picks a classifier or a segmenter; ``task`` (when given) is the one the caller
    expects, and a data set of another task is refused (``covidlens segment train`` on a classification set).

    A run folder that already holds a run is never overwritten: pass ``resume=True`` to continue it
    from ``checkpoints/last.ckpt``, or choose another ``name``.
    """
    _quiet_lightning()
    run_dir = run_folder(config)
    last = run_dir / LAST_CKPT
    if resume:
        if not last.is_file():
            raise CovidlensError(f"cannot resume: {last} does not exist (was the run started with this name and out_dir?).")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise CovidlensError(
            f"run folder {run_dir} already exists; pass --resume to continue it or choose another --name."
        )
    table = load_dataset(config.data.dataset, config.data.root)
    if task is not None and table.task != task:
        hint = "covidlens segment train" if table.task == "segmentation" else "covidlens train"
        raise CovidlensError(f"data set {table.name!r} is a {table.task} set, not a {task} set; train it with '{hint}'.")
    segmenting = table.task == "segmentation"
    if segmenting:
        dm, classes, spec, size = build_segmentation_datamodule(config, table)
    else:
        dm, table, spec, size = build_datamodule(config, table)
        positive = resolve_positive_class(config, table)
        num_outputs = 1 if len(table.classes) == 2 else len(table.classes)
    L.seed_everything(config.seed, workers=True, verbose=False)
    # Build the model and the trainer before creating the run folder: settings that cannot work
    # (offline pretrained weights, bad kwargs, no GPU) must not leave a folder that blocks the next try.
    if segmenting:
        module = SegmentationModule(config.to_dict(), len(classes))
    else:
        module = ClassifierModule(config.to_dict(), num_outputs, table.classes.index(positive) if positive else None)
    monitor = config.eval.monitor or ("val_dice" if segmenting else "val_auc")
    if not segmenting and monitor == "val_dice":
        raise CovidlensError("eval.monitor val_dice is a segmentation metric; a classifier uses val_auc, val_acc or val_loss.")
    checkpoint_cb = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{epoch:02d}",
        monitor=monitor,
        mode="min" if monitor.endswith("loss") else "max",
        save_top_k=1,
    )
    # A separate callback keeps last.ckpt current every epoch: Lightning's own save_last only
    # refreshes it in epochs that also produced a new best checkpoint, which would lose work on resume.
    last_cb = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    t = config.trainer
    try:
        trainer = L.Trainer(
            max_epochs=config.optim.epochs,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            precision=t.precision,
            default_root_dir=run_dir,
            logger=[
                CSVLogger(run_dir, name="logs", version=""),
                TensorBoardLogger(run_dir, name="logs", version="", default_hp_metric=False),
            ],
            callbacks=[checkpoint_cb, last_cb, LearningRateMonitor("epoch"), EpochLine(), *(callbacks or [])],
            log_every_n_steps=5,
            enable_progress_bar=progress,
            enable_model_summary=False,
            deterministic=False,
        )
    except (ValueError, RuntimeError, MisconfigurationException) as exc:
        raise CovidlensError(f"the trainer settings in the config cannot be used here ({exc}).") from exc
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    started = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None, weights_only=True)
    elapsed = time.time() - started
    if trainer.global_rank != 0:
        return run_dir
    (run_dir / "train_seconds.txt").write_text(f"{elapsed:.1f}\n")
    best = checkpoint_cb.best_model_path or str(last)
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    if segmenting:
        export_segmentation_model(module, config, table, spec, size, run_dir / MODEL_DIR)
    else:
        export_model(module, config, table, spec, size, num_outputs, positive, run_dir / MODEL_DIR, dm)
    return run_dir


def export_model(module, config, table, spec, size, num_outputs, positive, folder: Path, dm) -> Checkpoint:
    """Save the network as safetensors with its description and the validation-chosen threshold."""
    model = module.model.cpu().eval()
    channels, mean, std = input_channels(config, spec)
    info = ModelInfo(
        model=config.model.name,
        task="classification",
        modality=config.data.modality or table.modality,
        classes=list(table.classes),
        positive_class=positive,
        input_size=size,
        mean=list(mean),
        std=list(std),
        in_channels=channels,
        num_outputs=num_outputs,
        model_kwargs=dict(config.model.kwargs),
        preprocessing={**DEFAULT_PREPROCESSING, "region": config.data.region,
                       "lungs": config.data.lungs},
        tta=config.eval.tta,
        dataset=config.data.dataset,
        target_sensitivity=config.eval.target_sensitivity,
    )
    ckpt = Checkpoint(model, info, folder)
    if positive is not None:
        val = dm.dataset("val").samples
        prob = class_probabilities(ckpt, val, tta=config.eval.tta)[:, info.positive_index]
        y = [int(s.label == info.positive_index) for s in val]
        if any(y):  # a validation split without positives cannot set a sensitivity threshold
            info.sensitivity_threshold = choose_for_sensitivity(y, prob, config.eval.target_sensitivity)
    save_checkpoint(model, info, folder)
    return ckpt
