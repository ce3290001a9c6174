"""The one place that draws on a grey slice: a mask's classes tinted in their colours, a mask's outline,
a heat map in jet colours, and the PNG they are sent or saved as. Segmentation panels, quantify's
overlays, explanation panels and the web service all draw through here, so they look alike.

Every function takes the 8-bit grey slice as an H x W array and returns H x W x 3 ``uint8`` RGB.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

#: RGB of mask classes 1, 2, ... (background is not painted): infection / ground-glass red,
#: consolidation blue, then green and magenta for further classes.
CLASS_COLOURS = ((230, 40, 40), (40, 120, 255), (40, 200, 80), (220, 60, 220))
#: Weight of a class colour over the grey slice.
MASK_ALPHA = 0.45
#: Weight of the heat map's colour over the grey slice.
HEAT_ALPHA = 0.4


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(grey, dtype=np.float32)[..., None], 3, axis=2)


def mask_overlay(grey: np.ndarray, mask: np.ndarray, alpha: float = MASK_ALPHA,
                 colours: tuple[tuple[int, int, int], ...] = CLASS_COLOURS) -> np.ndarray:
    """The grey slice with each foreground class k of ``mask`` (1, 2, ...) tinted in ``colours[k - 1]``."""
    rgb = _rgb(grey)
    for k, colour in enumerate(colours, start=1):
        where = mask == k
        rgb[where] = (1 - alpha) * rgb[where] + alpha * np.asarray(colour, dtype=np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of a boolean mask that touch its outside: a one-pixel line around each piece."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndi.binary_erosion(mask)


def draw_outline(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """``rgb`` with the outline of ``mask`` drawn in ``colour`` (in place; also returned)."""
    rgb[outline(mask)] = colour
    return rgb


def heat_overlay(grey: np.ndarray, heat: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """The grey slice under a heat map of its size (values 0..1) in jet colours, red strongest."""
    from matplotlib import colormaps

    colours = colormaps["jet"](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    return np.clip((1 - alpha) * _rgb(grey) + alpha * colours, 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB (or grey) ``uint8`` array as PNG file content."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_base64(rgb: np.ndarray) -> str:
    """:func:`png_bytes` as base64 text, as the web service's JSON carries images."""
    return base64.b64encode(png_bytes(rgb)).decode("ascii")
