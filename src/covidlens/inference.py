"""Running a trained classifier on images: the function behind ``covidlens predict`` and the API."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from covidlens.checkpoint import Checkpoint, load_checkpoint
from covidlens.data.io import list_images, read_image
from covidlens.data.transforms import EvalPreset
from covidlens.errors import CovidlensError


@dataclass
class Prediction:
    path: str
    probability: float
    label: str
    threshold: float
    error: str = ""


def eval_transform(info) -> EvalPreset:
    return EvalPreset(info.input_size, tuple(info.mean), tuple(info.std), info.in_channels)


@torch.no_grad()
def positive_probability(model: torch.nn.Module, batch: torch.Tensor, positive_index: int = 1, tta: bool = False):
    """P(positive class) for a batch; with ``tta`` the mean over the image and its mirror."""
    model.eval()

    def once(x):
        logits = model(x)
        if logits.shape[1] == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=1)[:, positive_index]

    prob = once(batch)
    if tta:
        prob = (prob + once(torch.flip(batch, dims=[3]))) / 2
    return prob


def predict(
    checkpoint: Checkpoint | str | Path,
    paths: Iterable[str | Path],
    threshold: float | None = None,
    batch_size: int = 16,
    tta: bool | None = None,
) -> list[Prediction]:
    """Predict every image under ``paths`` (files or folders).

    Unreadable files do not stop the run: their row carries the error sentence and no probability.
    ``threshold`` defaults to the checkpoint's (0.5 unless the model says otherwise).
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    info = ckpt.info
    threshold = info.threshold if threshold is None else float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise CovidlensError(f"threshold must lie between 0 and 1, got {threshold}.")
    tta = info.tta if tta is None else tta
    files: list[Path] = []
    for path in paths:
        files.extend(list_images(path))
    transform = eval_transform(info)
    device = next(ckpt.model.parameters()).device
    if len(info.classes) != 2:
        raise CovidlensError("predict handles binary models; this checkpoint has classes " + ", ".join(info.classes) + ".")
    positive, negative = info.classes[info.positive_index], info.classes[1 - info.positive_index]
    results: list[Prediction] = []
    pending: list[tuple[Path, torch.Tensor]] = []

    def flush():
        if not pending:
            return
        batch = torch.stack([t for _, t in pending]).to(device)
        probs = positive_probability(ckpt.model, batch, info.positive_index, tta).cpu().numpy()
        for (path, _), p in zip(pending, probs):
            label = positive if p >= threshold else negative
            results.append(Prediction(str(path), float(p), label, threshold))
        pending.clear()

    for path in files:
        try:
            pending.append((path, transform(read_image(path))))
        except CovidlensError as exc:
            flush()
            results.append(Prediction(str(path), float("nan"), "", threshold, str(exc)))
            continue
        if len(pending) == batch_size:
            flush()
    flush()
    return results


def predict_arrays(ckpt: Checkpoint, samples, batch_size: int = 32, tta: bool = False) -> np.ndarray:
    """P(positive) for a list of :class:`~covidlens.data.datasets.Sample` (used by evaluation)."""
    transform = eval_transform(ckpt.info)
    device = next(ckpt.model.parameters()).device
    out = []
    for start in range(0, len(samples), batch_size):
        batch = torch.stack([transform(read_image(s.path)) for s in samples[start : start + batch_size]])
        out.append(positive_probability(ckpt.model, batch.to(device), ckpt.info.positive_index, tta).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)
