"""Lesion evidence for one CT slice: did the lesion model find lesions, and how much of the body do they cover?

A classifier's P(COVID) says nothing of why. The lesion model (a MedSeg segmenter, ``covidlens segment
train``) does: it marks ground-glass and consolidation. :func:`lesion_evidence` runs it on the same
thing a ``region: body`` classifier sees (the body cut out of the slice, :mod:`covidlens.data.body`;
MedSeg's own slices are lung crops, which that step keeps whole) and reports the lesion's share of the
body, its pixels, its area in mm² where the slice has a pixel spacing, and the highest lesion
probability. ``covidlens predict --lesion-checkpoint`` prints it next to P(COVID); the CT evidence
benchmark turns it into a lesion-burden classifier.

A slice "has lesions" when they cover at least :data:`MIN_LESION_SHARE` of the body. That share was
set before scoring any test image (half a percent: a few vessels or a partial-volume rim at the lung
edge stay below it); where it is in the benchmark's tables it is reported, not tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from covidlens.checkpoint import Checkpoint, load_checkpoint
from covidlens.data.body import body_mask, cut_out
from covidlens.errors import CovidlensError

#: Lesion share of the body from which a slice is said to have lesions.
MIN_LESION_SHARE = 0.005


@dataclass
class LesionEvidence:
    #: Share of the body's pixels the lesion model calls lesion (any lesion class).
    lesion_share: float
    lesion_pixels: int
    #: Lesion area in mm² when the slice has a pixel spacing, else None.
    lesion_mm2: float | None
    #: Highest lesion probability anywhere in the body.
    peak: float
    #: Mean lesion probability of the 1 % most lesion-like body pixels (less noisy than the peak).
    top_mean: float

    @property
    def found(self) -> bool:
        return self.lesion_share >= MIN_LESION_SHARE


def lesion_model(checkpoint: Checkpoint | str | Path) -> Checkpoint:
    """A CT lesion segmentation checkpoint; anything else is refused with one sentence."""
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if ckpt.info.task != "segmentation" or ckpt.info.modality != "ct" or len(ckpt.info.classes) < 2:
        raise CovidlensError(
            f"{ckpt.path} is a {ckpt.info.modality.upper()} {ckpt.info.task} model of {', '.join(ckpt.info.classes)}; "
            "lesion evidence needs a CT lesion segmentation checkpoint (covidlens segment train on medseg-infnet)."
        )
    return ckpt


def lesion_maps(checkpoint: Checkpoint | str | Path, images: list[Image.Image], batch_size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each grey slice, (lesion probability H x W, body mask H x W) at the slice's own size."""
    from covidlens.segmentation.predict import segment_batch

    ckpt = lesion_model(checkpoint)
    out = []
    for start in range(0, len(images), batch_size):
        greys = [np.asarray(image if image.mode == "L" else image.convert("L")) for image in images[start : start + batch_size]]
        bodies = [body_mask(grey) for grey in greys]
        crops = [cut_out(grey, body) for grey, body in zip(greys, bodies)]
        for grey, body, (_, box), probs in zip(greys, bodies, crops, segment_batch(ckpt, [c for c, _ in crops])):
            lesion = np.zeros(grey.shape, np.float32)
            lesion[box] = 1.0 - probs[0]  # every class but background is lesion
            lesion[~body] = 0.0
            out.append((lesion, body))
    return out


def lesion_evidence(
    checkpoint: Checkpoint | str | Path, images: list[Image.Image], spacings: list | None = None, batch_size: int = 8
) -> list[LesionEvidence]:
    """:class:`LesionEvidence` for each grey slice; ``spacings`` gives each slice's (row, col) mm or None."""
    spacings = spacings or [None] * len(images)
    if len(spacings) != len(images):
        raise CovidlensError(f"{len(spacings)} spacings for {len(images)} slices; give one per slice or none.")
    out = []
    for (lesion, body), spacing in zip(lesion_maps(checkpoint, images, batch_size), spacings):
        called = lesion >= 0.5
        inside = lesion[body]
        top = np.sort(inside)[-max(1, inside.size // 100):] if inside.size else np.zeros(1)
        pixels = int(called.sum())
        area = float(pixels * spacing[0] * spacing[1]) if spacing else None
        out.append(LesionEvidence(pixels / max(int(body.sum()), 1), pixels, area, float(inside.max(initial=0.0)),
                                  float(top.mean())))
    return out
