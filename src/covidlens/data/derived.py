"""Training images derived from a data set by a model: the lung-masked and lung-cropped chest X-rays
that stage 2 of segment-then-classify (seed 002) trains on.

:func:`derive_lung_images` runs a lung model (:mod:`covidlens.segmentation.lungs`) once over every
sample and writes its mask and the masked and cropped copies as PNG under a work folder outside the
repository; a copy already there is reused. :func:`lung_input_table` does that for a whole
:class:`~covidlens.data.sets.core.SampleTable` and writes a CSV table (``path,label,split,patient_id``,
the sample's split and group kept) that a trainer reads as ``data.dataset``. By default the work folder
is ``$COVIDLENS_HOME/derived/lungs-<digest>`` (``~/.cache/covidlens``), named after the lung model's
weights, so images derived with another lung model are never mistaken for these.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from covidlens.data.sets.core import Sample, SampleTable

#: What each derived sample gets: the lung mask (0/255) and the two stage-2 inputs.
DERIVED_KINDS = ("masked", "cropped", "mask")
BATCH = 32


def derived_root() -> Path:
    """``$COVIDLENS_HOME/derived``, by default ``~/.cache/covidlens/derived``."""
    home = os.environ.get("COVIDLENS_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "covidlens") / "derived"


def lung_model_work(lung_ckpt) -> Path:
    """The default work folder of a lung model: named after the SHA-256 of its weights."""
    from covidlens.checkpoint import WEIGHTS_NAME

    folder = Path(lung_ckpt.path)
    weights = folder / WEIGHTS_NAME if folder.is_dir() else folder
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    return derived_root() / f"lungs-{digest}"


def derive_lung_images(lung_ckpt, samples: list[Sample], folder: Path, work: Path, tag: str,
                       log: Callable[[str], None] = print) -> dict[str, list[Path]]:
    """Masked and cropped copies of every sample and its lung mask (PNG, under ``work/tag/KIND/``, by the
    sample's path relative to ``folder``), and the raw paths; copies already there are reused.

    An image where the lung model finds no lungs is kept whole in the masked and cropped copies rather
    than dropped (its mask is empty: count those with :func:`empty_masks`).
    """
    from covidlens.segmentation.lungs import apply_lungs, lung_masks

    out: dict[str, list[Path]] = {"raw": [s.path for s in samples], **{k: [] for k in DERIVED_KINDS}}
    todo = []
    for s in samples:
        rel = Path(s.path).relative_to(folder).with_suffix(".png")
        paths = {k: work / tag / k / rel for k in DERIVED_KINDS}
        for k, p in paths.items():
            out[k].append(p)
        if not all(p.is_file() for p in paths.values()):
            todo.append((s, paths))
    for start in range(0, len(todo), BATCH):
        chunk = todo[start : start + BATCH]
        greys = [Image.open(s.path).convert("L") for s, _ in chunk]
        for (s, paths), grey, lung in zip(chunk, greys, lung_masks(lung_ckpt, greys)):
            for p in paths.values():
                p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(lung.astype(np.uint8) * 255).save(paths["mask"])
            arr = np.asarray(grey)
            if not lung.any():
                lung = np.ones_like(lung)
            Image.fromarray(apply_lungs(arr, lung, "masked")).save(paths["masked"])
            Image.fromarray(apply_lungs(arr, lung, "cropped")).save(paths["cropped"])
        log(f"  {tag}: lungs of {min(start + BATCH, len(todo))}/{len(todo)} images")
    return out


def empty_masks(masks: Iterable[Path]) -> int:
    """How many of these lung masks are empty (images kept whole)."""
    return sum(not (np.asarray(Image.open(p)) > 127).any() for p in masks)


def write_table(path: Path, rows: Iterable[tuple[Path, str, str, str]]) -> Path:
    """A CSV table ``path,label,split,patient_id`` that :func:`~covidlens.data.sets.core.load_csv` reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split", "patient_id"])
        writer.writerows([(str(p), label, split, group) for p, label, split, group in rows])
    return path


def lung_input_table(lung_ckpt, table: SampleTable, kind: str = "masked", work: Path | None = None,
                     log: Callable[[str], None] = print) -> Path:
    """Derive ``kind`` (``masked`` or ``cropped``) images of every sample of ``table`` with the lung model
    and write their CSV table, ``work/tables/<table name>-<kind>.csv``; returns its path.

    Each row keeps the sample's class name, split and group, so the split and the bootstrap groups of
    the derived set are those of the original.
    """
    from covidlens.errors import CovidlensError
    from covidlens.segmentation.lungs import load_lung_model

    if kind not in ("masked", "cropped"):
        raise CovidlensError(f"derived lung inputs are 'masked' or 'cropped', not {kind!r}.")
    lung_ckpt = load_lung_model(lung_ckpt)
    work = Path(work) if work is not None else lung_model_work(lung_ckpt)
    folder = Path(os.path.commonpath([str(Path(s.path).parent) for s in table.samples]))
    images = derive_lung_images(lung_ckpt, table.samples, folder, work, table.name, log)
    rows = [(p, table.classes[s.label], s.split, s.group) for p, s in zip(images[kind], table.samples)]
    return write_table(work / "tables" / f"{table.name}-{kind}.csv", rows)
