"""Running a trained lesion segmenter: probability maps, mask files, overlays and their HTML page.

``segment_image`` is the one path from pixels to a K x H x W probability map; evaluation, ``covidlens
segment predict`` and the Python API all go through it, so they see the same preprocessing as
training (the evaluation preset: whole image resized to the checkpoint's input size, normalised).
"""

from covidlens.segmentation.predict import (
    SegmentationResult,
    apply_lung_mask,
    segment_batch,
    segment_files,
    segment_image,
)
from covidlens.segmentation.render import render_panel, write_gallery

__all__ = [
    "SegmentationResult",
    "apply_lung_mask",
    "render_panel",
    "segment_batch",
    "segment_files",
    "segment_image",
    "write_gallery",
]
