"""Chest X-ray lungs: the stage-1 mask of segment-then-classify (seed 002), and what stage 2 sees.

A lung checkpoint is a segmentation checkpoint whose classes are ``background, lung`` (trained on the
Shenzhen and Montgomery manual masks by ``configs/cxr_lungs_unet.yaml``). :func:`lung_masks` turns its
output into a clean boolean mask: the most probable class, then only the connected components of at
least 2 % of the image (a radiograph has two lungs; specks on the shoulders or the bowel gas are not
lungs), holes filled (the heart border and catheters cut into the lung fields). :func:`apply_lungs`
makes the two inputs of seed 002's Table 1 from it: ``masked`` (pixels outside the lungs set to black,
same size) and ``cropped`` (the lungs' bounding box with a margin, the rest of the image dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from covidlens.checkpoint import Checkpoint, load_checkpoint
from covidlens.errors import CovidlensError

LUNG_CLASSES = ["background", "lung"]
#: What stage 2 can be given: the image as it is, the lungs on black, or the lungs' bounding box.
LUNG_INPUTS = ("raw", "masked", "cropped")
#: Components smaller than this fraction of the image are dropped from a lung mask.
MIN_COMPONENT = 0.02
#: Plausible lung area fraction of a frontal CXR (measured on the 704 manual masks: 0.13-0.47);
#: outside it the mask is flagged for a human look.
PLAUSIBLE_FRACTION = (0.08, 0.55)


def load_lung_model(checkpoint: Checkpoint | str | Path) -> Checkpoint:
    """A segmentation checkpoint of ``background, lung``; anything else is refused with a sentence."""
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if ckpt.info.task != "segmentation" or list(ckpt.info.classes) != LUNG_CLASSES:
        raise CovidlensError(
            f"{ckpt.path} segments {', '.join(ckpt.info.classes)} ({ckpt.info.task}); a lung model segments "
            "background, lung (train one with configs/cxr_lungs_unet.yaml)."
        )
    return ckpt


def clean_mask(lung: np.ndarray, min_component: float = MIN_COMPONENT) -> np.ndarray:
    """Boolean mask: components of at least ``min_component`` of the image, holes filled."""
    lung = np.asarray(lung, dtype=bool)
    labels, n = ndimage.label(lung)
    if n:
        sizes = ndimage.sum(lung, labels, index=np.arange(1, n + 1))
        keep = np.flatnonzero(sizes >= min_component * lung.size) + 1
        lung = np.isin(labels, keep)
    return ndimage.binary_fill_holes(lung)


def lung_masks(checkpoint: Checkpoint | str | Path, images: list, batch_size: int = 16) -> list[np.ndarray]:
    """Boolean H x W lung mask of each image (grey PIL images, 2-D uint8 arrays or files) at its own size."""
    from covidlens.segmentation.predict import segment_batch

    ckpt = load_lung_model(checkpoint)
    out = []
    for start in range(0, len(images), batch_size):
        for probs in segment_batch(ckpt, images[start : start + batch_size]):
            out.append(clean_mask(probs.argmax(0) == 1))
    return out


def bounding_box(lung: np.ndarray, margin: float = 0.05) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the mask's bounding box grown by ``margin`` of the image side,
    clipped to the image; the whole image when the mask is empty."""
    h, w = lung.shape
    rows, cols = np.flatnonzero(lung.any(1)), np.flatnonzero(lung.any(0))
    if not len(rows):
        return 0, h, 0, w
    dy, dx = int(round(margin * h)), int(round(margin * w))
    return max(0, rows[0] - dy), min(h, rows[-1] + 1 + dy), max(0, cols[0] - dx), min(w, cols[-1] + 1 + dx)


def apply_lungs(grey: np.ndarray, lung: np.ndarray, mode: str) -> np.ndarray:
    """The stage-2 input of ``mode`` (:data:`LUNG_INPUTS`) from an 8-bit grey image and its lung mask.

    ``masked`` keeps the image size and blacks out everything outside the lungs; ``cropped`` keeps
    the pixels (unmasked) inside the lungs' bounding box. An empty mask is refused: stage 2 would see
    a black image (or the whole image) and say nothing about the lungs.
    """
    grey = np.asarray(grey)
    lung = np.asarray(lung, dtype=bool)
    if mode not in LUNG_INPUTS:
        raise CovidlensError(f"lung input must be one of {', '.join(LUNG_INPUTS)}, got {mode!r}.")
    if mode == "raw":
        return grey
    if lung.shape != grey.shape[:2]:
        raise CovidlensError(f"the lung mask is {lung.shape} but the image is {grey.shape[:2]}; they must match.")
    if not lung.any():
        raise CovidlensError("the lung mask is empty: no lungs were found in this image.")
    if mode == "masked":
        return np.where(lung if grey.ndim == 2 else lung[..., None], grey, 0).astype(grey.dtype)
    top, bottom, left, right = bounding_box(lung)
    return grey[top:bottom, left:right].copy()


@dataclass
class LungResult:
    path: str
    #: Fraction of the image's pixels inside the lung mask.
    lung_fraction: float = float("nan")
    #: False when the fraction is outside :data:`PLAUSIBLE_FRACTION` (look at the overlay).
    plausible: bool = False
    mask_png: str = ""
    overlay_png: str = ""
    error: str = ""
    #: True when the modality check refused the image (``error`` says why); False for an unreadable file.
    refused: bool = False


def lungs_files(checkpoint: Checkpoint | str | Path, paths, out_dir: str | Path, batch_size: int = 8,
                check_modality: bool = True) -> list[LungResult]:
    """``covidlens lungs``: for every image under ``paths``, ``masks/<i>_<stem>.png`` (0/255, the image's
    size), ``overlays/<i>_<stem>.png`` (image beside the lungs in colour), a row of ``lungs.csv`` and
    one ``index.html`` with every overlay. Unreadable files get a row with the reason, and so do images
    the modality check (:mod:`covidlens.modality`) does not find to be chest X-rays, unless ``check_modality`` is False."""
    import csv

    from covidlens.data.intensity import display_image
    from covidlens.data.io import list_images, read_scan
    from covidlens.modality import check_scan, mismatch_message
    from covidlens.segmentation.render import render_panel, write_gallery

    ckpt = load_lung_model(checkpoint)
    files: list[Path] = []
    for path in paths:
        files.extend(list_images(path))
    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    results: list[LungResult] = []
    pending: list[tuple[int, Path, Image.Image]] = []

    def flush():
        for (index, path, grey), lung in zip(pending, lung_masks(ckpt, [g for _, _, g in pending])):
            stem = f"{index:04d}_{path.stem}"
            Image.fromarray(lung.astype(np.uint8) * 255).save(out / "masks" / f"{stem}.png")
            fraction = float(lung.mean())
            title = f"{path.name}  lungs {fraction:.1%} of the image"
            render_panel(np.asarray(grey), None, lung.astype(np.uint8), LUNG_CLASSES, out / "overlays" / f"{stem}.png", title=title)
            plausible = PLAUSIBLE_FRACTION[0] <= fraction <= PLAUSIBLE_FRACTION[1]
            results.append(LungResult(str(path), fraction, plausible, f"masks/{stem}.png", f"overlays/{stem}.png"))
        pending.clear()

    for index, path in enumerate(files):
        try:
            scan = read_scan(path)
            grey = display_image(scan)
            refusal = mismatch_message(check_scan(scan, grey), "cxr") if check_modality else None
            if refusal:
                if pending:
                    flush()
                results.append(LungResult(str(path), refused=True, error=refusal.replace(
                    "gives no verdict", "finds no lungs").replace("the model is a chest X-ray model",
                                                                  "the lung model reads chest X-rays")))
                continue
            pending.append((index, path, grey))
        except CovidlensError as exc:
            if pending:
                flush()
            results.append(LungResult(str(path), error=str(exc)))
            continue
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    with (out / "lungs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "lung_fraction", "plausible", "mask_png", "overlay_png", "error"])
        for r in results:
            writer.writerow([r.path, "" if r.error else f"{r.lung_fraction:.6f}", "" if r.error else int(r.plausible),
                             r.mask_png, r.overlay_png, r.error])
    shown = [(Path(r.path).name, r.overlay_png, f"lungs {r.lung_fraction:.1%}" + ("" if r.plausible else " (implausible: check)"))
             for r in results if r.overlay_png]
    write_gallery(shown, out / "index.html", f"Lungs by {ckpt.info.model}",
                  note="Red: the lung mask. A research aid, not a diagnosis.")
    return results
