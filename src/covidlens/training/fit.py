"""``train``: one function that turns a :class:`TrainConfig` into a trained checkpoint folder.

This module owns the Trainer only. What is trained comes from the data set's task: :data:`TASKS` maps
``classification`` and ``segmentation`` to the task's three pieces (:mod:`covidlens.training.classification`,
:mod:`covidlens.training.segmentation`): ``build_datamodule``, ``build_module`` and ``export``.

Lightning's Trainer owns the loop, devices (CPU, one or many GPUs, several nodes through DDP),
precision, logging (TensorBoard and CSV) and the resumable ``last.ckpt``. At the end the best epoch on
the validation split is exported as a safetensors checkpoint (see :mod:`covidlens.checkpoint`) together
with, for a classifier, the operating point chosen on that same validation split.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.fabric.utilities.exceptions import MisconfigurationException

from covidlens.data.datasets import load_dataset
from covidlens.errors import CovidlensError
from covidlens.training import classification, segmentation
from covidlens.training.config import TrainConfig, save_config


@dataclass(frozen=True)
class TaskPieces:
    """What a task provides to the Trainer: the data step, the Lightning module, the export, and the
    validation metric that picks the best epoch when ``eval.monitor`` names none."""

    build_datamodule: Callable
    build_module: Callable
    export: Callable
    monitor: str


#: The pieces of each task, keyed by the data set's task.
TASKS: dict[str, TaskPieces] = {
    "classification": TaskPieces(classification.build_datamodule, classification.build_module,
                                 classification.export, "val_auc"),
    "segmentation": TaskPieces(segmentation.build_datamodule, segmentation.build_module,
                               segmentation.export, "val_dice"),
}

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
    pieces = TASKS.get(table.task)
    if pieces is None:
        raise CovidlensError(f"data set {table.name!r} is a {table.task} set, which covidlens cannot train "
                             f"(it trains {', '.join(TASKS)}).")
    prepared = pieces.build_datamodule(config, table)
    L.seed_everything(config.seed, workers=True, verbose=False)
    # Build the model and the trainer before creating the run folder: settings that cannot work
    # (offline pretrained weights, bad kwargs, no GPU) must not leave a folder that blocks the next try.
    module = pieces.build_module(config, prepared)
    monitor = config.eval.monitor or pieces.monitor
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
    trainer.fit(module, datamodule=prepared.datamodule, ckpt_path=str(last) if resume else None, weights_only=True)
    elapsed = time.time() - started
    if trainer.global_rank != 0:
        return run_dir
    (run_dir / "train_seconds.txt").write_text(f"{elapsed:.1f}\n")
    best = checkpoint_cb.best_model_path or str(last)
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    pieces.export(module, config, prepared, run_dir / MODEL_DIR)
    return run_dir
