"""Lungs of 8-bit CT slices (PNG/JPEG, figures, MedSeg's crops) from the learned CT lung model.

The model is a segmentation checkpoint of ``background, lung`` trained by ``configs/ct_lungs_unet.yaml``
on the HU lung rule's masks of real HU scans shown as 8-bit slices
(:mod:`covidlens.segmentation.ct_lung_labels`). For CT in Hounsfield units the HU rule
(:func:`covidlens.measure.lungs.segment_lungs_hu`) is still the one to use; this model is for the
slices that carry no HU. Measured by ``benchmarks/ct_lung_model.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidlens.checkpoint import Checkpoint
from covidlens.segmentation.lungs import clean_mask, load_lung_model

#: Lung pieces smaller than this fraction of the slice are dropped (apical tips are about 0.5 %).
CT_MIN_COMPONENT = 0.002


def ct_lung_masks(checkpoint: Checkpoint | str | Path, images: list, batch_size: int = 16) -> list[np.ndarray]:
    """Boolean H x W lung mask of each 8-bit CT slice (grey PIL image, 2-D uint8 array or file), at
    its own size: the most probable class, pieces of at least :data:`CT_MIN_COMPONENT` of the slice,
    holes filled. A checkpoint that does not segment ``background, lung`` is refused."""
    from covidlens.segmentation.predict import segment_batch

    ckpt = load_lung_model(checkpoint)
    out = []
    for start in range(0, len(images), batch_size):
        for probs in segment_batch(ckpt, images[start : start + batch_size]):
            out.append(clean_mask(probs.argmax(0) == 1, CT_MIN_COMPONENT))
    return out


def ct_lung_mask(checkpoint: Checkpoint | str | Path, image) -> np.ndarray:
    """:func:`ct_lung_masks` of one slice."""
    return ct_lung_masks(checkpoint, [image])[0]
