"""The body in an 8-bit CT slice, and the slice cut down to it: what a classifier should look at.

COVID-CT's two classes come from different sources (paper figures against other collections), and
those sources differ outside the patient: white or black figure margins, panel letters, scale text,
the scanner table, the field-of-view disc, the size and aspect of the crop. :func:`crop_to_body`
keeps the patient and drops the rest, so that a model trained on it cannot use those cues and a
slice from another source (a DICOM slice, a lung crop) reaches it in the same form.

:func:`body_mask` works on the grey levels alone, because figures carry no Hounsfield units:

1. Background is what surrounds the body, reached from the image edge. Dark background (air, the
   scanner's padding) is flooded from the edge through pixels no brighter than the edge's own dark
   level plus :data:`DARK_MARGIN` grey levels (and never above the slice's Otsu threshold, which
   splits air and lung from soft tissue). The flood is repeated from the new boundary, a few times,
   so that a field-of-view disc (padding black, air inside it dark grey) is peeled layer by layer.
2. A near-white figure margin (grey >= :data:`WHITE`), when such pixels make at least half of the
   image edge, is removed first, and the dark flood of step 1 then starts from the margin's inner
   boundary (a black CT frame printed on white paper). The margin is taken as the rows and columns
   at each side that are nearly all white; failing that, as the white pixels flooded from the edge.
   A body that is itself saturated white and touches a flooded margin is partly flooded with it:
   when less than a quarter of the image is left, the next way is tried, and last of all step 1 alone.
3. The body is the largest connected piece of what is not background, replaced by its filled convex
   hull, so that a lung whose dark field reaches the background through a gap stays in.
4. An image whose dark background touches under :data:`MIN_EDGE_CONTACT` of its edge, and that has
   no white margin, is taken as already cut to the chest (MedSeg's lung crops): the whole image is
   the body. So is an image where no piece of at least :data:`MIN_BODY` of the image is found.

Measured on the real sets (``benchmarks/ct_source_cues.py`` writes overlays of the masks): see
docs/results.md, section 9. Known limits: a body that touches the edge all round is not found
(whole image kept); arrows and text drawn inside the body stay.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from covidlens.errors import CovidlensError
from covidlens.data.morphology import filled_convex_hull, otsu_threshold

#: Grey levels above the edge's dark level that still count as background air.
DARK_MARGIN = 25
#: Grey level from which a pixel counts as a white figure margin.
WHITE = 250
#: Below this share of the image edge touched by dark background, the image is taken as already
#: cut to the chest (MedSeg's lung crops touch it at 0-5 %, COVID-CT figures mostly at 20-100 %).
MIN_EDGE_CONTACT = 0.10
#: The smallest body kept, as a fraction of the image.
MIN_BODY = 0.10
#: Flood passes from the growing background's boundary (field-of-view discs need two).
PASSES = 3
#: Margin kept around the body's bounding box, as a fraction of the box's side.
CROP_MARGIN = 0.02


def _edge(mask: np.ndarray) -> np.ndarray:
    out = np.zeros_like(mask)
    out[0], out[-1], out[:, 0], out[:, -1] = mask[0], mask[-1], mask[:, 0], mask[:, -1]
    return out


def _edge_values(array: np.ndarray) -> np.ndarray:
    return np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, count = ndi.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == np.argmax(sizes)


def _flood_dark(grey: np.ndarray, otsu: float, background: np.ndarray) -> np.ndarray:
    """Grow ``background`` through dark pixels from its boundary (the image edge when it is empty),
    pass after pass (step 1); each pass floods through pixels no brighter than the dark level where it starts."""
    seeds = _edge(np.ones(grey.shape, bool)) if not background.any() else ndi.binary_dilation(background) & ~background
    for _ in range(PASSES):
        levels = grey[seeds]
        dark_levels = levels[levels <= otsu]
        if levels.size == 0 or dark_levels.size < 0.5 * levels.size:
            break
        dark = grey <= min(otsu, float(np.median(dark_levels)) + DARK_MARGIN)
        grown = background | ndi.binary_propagation(seeds & dark, mask=dark | background)
        done = grown.sum() - background.sum() < 0.01 * grey.size
        background = grown
        if done:
            break
        seeds = ndi.binary_dilation(background) & ~background
    return background


def _white_frame(light: np.ndarray, share: float = 0.75) -> np.ndarray:
    """The rows and columns at each side of the image that are at least ``share`` white (a figure's
    margin, where a caption or a panel letter may break a row's whiteness a little)."""
    frame = np.zeros(light.shape, bool)
    for axis in (0, 1):
        white = light.mean(axis=1 - axis) >= share
        lines = len(white)
        first = int(np.argmin(white)) if not white.all() else lines
        last = lines - int(np.argmin(white[::-1])) if not white.all() else 0
        index = [slice(None), slice(None)]
        index[axis] = slice(0, first)
        frame[tuple(index)] = True
        index[axis] = slice(last, lines)
        frame[tuple(index)] = True
    return frame


def body_mask(grey) -> np.ndarray:
    """Boolean mask of the body in an 8-bit grey CT slice (H, W); the module docstring gives the method."""
    array = np.asarray(grey)
    if array.ndim != 2 or min(array.shape) < 8:
        raise CovidlensError(f"body_mask needs one 2-D grey slice, not an array of shape {array.shape}.")
    array = np.clip(array, 0, 255).astype(np.uint8)
    everything = np.ones(array.shape, bool)
    otsu = otsu_threshold(array)
    nothing = np.zeros(array.shape, bool)
    candidates = [_flood_dark(array, otsu, nothing)]
    if (_edge_values(array) >= WHITE).mean() >= 0.5:
        light = array >= WHITE
        # The figure's margin first, then the dark background inside it (a black CT frame on white
        # paper): the margin as whole white rows and columns at the sides, which cannot leak into a
        # saturated body, and failing that as white flooded from the edge.
        margins = [_white_frame(light), ndi.binary_propagation(_edge(light), mask=light)]
        candidates[:0] = [_flood_dark(array, otsu, m) for m in margins if m.any()]
    elif _edge_values(candidates[0]).mean() < MIN_EDGE_CONTACT:
        return everything
    for background in candidates:
        body = _largest(~background)
        # A saturated body that touches the margin is partly flooded with it: accept what is left only
        # while it is a sizeable piece, else fall back to the dark background alone.
        if body.sum() >= 0.25 * array.size or (background is candidates[-1] and body.sum() >= MIN_BODY * array.size):
            return filled_convex_hull(body)
    return everything


def body_box(body: np.ndarray, margin: float = CROP_MARGIN) -> tuple[slice, slice]:
    """(rows, cols) of the body's bounding box grown by ``margin`` of its size, clipped to the image."""
    rows, cols = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    if rows.size == 0:
        return slice(0, body.shape[0]), slice(0, body.shape[1])
    pad_r = int(round(margin * (rows[-1] - rows[0] + 1)))
    pad_c = int(round(margin * (cols[-1] - cols[0] + 1)))
    return (slice(max(rows[0] - pad_r, 0), min(rows[-1] + 1 + pad_r, body.shape[0])),
            slice(max(cols[0] - pad_c, 0), min(cols[-1] + 1 + pad_c, body.shape[1])))


def crop_to_body(image: Image.Image) -> Image.Image:
    """The grey slice with everything outside the body set to black and cut to the body's box."""
    return body_crop_and_box(image)[0]


def body_crop_and_box(image: Image.Image) -> tuple[Image.Image, tuple[slice, slice]]:
    """:func:`crop_to_body` and the (rows, cols) box it was cut from, to map results back onto the slice."""
    grey = np.asarray(image.convert("L") if image.mode != "L" else image)
    return cut_out(grey, body_mask(grey))


def cut_out(grey: np.ndarray, body: np.ndarray) -> tuple[Image.Image, tuple[slice, slice]]:
    """The grey slice blacked out around ``body`` and cut to its box, and the (rows, cols) box."""
    rows, cols = body_box(body)
    return Image.fromarray(np.where(body, grey, 0).astype(np.uint8)[rows, cols]), (rows, cols)


class BodyCrop:
    """:func:`crop_to_body` as a transform step on grey PIL images (the ``region: body`` preprocessing)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return crop_to_body(image)

    def __repr__(self) -> str:
        return "BodyCrop()"
