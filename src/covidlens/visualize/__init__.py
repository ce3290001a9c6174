"""Pictures laid over a grey slice: lesion masks tinted, outlines drawn, heat maps in jet colours, as PNG."""

from covidlens.visualize.overlay import (
    CLASS_COLOURS,
    HEAT_ALPHA,
    MASK_ALPHA,
    draw_outline,
    heat_overlay,
    mask_overlay,
    outline,
    png_base64,
    png_bytes,
)

__all__ = [
    "CLASS_COLOURS",
    "HEAT_ALPHA",
    "MASK_ALPHA",
    "draw_outline",
    "heat_overlay",
    "mask_overlay",
    "outline",
    "png_base64",
    "png_bytes",
]
