"""Probability maps from a segmentation checkpoint, for one image, a batch, or files and folders."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from covidlens.checkpoint import Checkpoint, load_checkpoint
from covidlens.data.io import list_images, read_image
from covidlens.data.transforms import EvalPreset
from covidlens.errors import CovidlensError

#: Takes the 8-bit grey slice (H x W uint8) and gives a boolean lung mask of the same size.
LungMaskFn = Callable[[np.ndarray], np.ndarray]


def _checkpoint(checkpoint: Checkpoint | str | Path) -> Checkpoint:
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if ckpt.info.task != "segmentation":
        raise CovidlensError(f"{ckpt.path} is a {ckpt.info.task} model; segmentation needs a segmentation checkpoint.")
    return ckpt


def _grey(image: Image.Image | np.ndarray | str | Path) -> Image.Image:
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, np.ndarray):
        if image.ndim != 2:
            raise CovidlensError(f"a slice must be a 2-D grey array, got shape {image.shape}.")
        return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    return image if image.mode == "L" else image.convert("L")


def apply_lung_mask(probs: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """Lesion probability outside the lungs moved to background (class 0): the false-positive filter.

    ``lung`` must be a boolean H x W mask of the probability map's size; an empty mask would erase
    every lesion, so it is refused (covidlens.measure.lungs gives empty masks on MedSeg's crops).
    """
    lung = np.asarray(lung, dtype=bool)
    if lung.shape != probs.shape[1:]:
        raise CovidlensError(f"the lung mask is {lung.shape} but the slice is {probs.shape[1:]}; they must match.")
    if not lung.any():
        raise CovidlensError("the lung mask is empty, so filtering would remove every lesion; check the lung segmentation.")
    out = probs.copy()
    out[1:, ~lung] = 0.0
    out[0, ~lung] = 1.0
    return out


@torch.inference_mode()
def segment_batch(checkpoint: Checkpoint | str | Path, images: list, lung_mask: LungMaskFn | None = None,
                  engine=None, tta: bool | None = None) -> list[np.ndarray]:
    """K x H x W float32 class probabilities for each image, at each image's own size.

    Each image goes through the evaluation preset (resized to the input size, normalised); the
    logits are resized back bilinearly to the image's size before the softmax, so every pixel's
    probabilities sum to 1. ``lung_mask`` (optional) maps the grey slice to a lung mask, and lesion
    probability outside it is moved to background (:func:`apply_lung_mask`). ``engine`` (an
    :class:`~covidlens.runtime.OnnxModel` of the same checkpoint) computes the logits instead of PyTorch.
    With ``tta`` (default: the checkpoint's ``tta``) the probabilities are the mean over the slice and its
    left-right mirror (the mirror's maps flipped back).
    """
    ckpt = _checkpoint(checkpoint)
    info = ckpt.info
    greys = [_grey(im) for im in images]
    if not greys:
        return []
    transform = EvalPreset(info.input_size, tuple(info.mean), tuple(info.std), info.in_channels)
    batch = torch.stack([transform(g) for g in greys])

    def run(x: torch.Tensor) -> torch.Tensor:
        if engine is not None:
            return engine(x).float()
        ckpt.model.eval()
        return ckpt.model(x.to(next(ckpt.model.parameters()).device)).float()

    views = [run(batch)]
    if info.tta if tta is None else tta:
        views.append(torch.flip(run(torch.flip(batch, dims=[3])), dims=[3]))
    if views[0].shape[1] != info.num_outputs:
        raise CovidlensError(f"{ckpt.path} gives {views[0].shape[1]} maps but its description says {info.num_outputs}.")
    out = []
    for i, grey in enumerate(greys):
        probs = sum(torch.softmax(F.interpolate(v[i][None], size=(grey.height, grey.width), mode="bilinear",
                                                align_corners=False)[0], dim=0) for v in views) / len(views)
        probs = probs.cpu().numpy().astype(np.float32)
        if lung_mask is not None:
            probs = apply_lung_mask(probs, lung_mask(np.asarray(grey)))
        out.append(probs)
    return out


def segment_image(
    checkpoint: Checkpoint | str | Path, image: Image.Image | np.ndarray | str | Path, lung_mask: LungMaskFn | None = None
) -> np.ndarray:
    """K x H x W class probabilities of one slice (a grey PIL image, a 2-D uint8 array or a file) at
    its own size; ``mask = probs.argmax(0)`` gives class indices in the order of ``info.classes``."""
    return segment_batch(checkpoint, [image], lung_mask)[0]


@dataclass
class SegmentationResult:
    path: str
    #: Fraction of the slice's pixels given to each class (most probable class).
    fractions: dict[str, float] = field(default_factory=dict)
    mask_png: str = ""
    overlay_png: str = ""
    error: str = ""


def _write_mask(mask: np.ndarray, path: Path) -> None:
    """Class indices as a palette PNG: viewers show colours, readers get the indices back."""
    from covidlens.visualize import CLASS_COLOURS

    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    palette = [0, 0, 0] + [c for colour in CLASS_COLOURS for c in colour]
    image.putpalette(palette + [0] * (768 - len(palette)))
    image.save(path)


def segment_files(
    checkpoint: Checkpoint | str | Path,
    paths: Iterable[str | Path],
    out_dir: str | Path | None = None,
    lung_mask: LungMaskFn | None = None,
    batch_size: int = 8,
) -> list[SegmentationResult]:
    """Segment every image under ``paths`` (files or folders); unreadable files get a row with the reason.

    With ``out_dir``: for image number i, ``masks/<i>_<stem>.png`` (palette PNG of class indices) and
    ``overlays/<i>_<stem>.png`` (image beside its predicted lesions), ``segments.csv`` (one row per file)
    and ``index.html`` (every overlay on one page). The number keeps same-named files apart.
    """
    from covidlens.segmentation.render import render_panel, write_gallery

    ckpt = _checkpoint(checkpoint)
    classes = ckpt.info.classes
    files: list[Path] = []
    for path in paths:
        files.extend(list_images(path))
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        (out / "masks").mkdir(parents=True, exist_ok=True)
        (out / "overlays").mkdir(parents=True, exist_ok=True)
    results: list[SegmentationResult] = []
    pending: list[tuple[int, Path, Image.Image]] = []

    def flush():
        probs = segment_batch(ckpt, [g for _, _, g in pending], lung_mask)
        for (index, path, grey), p in zip(pending, probs):
            mask = p.argmax(0)
            fractions = {c: float((mask == k).mean()) for k, c in enumerate(classes)}
            result = SegmentationResult(str(path), fractions)
            if out is not None:
                stem = f"{index:04d}_{path.stem}"
                _write_mask(mask, out / "masks" / f"{stem}.png")
                render_panel(np.asarray(grey), None, mask, classes, out / "overlays" / f"{stem}.png", title=path.name)
                result.mask_png, result.overlay_png = f"masks/{stem}.png", f"overlays/{stem}.png"
            results.append(result)
        pending.clear()

    for index, path in enumerate(files):
        try:
            pending.append((index, path, read_image(path)))
        except CovidlensError as exc:
            if pending:  # keep the rows in file order
                flush()
            results.append(SegmentationResult(str(path), error=str(exc)))
            continue
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    if out is not None:
        with (out / "segments.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", *[f"fraction_{c}" for c in classes], "mask_png", "overlay_png", "error"])
            for r in results:
                writer.writerow([r.path, *[f"{r.fractions[c]:.6f}" if r.fractions else "" for c in classes],
                                 r.mask_png, r.overlay_png, r.error])
        shown = [(Path(r.path).name, r.overlay_png, ", ".join(f"{c} {v:.1%}" for c, v in r.fractions.items() if c != classes[0]))
                 for r in results if r.overlay_png]
        write_gallery(shown, out / "index.html", f"Lesion segmentation by {ckpt.info.model}")
    return results
