"""Running a trained classifier on images: the functions behind ``covidlens predict`` and the API.

Every model, binary or K-class, yields one probability per class. A model with a named positive class
(P(COVID)) decides by its threshold on that class's probability; a K-class model without one takes
the most probable class. Before any verdict each image goes through the modality check
(:mod:`covidlens.modality`): a chest X-ray given to a CT model, or a picture that is neither, is refused
with one sentence instead of getting a probability.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from covidlens.checkpoint import Checkpoint, ModelInfo
from covidlens.data.intensity import display_image
from covidlens.data.io import VOLUME_SUFFIXES, is_dicom, list_images, read_scan
from covidlens.data.transforms import EvalPreset
from covidlens.errors import CovidlensError
from covidlens.measure.evidence import LesionEvidence
from covidlens.modality import ModalityCheck, check_scan, mismatch_message
from covidlens.runtime import OnnxModel, open_model


@dataclass
class Prediction:
    path: str
    #: The decision: a class name ("" when the file could not be read).
    label: str
    #: P(positive class) for a model that names one, otherwise P(label).
    probability: float
    threshold: float | None
    probabilities: dict[str, float] = field(default_factory=dict)
    #: Why the row has no decision: the file could not be read, or the modality check refused it.
    error: str = ""
    #: True when the modality check refused the image (``error`` then holds its sentence).
    refused: bool = False
    #: What the modality check found (``ct``, ``cxr`` or ``other``); "" when it did not run.
    modality: str = ""
    #: What the lesion model found (:class:`~covidlens.measure.evidence.LesionEvidence`), when one was given.
    lesions: LesionEvidence | None = None
    #: For a volume (a NIfTI file or a DICOM series folder): the screen road's study result
    #: (:func:`covidlens.screening.road.screen_scan`), whose classifier study score is ``probability``.
    study: dict | None = None


def eval_transform(info: ModelInfo) -> EvalPreset:
    return EvalPreset(info.input_size, tuple(info.mean), tuple(info.std), info.in_channels,
                      info.preprocessing.get("region", "whole"))


def logits_to_probabilities(logits: torch.Tensor, info: ModelInfo, temperature: float | None = None) -> torch.Tensor:
    """B x K class probabilities in the order of ``info.classes``, for one-logit and K-logit models.

    The logits are divided by the checkpoint's calibration temperature first (``temperature`` overrides
    it; 1.0 gives the raw network's probabilities)."""
    logits = logits / (info.temperature if temperature is None else temperature)
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        columns = [p if i == info.positive_index else 1 - p for i in range(2)]
        return torch.stack(columns, dim=1)
    return torch.softmax(logits, dim=1)


@torch.inference_mode()
def batch_probabilities(model, batch: torch.Tensor, info: ModelInfo, tta: bool = False) -> torch.Tensor:
    """Class probabilities for a batch; with ``tta`` the mean over the image and its mirror.

    ``model`` is an ``nn.Module`` or anything called like one (an :class:`~covidlens.runtime.OnnxModel`).
    """
    if isinstance(model, torch.nn.Module):
        model.eval()
    probs = logits_to_probabilities(model(batch).float(), info)
    if tta:
        probs = (probs + logits_to_probabilities(model(torch.flip(batch, dims=[3])).float(), info)) / 2
    return probs


def decide(probs: np.ndarray, info: ModelInfo, threshold: float | None) -> str:
    """Positive when P(positive) reaches the threshold, else the likeliest other class; argmax without one."""
    if info.positive_index is None or threshold is None:
        return info.classes[int(np.argmax(probs))]
    if probs[info.positive_index] >= threshold:
        return info.classes[info.positive_index]
    others = [i for i in range(len(info.classes)) if i != info.positive_index]
    return info.classes[max(others, key=lambda i: probs[i])]


@dataclass
class Decoded:
    """One file as the predict loader hands it over."""

    #: The model's input, or None when the file could not be read.
    tensor: torch.Tensor | None
    #: Why the file could not be read ("" when it could).
    error: str = ""
    #: The modality check, when it was asked for.
    check: ModalityCheck | None = None
    #: The grey slice and its (row, col) spacing in mm, kept when lesion evidence is asked for.
    grey: Image.Image | None = None
    spacing: tuple[float, ...] | None = None


class ImageFiles(torch.utils.data.Dataset):
    """Image files decoded, checked for modality and put through a transform, for a DataLoader's workers.

    An item is a :class:`Decoded`; a file covidlens cannot read gives one with ``tensor`` None and the
    reason, so that one bad file becomes one row instead of stopping the loader.
    """

    def __init__(self, files: list[Path], transform, check_modality: bool = False, keep_image: bool = False):
        self.files = files
        self.transform = transform
        self.check_modality = check_modality
        self.keep_image = keep_image

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Decoded:
        try:
            scan = read_scan(self.files[index])
            image = display_image(scan)
            check = check_scan(scan, image) if self.check_modality else None
            kept = (image, scan.spacing) if self.keep_image else (None, None)
            return Decoded(self.transform(image), "", check, *kept)
        except CovidlensError as exc:
            return Decoded(None, str(exc))


def _as_list(items):
    return items


def default_workers(n_files: int, batch_size: int) -> int:
    """Decoding workers: none for a single batch (starting them costs more than they save), else
    one per spare core (the main process runs the model), at most four."""
    if n_files <= batch_size:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores - 1))


def image_batches(files: list[Path], transform, batch_size: int, num_workers: int | None = None,
                  check_modality: bool = False, keep_image: bool = False):
    """Batches (lists) of :class:`Decoded` in file order, decoded by ``num_workers`` processes (None:
    :func:`default_workers`). At most two batches per worker wait in memory."""
    if batch_size < 1:
        raise CovidlensError(f"batch size must be at least 1, got {batch_size}.")
    workers = default_workers(len(files), batch_size) if num_workers is None else num_workers
    if workers < 0:
        raise CovidlensError(f"the number of workers must be 0 or more, got {workers}.")
    return torch.utils.data.DataLoader(ImageFiles(files, transform, check_modality, keep_image), batch_size=batch_size, num_workers=workers,
                                       collate_fn=_as_list)


def iter_predictions(
    checkpoint: Checkpoint | OnnxModel | str | Path,
    paths: Iterable[str | Path],
    threshold: float | None = None,
    batch_size: int = 16,
    tta: bool | None = None,
    *,
    backend: str | None = None,
    num_workers: int | None = None,
    channels_last: bool = False,
    check_modality: bool = True,
    lesion_checkpoint: Checkpoint | str | Path | None = None,
) -> Iterator[Prediction]:
    """Predictions for every image under ``paths`` (files or folders), yielded as each batch is done.

    Unreadable files do not stop the run: their row carries the error sentence and no probability.
    ``threshold`` (on P(positive class)) defaults to the checkpoint's. Images are decoded and resized
    by ``num_workers`` DataLoader processes (None: one per spare core once there is more than one
    batch) while the model runs, so memory stays flat however many files there are. ``checkpoint``
    may be a checkpoint folder, a loaded :class:`Checkpoint`, an exported ``.onnx`` file or an
    :class:`~covidlens.runtime.OnnxModel`; ``backend`` (``torch`` or ``onnxruntime``, None: the
    source's own) picks the engine, see :func:`covidlens.runtime.open_model`. ``channels_last``
    converts a PyTorch model to channels-last memory format in place (faster on some CPUs).
    With ``check_modality`` (the default) an image that the modality check does not find to be of the
    model's modality (``info.modality``) gets no decision: ``refused`` is True and ``error`` says why.
    With ``lesion_checkpoint`` (a CT lesion segmenter) each decided row also carries what that model
    found in the slice (:func:`covidlens.measure.evidence.lesion_evidence`), the evidence beside the score.
    """
    model = open_model(checkpoint, backend)
    lesion = None
    if lesion_checkpoint is not None:
        from covidlens.measure.evidence import lesion_model

        lesion = lesion_model(lesion_checkpoint)
    info = model.info
    if info.task != "classification":
        raise CovidlensError(f"{model.path} is a {info.task} model; predict runs classifiers.")
    if info.positive_index is None:
        threshold = None
    else:
        threshold = info.threshold if threshold is None else float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise CovidlensError(f"threshold must lie between 0 and 1, got {threshold}.")
    tta = info.tta if tta is None else tta
    files: list[Path] = []
    for path in paths:
        if is_volume(path):
            yield _volume_prediction(model, Path(path), threshold, lesion)
        else:
            files.extend(list_images(path))
    memory_format = torch.contiguous_format
    if isinstance(model, Checkpoint):
        net, device = model.model, next(model.model.parameters()).device
        if channels_last:
            memory_format = torch.channels_last
            net.to(memory_format=memory_format)
    else:
        net, device = model, model.device
    start = 0
    for items in image_batches(files, eval_transform(info), batch_size, num_workers, check_modality, lesion is not None):
        refusals = [None if d.check is None else mismatch_message(d.check, info.modality) for d in items]
        decided = [d for d, refusal in zip(items, refusals) if d.tensor is not None and refusal is None]
        probs = iter(())
        if decided:
            batch = torch.stack([d.tensor for d in decided]).to(device, memory_format=memory_format)
            with _mixed_precision(net, device):
                probs = iter(batch_probabilities(net, batch, info, tta).cpu().numpy())
        evidence = iter(())
        if lesion is not None and decided:
            from covidlens.measure.evidence import lesion_evidence

            evidence = iter(lesion_evidence(lesion, [d.grey for d in decided], [d.spacing for d in decided]))
        for path, item, refusal in zip(files[start : start + len(items)], items, refusals):
            kind = item.check.kind if item.check is not None else ""
            if item.tensor is None or refusal is not None:
                yield Prediction(str(path), "", float("nan"), threshold, error=refusal or item.error,
                                 refused=refusal is not None, modality=kind)
                continue
            p = next(probs)
            label = decide(p, info, threshold)
            score = p[info.positive_index] if info.positive_index is not None else p[info.classes.index(label)]
            yield Prediction(str(path), label, float(score), threshold, dict(zip(info.classes, map(float, p))),
                             modality=kind, lesions=next(evidence, None))
        start += len(items)


def is_volume(path: str | Path) -> bool:
    """A NIfTI file, or a folder whose own files are DICOM (one series): a study of many slices."""
    path = Path(path)
    if path.is_file():
        return path.name.lower().endswith(VOLUME_SUFFIXES)
    if path.is_dir():
        return any(p.is_file() and p.stat().st_size > 132 and is_dicom(p) for p in path.iterdir())
    return False


def _volume_prediction(model, path: Path, threshold: float | None, lesion) -> Prediction:
    """One row for a whole volume, through the screen road: the classifier's study score and decision,
    and the lesion verdict when a lesion model was given."""
    from covidlens.screening.road import ScreenModels, screen_scan

    info = model.info
    try:
        scan = read_scan(path)
        roles = ScreenModels(lesion=lesion, engines={} if isinstance(model, Checkpoint) else {f"{info.modality}_classifier": model})
        setattr(roles, f"{info.modality}_classifier", model)
        evidence = screen_scan(scan, roles, explain=False)
    except CovidlensError as exc:
        return Prediction(str(path), "", float("nan"), threshold, error=str(exc))
    v = evidence.verdict
    study = {"slices": evidence.measures.get("slices"), "lesions": v.lesions, "severity": v.severity,
             "decision": v.decision, "rule": v.rule, "missing": evidence.missing}
    if v.covid19_score is None:
        return Prediction(str(path), "", float("nan"), threshold, error="; ".join(evidence.missing) or
                          "the classifier gave no score for this volume.", modality=evidence.modality, study=study)
    score = float(v.covid19_score)
    probs = np.array([score if i == info.positive_index else 1.0 - score for i in range(len(info.classes))])
    return Prediction(str(path), decide(probs, info, threshold), score, threshold, dict(zip(info.classes, map(float, probs))),
                      modality=evidence.modality, study=study)


def _mixed_precision(net, device):
    """float16 autocast for a PyTorch model on a GPU (probabilities are computed in float32 after
    it); nothing on the CPU, where float32 is as fast, or for ONNX Runtime."""
    if isinstance(net, torch.nn.Module) and str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def predict(
    checkpoint: Checkpoint | OnnxModel | str | Path,
    paths: Iterable[str | Path],
    threshold: float | None = None,
    batch_size: int = 16,
    tta: bool | None = None,
    *,
    backend: str | None = None,
    num_workers: int | None = None,
    channels_last: bool = False,
    check_modality: bool = True,
    lesion_checkpoint: Checkpoint | str | Path | None = None,
) -> list[Prediction]:
    """Every prediction of :func:`iter_predictions` as a list."""
    return list(iter_predictions(checkpoint, paths, threshold, batch_size, tta, backend=backend,
                                 num_workers=num_workers, channels_last=channels_last,
                                 check_modality=check_modality, lesion_checkpoint=lesion_checkpoint))


def class_probabilities(ckpt: Checkpoint, samples, batch_size: int = 32, tta: bool = False) -> np.ndarray:
    """N x K class probabilities for a list of :class:`~covidlens.data.datasets.Sample` (evaluation)."""
    out = [image_probabilities(ckpt, [s.image() for s in samples[start : start + batch_size]], batch_size, tta)
           for start in range(0, len(samples), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(ckpt.info.classes)))


def image_probabilities(ckpt: Checkpoint, images, batch_size: int = 32, tta: bool = False, engine=None) -> np.ndarray:
    """N x K class probabilities for grey PIL images already in memory (through the model's own preset);
    ``engine`` (an :class:`~covidlens.runtime.OnnxModel` of the same checkpoint) runs them instead of PyTorch."""
    transform = eval_transform(ckpt.info)
    device = "cpu" if engine is not None else next(ckpt.model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([transform(image) for image in images[start : start + batch_size]])
        out.append(batch_probabilities(engine or ckpt.model, batch.to(device), ckpt.info, tta).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(ckpt.info.classes)))


def predict_arrays(ckpt: Checkpoint, samples, batch_size: int = 32, tta: bool = False) -> np.ndarray:
    """P(positive class) per sample, for models that name a positive class."""
    if ckpt.info.positive_index is None:
        raise CovidlensError("this model names no positive class; use class_probabilities for its K probabilities.")
    return class_probabilities(ckpt, samples, batch_size, tta)[:, ckpt.info.positive_index]
