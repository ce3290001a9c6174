"""Are the probabilities right? Reliability, expected calibration error, Brier score, and temperature scaling.

A classifier's P(COVID) of 0.8 should come true about 80 % of the time. This module measures how far a
model is from that and fixes the simplest part of it:

* :func:`reliability` bins the predicted probability of the positive class (or, for a K-class model
  without one, the most probable class: "top-label" calibration) into equal-width bins and compares
  each bin's mean prediction with how often it came true; :func:`ece` is the image-weighted mean gap
  over the bins, :func:`brier` the mean squared error of the probabilities (all K of them);
* :func:`fit_temperature` finds the one temperature T that, dividing every logit, minimises the
  negative log-likelihood on the validation split (Guo et al., ICML 2017). It changes no ranking (AUC,
  argmax and any threshold moved with it are unchanged) and only how sure the model says it is;
* :func:`calibrate_checkpoint` fits T on a checkpoint's validation split and writes it into its
  ``model.json`` with the thresholds moved onto the calibrated scale, so that predict, screen, the web
  service and exported ONNX models (whose sidecar is the same JSON) all give the calibrated probability.

Calibration is judged on test and outside sets, never on the validation split it was fitted on.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from covidlens.checkpoint import META_NAME, TEMPERATURE_RANGE, Checkpoint, ModelInfo, load_checkpoint, validate_info
from covidlens.errors import CovidlensError

#: Equal-width bins of the reliability diagram and the ECE.
BINS = 15
#: Fewest validation images a temperature is fitted on at the end of training (fewer: left at 1.0).
MIN_FIT_IMAGES = 20
CALIBRATION_METRICS = ("ece", "brier")


def confidences(y: np.ndarray, probs: np.ndarray, positive: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The probability judged and whether it came true: P(positive class) against "is positive", or,
    for a model without a positive class, the top probability against "top class is right"."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=float)
    if positive is not None:
        return probs[:, positive], (y == positive).astype(float)
    top = probs.argmax(axis=1)
    return probs[np.arange(len(y)), top], (top == y).astype(float)


def reliability(p: np.ndarray, hit: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per equal-width bin: its edges, image count, mean predicted probability and observed frequency."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": n,
                     "predicted": float(p[inside].mean()) if n else None,
                     "observed": float(hit[inside].mean()) if n else None})
    return rows


def ece(p: np.ndarray, hit: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: sum over bins of (bin share of images) x |observed - predicted|."""
    if len(p) == 0:
        return float("nan")
    return float(sum(r["n"] * abs(r["observed"] - r["predicted"]) for r in reliability(p, hit, bins) if r["n"]) / len(p))


def brier(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean over images of the squared error of all K class probabilities against the one-hot truth
    (for two classes this is twice the usual binary Brier score of P(positive))."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=float)
    if len(y) == 0:
        return float("nan")
    onehot = np.eye(probs.shape[1])[y]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def calibration_metrics(y, probs, positive: int | None, bins: int = BINS) -> dict[str, float]:
    p, hit = confidences(y, probs, positive)
    return {"ece": ece(p, hit, bins), "brier": brier(y, probs)}


def calibration_ci(y, probs, positive: int | None, groups=None, n_boot: int = 2000, seed: int = 0,
                   bins: int = BINS) -> dict[str, tuple[float, float]]:
    """95 % percentile-bootstrap intervals of ECE and Brier, resampling groups (patients) when given."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=float)
    rng = np.random.default_rng(seed)
    if groups is None:
        units = [np.array([i]) for i in range(len(y))]
    else:
        members: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        units = [np.array(v) for v in members.values()]
    draws = {k: [] for k in CALIBRATION_METRICS}
    for _ in range(n_boot):
        idx = np.concatenate([units[j] for j in rng.integers(0, len(units), len(units))])
        for k, v in calibration_metrics(y[idx], probs[idx], positive, bins).items():
            draws[k].append(v)
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in draws.items()}


# --- temperature scaling ---------------------------------------------------------------------------


@torch.inference_mode()
def view_logits(ckpt: Checkpoint, samples, tta: bool = False, batch_size: int = 32) -> np.ndarray:
    """N x V x L raw logits (V = 2 with the mirrored view when ``tta``), before any temperature."""
    from covidlens.inference import eval_transform

    transform = eval_transform(ckpt.info)
    device = next(ckpt.model.parameters()).device
    out = []
    for start in range(0, len(samples), batch_size):
        batch = torch.stack([transform(s.image()) for s in samples[start : start + batch_size]]).to(device)
        views = [ckpt.model(batch).float()] + ([ckpt.model(torch.flip(batch, dims=[3])).float()] if tta else [])
        out.append(torch.stack(views, dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, ckpt.info.num_outputs))


def probabilities_at(logits: np.ndarray, info: ModelInfo, temperature: float) -> np.ndarray:
    """N x K class probabilities from N x V x L logits at ``temperature`` (mean over the views)."""
    from covidlens.inference import logits_to_probabilities

    n, v, width = logits.shape
    flat = torch.from_numpy(np.ascontiguousarray(logits.reshape(n * v, width)))
    return logits_to_probabilities(flat, info, temperature).numpy().reshape(n, v, -1).mean(axis=1)


def negative_log_likelihood(logits: np.ndarray, y: np.ndarray, info: ModelInfo, temperature: float) -> float:
    probs = probabilities_at(logits, info, temperature)
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray, info: ModelInfo) -> float:
    """The temperature in :data:`~covidlens.checkpoint.TEMPERATURE_RANGE` that minimises the mean
    negative log-likelihood of the true classes (a bounded 1-D search over log T)."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y)
    if len(y) < 2 or len(np.unique(y)) < 2:
        raise CovidlensError("a temperature is fitted on a validation split holding at least two classes.")
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    found = minimize_scalar(lambda s: negative_log_likelihood(logits, y, info, math.exp(s)),
                            bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(math.exp(found.x))


def fit_validation_temperature(ckpt: Checkpoint, val, dataset: str) -> float | None:
    """At the end of training: fit the temperature on the validation samples (labels already in the
    model's class order) and set it in ``ckpt.info``; None, leaving 1.0, when the split is too small or
    holds one class. Thresholds chosen afterwards are on the calibrated scale."""
    y = np.array([s.label for s in val])
    if len(y) < MIN_FIT_IMAGES or len(np.unique(y)) < 2:
        ckpt.info.calibration = f"not calibrated: the validation split has {len(y)} images of {len(np.unique(y))} class(es)"
        return None
    ckpt.info.temperature = fit_temperature(view_logits(ckpt, val, tta=ckpt.info.tta), y, ckpt.info)
    ckpt.info.calibration = f"temperature fitted on the val split of {Path(dataset).name} ({len(y)} images)"
    return ckpt.info.temperature


def move_threshold(threshold: float | None, old: float, new: float) -> float | None:
    """The threshold on P(positive) that makes the same decisions at temperature ``new`` as ``threshold``
    did at ``old`` (one-logit models: the logit scales by old / new). Thresholds of 0.5 stay 0.5."""
    if threshold is None or threshold <= 0.0 or threshold >= 1.0:
        return threshold
    z = math.log(threshold / (1.0 - threshold)) * old / new
    return float(1.0 / (1.0 + math.exp(-z)))


def calibrate_checkpoint(path: str | Path, dataset: str | None = None, root: str | None = None,
                         split: str = "val", write: bool = True) -> dict:
    """Fit the temperature on ``split`` (the validation split) of the checkpoint's own data set and, with
    ``write``, store it in its ``model.json``. Returns the fit: temperature, NLL, ECE and Brier before and
    after on that split (said to be the fitting split: not a judgement of the calibration)."""
    from covidlens.data.datasets import load_dataset
    from covidlens.evaluation.evaluate import class_map

    ckpt = load_checkpoint(path)
    info = ckpt.info
    if info.task != "classification":
        raise CovidlensError(f"{ckpt.path} is a {info.task} model; temperature scaling is for classifiers.")
    dataset = dataset or info.dataset
    if not dataset:
        raise CovidlensError(f"{ckpt.path} records no data set; name the one it was trained on with --data.")
    table = load_dataset(dataset, root)
    mapping = class_map(info, table)
    samples = [s for s in table.split(split) if s.label >= 0]
    y = np.array([mapping[s.label] for s in samples])
    logits = view_logits(ckpt, samples, tta=info.tta)
    old = info.temperature
    temperature = fit_temperature(logits, y, info)
    positive = info.positive_index
    before, after = probabilities_at(logits, info, old), probabilities_at(logits, info, temperature)
    fit = {
        "checkpoint": str(ckpt.path), "dataset": dataset, "split": split, "n_images": int(len(y)),
        "temperature_before": old, "temperature": temperature,
        "nll_before": negative_log_likelihood(logits, y, info, old),
        "nll_after": negative_log_likelihood(logits, y, info, temperature),
        "before": calibration_metrics(y, before, positive), "after": calibration_metrics(y, after, positive),
    }
    if write:
        scale = (lambda t: move_threshold(t, old, temperature)) if info.binary else (lambda t: t)
        new = replace(info, temperature=temperature, threshold=scale(info.threshold),
                      sensitivity_threshold=scale(info.sensitivity_threshold),
                      calibration=f"temperature fitted on the {split} split of {Path(dataset).name} ({len(y)} images)")
        validate_info(new, "the calibrated model description")
        (ckpt.path / META_NAME).write_text(json.dumps(asdict(new), indent=2) + "\n")
    return fit
