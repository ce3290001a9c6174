"""Segmentation results a reader can check by eye: the slice, the truth and the prediction side by side
(tinted by :func:`covidlens.visualize.mask_overlay`), and one HTML page that holds them all."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from covidlens.visualize import CLASS_COLOURS, mask_overlay

_HEADER = 18


def render_panel(
    grey: np.ndarray, truth: np.ndarray | None, pred: np.ndarray, classes: list[str], path: Path, title: str = ""
) -> Path:
    """PNG of image | truth (when known) | prediction, each captioned, with the class colours named."""
    grey = np.asarray(grey, dtype=np.uint8)
    panels = [("image", np.repeat(grey[..., None], 3, axis=2))]
    if truth is not None:
        panels.append(("truth", mask_overlay(grey, truth)))
    panels.append(("prediction", mask_overlay(grey, pred)))
    h, w = grey.shape
    sheet = Image.new("RGB", (w * len(panels), h + 2 * _HEADER), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (name, rgb) in enumerate(panels):
        sheet.paste(Image.fromarray(rgb), (i * w, _HEADER))
        draw.text((i * w + 4, 3), name, fill=(0, 0, 0))
    legend = "  ".join(f"{c}: rgb{CLASS_COLOURS[k - 1]}" for k, c in enumerate(classes) if k > 0)
    draw.text((4, h + _HEADER + 3), f"{title}  {legend}".strip(), fill=(0, 0, 0))
    sheet.save(path)
    return path


def write_gallery(entries: list[tuple[str, str, str]], path: Path, title: str, note: str = "") -> Path:
    """``entries`` are (name shown, PNG path relative to the page, caption)."""
    rows = "".join(
        f"<figure><img src='{html.escape(png)}' loading='lazy' alt='{html.escape(name)}'>"
        f"<figcaption>{html.escape(name)}: {html.escape(caption)}</figcaption></figure>"
        for name, png, caption in entries
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "figure{margin:0 0 2em 0}img{max-width:100%}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(note or 'Red: lesion class 1, blue: class 2. A research aid, not a diagnosis.')}</p>"
        + rows + "</body></html>"
    )
    path.write_text(page)
    return path
