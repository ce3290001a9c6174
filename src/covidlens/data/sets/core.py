"""Samples, sample tables, the data-set registry, and user data given as a folder or a CSV table.

A data set is a :class:`SampleTable`: one :class:`Sample` per image (or per slice of a volume), each
carrying its label, the split it belongs to and a ``group`` (the patient where one is known, otherwise
the source figure, the near-duplicate group or the image itself), so that anyone who makes their own
split or resamples for a confidence interval can keep a patient on one side of it.

Registered sets know their own folder layout under the data root (``--data`` or ``$COVIDLENS_DATA``)
and record, for ``covidlens data list``, their modality, task, layout and traps.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from covidlens.data.io import IMAGE_SUFFIXES
from covidlens.errors import CovidlensError
from covidlens.kinds import MODALITIES, SPLITS, TASKS

DATA_ROOT_ENV = "COVIDLENS_DATA"
GROUP_KINDS = ("patient", "patient+figure", "figure", "near-duplicate", "slab", "image")
UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class Sample:
    """One image, or one slice of a volume, with everything a split, a metric or a mask loss needs.

    ``label`` indexes ``SampleTable.classes`` and is -1 where the set gives no image-level label.
    ``spacing`` is in mm and matches the sample's own image: (row, col) for a 2-D image or for slice
    ``slice_index`` of the volume at ``path``, (slice, row, col) for a 3-D file. ``rot90`` is the
    ``np.rot90`` k that brings image AND mask to the usual view; the consumer turns both together.
    """

    path: Path
    label: int
    split: str
    group: str
    mask: Path | None = None
    spacing: tuple[float, ...] | None = None
    series: str | None = None
    slice_index: int | None = None
    rot90: int = 0
    meta: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def image(self):
        """The sample's 8-bit grey image in the usual view: the file, or its slice of a volume
        (shown through :func:`covidlens.data.intensity.display_image`), turned by ``rot90``."""
        import numpy as np
        from PIL import Image

        from covidlens.data.intensity import display_image
        from covidlens.data.io import read_image

        if self.slice_index is None:
            image = read_image(self.path)
        else:
            volume = _cached_volume(str(self.path))
            if not 0 <= self.slice_index < volume.pixels.shape[0]:
                raise CovidlensError(f"{self.path} has {volume.pixels.shape[0]} slices; slice {self.slice_index} is not one of them.")
            spacing = volume.spacing[1:] if volume.spacing else None
            image = display_image(dataclasses.replace(volume, pixels=volume.pixels[self.slice_index], spacing=spacing))
        if self.rot90 % 4:
            image = Image.fromarray(np.ascontiguousarray(np.rot90(np.asarray(image), self.rot90)))
        return image


@functools.lru_cache(maxsize=3)
def _cached_volume(path: str):
    """Slices of one volume are read one after another: decode the volume once, not per slice."""
    from covidlens.data.io import read_scan

    return read_scan(path)


@dataclass
class SampleTable:
    name: str
    classes: list[str]
    samples: list[Sample]
    #: The class a binary model scores, by NAME (its index follows from ``classes``); None for
    #: K-class or unlabelled sets where no class is "the positive one".
    positive_class: str | None = None
    task: str = "classification"
    modality: str = "ct"
    #: What ``Sample.group`` holds: one of :data:`GROUP_KINDS`.
    group_kind: str = "image"
    #: For segmentation: the names of mask values 0..K-1 (binary masks stored 0/255: 255 is class 1).
    mask_classes: list[str] | None = None

    def __post_init__(self) -> None:
        if self.positive_class is not None and self.positive_class not in self.classes:
            raise CovidlensError(
                f"positive class {self.positive_class!r} is not a class of {self.name!r}; "
                f"choose one of: {', '.join(self.classes)}."
            )

    @property
    def positive_index(self) -> int | None:
        return None if self.positive_class is None else self.classes.index(self.positive_class)

    def split(self, name: str) -> list[Sample]:
        if name not in SPLITS:
            raise CovidlensError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}.")
        chosen = [s for s in self.samples if s.split == name]
        if not chosen:
            raise CovidlensError(f"data set {self.name!r} has no images in its {name!r} split.")
        return chosen

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class; an ``unlabelled`` column appears when some samples have no label."""
        names = list(self.classes) + ([UNLABELLED] if any(s.label < 0 for s in self.samples) else [])
        table: dict[str, dict[str, int]] = {}
        for split in SPLITS:
            c = Counter(self.classes[s.label] if s.label >= 0 else UNLABELLED for s in self.samples if s.split == split)
            table[split] = {name: c.get(name, 0) for name in names}
        return table


@dataclass(frozen=True)
class DatasetInfo:
    """What ``covidlens data list`` shows for a registered set: where it lives, what it is for, its traps."""

    name: str
    subdir: str
    modality: str
    task: str
    description: str
    traps: tuple[str, ...]


def default_data_root() -> Path:
    """``$COVIDLENS_DATA`` when set, otherwise ``~/.cache/covidlens/data``."""
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env) if env else Path.home() / ".cache" / "covidlens" / "data"


_INFO: dict[str, DatasetInfo] = {}
_LOADERS: dict[str, Callable[[Path], SampleTable]] = {}


def register_dataset(
    name: str, subdir: str, *, modality: str, task: str, description: str, traps: Sequence[str]
) -> Callable[[Callable[[Path], SampleTable]], Callable[[Path], SampleTable]]:
    """Register a loader ``fn(folder) -> SampleTable`` whose files live at ``<data root>/<subdir>``."""
    if modality not in MODALITIES or task not in TASKS:
        raise ValueError(f"{name}: modality must be one of {MODALITIES} and task one of {TASKS}")
    info = DatasetInfo(name, subdir, modality, task, " ".join(description.split()), tuple(traps))

    def decorate(loader: Callable[[Path], SampleTable]) -> Callable[[Path], SampleTable]:
        _INFO[name] = info
        _LOADERS[name] = loader
        return loader

    return decorate


def list_datasets() -> list[str]:
    return sorted(_INFO)


def describe_dataset(name: str) -> DatasetInfo:
    if name not in _INFO:
        raise CovidlensError(f"unknown data set {name!r}; choose one of: {', '.join(list_datasets())}.")
    return _INFO[name]


def dataset_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    return Path(root if root is not None else default_data_root()) / describe_dataset(name).subdir


def load_dataset(
    name: str, root: str | os.PathLike | None = None, positive_class: str | None = None
) -> SampleTable:
    """Load a registered data set (``covid-ct``), a folder layout, or a CSV table.

    ``name`` is a registered name, or a path: a COVID-CT folder is recognised by its layout, a ``.csv``
    file is read by :func:`load_csv`, any other folder by :func:`load_folder`. ``positive_class``
    replaces the table's own positive class (it must name one of its classes).
    """
    table = _load(name, root)
    if positive_class is not None:
        table = dataclasses.replace(table, positive_class=positive_class)
    return table


def _load(name: str, root: str | os.PathLike | None) -> SampleTable:
    if name in _LOADERS:
        folder = dataset_folder(name, root)
        if not folder.is_dir():
            raise CovidlensError(
                f"data set {name!r} is not at {folder}; set --data or ${DATA_ROOT_ENV} to the folder "
                f"that holds it, or fetch it with 'covidlens data download {name}'."
            )
        return _LOADERS[name](folder)
    path = Path(name)
    if (path / "splits" / "COVID").is_dir() and (path / "CT_COVID").is_dir():
        return _LOADERS["covid-ct"](path)
    if path.suffix.lower() == ".csv" and path.is_file():
        return load_csv(path)
    if path.is_dir():
        return load_folder(path)
    raise CovidlensError(
        f"{name!r} is neither a known data set ({', '.join(list_datasets())}) nor an existing CSV file or folder."
    )


def group_split(
    groups: Sequence[str],
    strata: Sequence[object] | None = None,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> list[str]:
    """A train/val/test name for each item such that no group straddles two splits.

    Within each stratum (a group's most common stratum value, e.g. its class), groups are ordered by
    SHA-256 of ``seed`` and the group name, and cut where the running image count crosses the
    fractions. SHA-256 rather than Python's ``hash()``, which is salted per process: the split is the
    same on every run and machine, and a group keeps its split when unrelated groups are added.
    """
    strata = list(strata) if strata is not None else [0] * len(groups)
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    by_stratum: dict[object, list[str]] = defaultdict(list)
    for g, idx in members.items():
        counted = Counter(strata[i] for i in idx)
        by_stratum[min(counted, key=lambda s: (-counted[s], str(s)))].append(g)
    train_end, val_end = fractions[0], fractions[0] + fractions[1]
    out = [""] * len(groups)
    for stratum_groups in by_stratum.values():
        order = sorted(stratum_groups, key=lambda g: hashlib.sha256(f"{seed}\0{g}".encode()).hexdigest())
        total, done = sum(len(members[g]) for g in order), 0
        for g in order:
            middle = (done + len(members[g]) / 2) / total
            split = "train" if middle < train_end else "val" if middle < val_end else "test"
            for i in members[g]:
                out[i] = split
            done += len(members[g])
    return out


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file; ``utf-8-sig`` because some upstream tables start with a byte-order mark."""
    if not path.is_file():
        raise CovidlensError(f"{path} is missing; the data set folder is incomplete.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def is_covid_class(name: str) -> bool:
    """'COVID', 'covid19', 'CT_COVID', 'covid_positive' are COVID; 'NonCOVID', 'non-covid' are not."""
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    return "covid" in flat and not re.search(r"(non|no|not|neg)covid", flat)


def _class_order(names: list[str]) -> list[str]:
    """Sort class names so that a COVID class, when present, comes last (the positive class)."""
    return sorted(names, key=lambda n: (is_covid_class(n), n))


def load_folder(folder: Path) -> SampleTable:
    """User data as ``folder/{train,val,test}/<class>/image`` (or ``folder/<class>/image``: all 'test').

    Each image is its own group; use a CSV table to give patient ids. The COVID class (see
    :func:`is_covid_class`) is the positive one; without one, the last class in name order is.
    """
    folder = Path(folder)
    split_dirs = [folder / s for s in SPLITS if (folder / s).is_dir()]
    layout = [(d.name, d) for d in split_dirs] if split_dirs else [("test", folder)]
    class_names = sorted({c.name for _, d in layout for c in d.iterdir() if c.is_dir()})
    if len(class_names) < 2:
        raise CovidlensError(
            f"{folder} must hold one sub-folder per class (at least two), optionally under train/val/test."
        )
    classes = _class_order(class_names)
    samples = []
    for split, split_dir in layout:
        for label, cls in enumerate(classes):
            for path in sorted((split_dir / cls).rglob("*")) if (split_dir / cls).is_dir() else []:
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    samples.append(Sample(path, label, split, str(path.relative_to(folder))))
    return SampleTable(folder.name, classes, samples, positive_class=classes[-1])


def load_csv(table: Path) -> SampleTable:
    """User data as a CSV with columns ``path,label`` and optional ``split`` and ``patient_id``.

    Relative paths are taken from the CSV's folder; rows without a split are 'test'. A table with a
    ``mask`` column is a segmentation table (``label`` is then optional): each row's mask is a PNG of
    its image's size (0/255 for two classes, class indices otherwise), and an optional
    ``mask_classes`` column names the mask values, separated by ``;`` (default ``background;foreground``).
    """
    table = Path(table)
    with table.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if rows and {"path", "mask"} <= set(rows[0]):
        return _load_segmentation_csv(table, rows)
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise CovidlensError(f"{table} needs a header with at least the columns 'path' and 'label'.")
    classes = _class_order(sorted({r["label"] for r in rows}))
    samples = []
    for row in rows:
        path = Path(row["path"])
        path = path if path.is_absolute() else table.parent / path
        split = (row.get("split") or "test").strip()
        if split not in SPLITS:
            raise CovidlensError(f"{table}: split {split!r} is not one of {', '.join(SPLITS)}.")
        patient = (row.get("patient_id") or "").strip()
        samples.append(Sample(path, classes.index(row["label"]), split, patient or str(path)))
    group_kind = "patient" if all((r.get("patient_id") or "").strip() for r in rows) else "image"
    return SampleTable(table.stem, classes, samples, positive_class=classes[-1], group_kind=group_kind)


def _load_segmentation_csv(table: Path, rows: list[dict[str, str]]) -> SampleTable:
    names = {(r.get("mask_classes") or "background;foreground").strip() for r in rows}
    if len(names) != 1:
        raise CovidlensError(f"{table}: every row must name the same mask_classes, found {', '.join(sorted(names))}.")
    mask_classes = [n.strip() for n in names.pop().split(";")]
    if len(mask_classes) < 2 or any(not n for n in mask_classes):
        raise CovidlensError(f"{table}: mask_classes must name at least two classes separated by ';'.")
    samples = []
    for row in rows:
        path, mask = (Path(row[k]) for k in ("path", "mask"))
        path = path if path.is_absolute() else table.parent / path
        mask = mask if mask.is_absolute() else table.parent / mask
        split = (row.get("split") or "test").strip()
        if split not in SPLITS:
            raise CovidlensError(f"{table}: split {split!r} is not one of {', '.join(SPLITS)}.")
        patient = (row.get("patient_id") or "").strip()
        samples.append(Sample(path, -1, split, patient or str(path), mask=mask))
    group_kind = "patient" if all((r.get("patient_id") or "").strip() for r in rows) else "image"
    return SampleTable(table.stem, [], samples, task="segmentation", group_kind=group_kind, mask_classes=mask_classes)
