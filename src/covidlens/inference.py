"""Running a trained classifier on images: the functions behind ``covidlens predict`` and the API.

Every model, binary or K-class, yields one probability per class. A model with a named positive class
(P(COVID)) decides by its threshold on that class's probability; a K-class model without one takes
the most probable class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from covidlens.checkpoint import Checkpoint, ModelInfo, load_checkpoint
from covidlens.data.io import list_images, read_image
from covidlens.data.transforms import EvalPreset
from covidlens.errors import CovidlensError


@dataclass
class Prediction:
    path: str
    #: The decision: a class name ("" when the file could not be read).
    label: str
    #: P(positive class) for a model that names one, otherwise P(label).
    probability: float
    threshold: float | None
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str = ""


def eval_transform(info: ModelInfo) -> EvalPreset:
    return EvalPreset(info.input_size, tuple(info.mean), tuple(info.std), info.in_channels)


def logits_to_probabilities(logits: torch.Tensor, info: ModelInfo) -> torch.Tensor:
    """B x K class probabilities in the order of ``info.classes``, for one-logit and K-logit models."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        columns = [p if i == info.positive_index else 1 - p for i in range(2)]
        return torch.stack(columns, dim=1)
    return torch.softmax(logits, dim=1)


@torch.inference_mode()
def batch_probabilities(model: torch.nn.Module, batch: torch.Tensor, info: ModelInfo, tta: bool = False) -> torch.Tensor:
    """Class probabilities for a batch; with ``tta`` the mean over the image and its mirror."""
    model.eval()
    probs = logits_to_probabilities(model(batch), info)
    if tta:
        probs = (probs + logits_to_probabilities(model(torch.flip(batch, dims=[3])), info)) / 2
    return probs


def decide(probs: np.ndarray, info: ModelInfo, threshold: float | None) -> str:
    """Positive when P(positive) reaches the threshold, else the likeliest other class; argmax without one."""
    if info.positive_index is None or threshold is None:
        return info.classes[int(np.argmax(probs))]
    if probs[info.positive_index] >= threshold:
        return info.classes[info.positive_index]
    others = [i for i in range(len(info.classes)) if i != info.positive_index]
    return info.classes[max(others, key=lambda i: probs[i])]


def iter_predictions(
    checkpoint: Checkpoint | str | Path,
    paths: Iterable[str | Path],
    threshold: float | None = None,
    batch_size: int = 16,
    tta: bool | None = None,
) -> Iterator[Prediction]:
    """Predictions for every image under ``paths`` (files or folders), yielded as each batch is done.

    Unreadable files do not stop the run: their row carries the error sentence and no probability.
    ``threshold`` (on P(positive class)) defaults to the checkpoint's.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    info = ckpt.info
    if info.task != "classification":
        raise CovidlensError(f"{ckpt.path} is a {info.task} model; predict runs classifiers.")
    if info.positive_index is None:
        threshold = None
    else:
        threshold = info.threshold if threshold is None else float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise CovidlensError(f"threshold must lie between 0 and 1, got {threshold}.")
    tta = info.tta if tta is None else tta
    files: list[Path] = []
    for path in paths:
        files.extend(list_images(path))
    transform = eval_transform(info)
    device = next(ckpt.model.parameters()).device
    pending: list[tuple[Path, torch.Tensor]] = []

    def flush():
        if not pending:
            return
        batch = torch.stack([t for _, t in pending]).to(device)
        probs = batch_probabilities(ckpt.model, batch, info, tta).cpu().numpy()
        for (path, _), p in zip(pending, probs):
            label = decide(p, info, threshold)
            score = p[info.positive_index] if info.positive_index is not None else p[info.classes.index(label)]
            yield Prediction(str(path), label, float(score), threshold, dict(zip(info.classes, map(float, p))))
        pending.clear()

    for path in files:
        try:
            pending.append((path, transform(read_image(path))))
        except CovidlensError as exc:
            yield from flush()
            yield Prediction(str(path), "", float("nan"), threshold, error=str(exc))
            continue
        if len(pending) == batch_size:
            yield from flush()
    yield from flush()


def predict(
    checkpoint: Checkpoint | str | Path,
    paths: Iterable[str | Path],
    threshold: float | None = None,
    batch_size: int = 16,
    tta: bool | None = None,
) -> list[Prediction]:
    """Every prediction of :func:`iter_predictions` as a list."""
    return list(iter_predictions(checkpoint, paths, threshold, batch_size, tta))


def class_probabilities(ckpt: Checkpoint, samples, batch_size: int = 32, tta: bool = False) -> np.ndarray:
    """N x K class probabilities for a list of :class:`~covidlens.data.datasets.Sample` (evaluation)."""
    transform = eval_transform(ckpt.info)
    device = next(ckpt.model.parameters()).device
    out = []
    for start in range(0, len(samples), batch_size):
        batch = torch.stack([transform(s.image()) for s in samples[start : start + batch_size]])
        out.append(batch_probabilities(ckpt.model, batch.to(device), ckpt.info, tta).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(ckpt.info.classes)))


def predict_arrays(ckpt: Checkpoint, samples, batch_size: int = 32, tta: bool = False) -> np.ndarray:
    """P(positive class) per sample, for models that name a positive class."""
    if ckpt.info.positive_index is None:
        raise CovidlensError("this model names no positive class; use class_probabilities for its K probabilities.")
    return class_probabilities(ckpt, samples, batch_size, tta)[:, ckpt.info.positive_index]
