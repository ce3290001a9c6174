"""Data sets as tables of samples, with their official splits and patient ids.

A data set is a :class:`SampleTable`: one :class:`Sample` per image, each carrying its label, the split
it belongs to, and a ``group`` (the patient id where one exists, otherwise the source figure) so that
anyone who makes their own split can keep a patient, or the crops of one figure, on one side of it.

Registered sets know their own folder layout under the data root (``--data`` or ``$COVIDLENS_DATA``);
user data comes in as a folder of class folders or as a CSV table.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from covidlens.data.io import IMAGE_SUFFIXES
from covidlens.errors import CovidlensError

SPLITS = ("train", "val", "test")
DATA_ROOT_ENV = "COVIDLENS_DATA"


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    split: str
    group: str


@dataclass
class SampleTable:
    name: str
    classes: list[str]
    samples: list[Sample]
    #: The class whose probability the binary model outputs (index into ``classes``).
    positive_index: int = 1

    def split(self, name: str) -> list[Sample]:
        if name not in SPLITS:
            raise CovidlensError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}.")
        chosen = [s for s in self.samples if s.split == name]
        if not chosen:
            raise CovidlensError(f"data set {self.name!r} has no images in its {name!r} split.")
        return chosen

    def counts(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for split in SPLITS:
            c = Counter(self.classes[s.label] for s in self.samples if s.split == split)
            table[split] = {name: c.get(name, 0) for name in self.classes}
        return table


def default_data_root() -> Path:
    """``$COVIDLENS_DATA`` when set, otherwise ``~/.cache/covidlens/data``."""
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env) if env else Path.home() / ".cache" / "covidlens" / "data"


_DATASETS: dict[str, tuple[str, Callable[[Path], SampleTable]]] = {}


def register_dataset(name: str, subdir: str):
    """Register a loader ``fn(folder) -> SampleTable`` whose files live at ``<data root>/<subdir>``."""

    def decorate(loader: Callable[[Path], SampleTable]) -> Callable[[Path], SampleTable]:
        _DATASETS[name] = (subdir, loader)
        return loader

    return decorate


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def dataset_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    if name not in _DATASETS:
        raise CovidlensError(f"unknown data set {name!r}; choose one of: {', '.join(list_datasets())}.")
    return Path(root if root is not None else default_data_root()) / _DATASETS[name][0]


def load_dataset(name: str, root: str | os.PathLike | None = None) -> SampleTable:
    """Load a registered data set (``covid-ct``), a folder layout, or a CSV table.

    ``name`` is a registered name, or a path: a COVID-CT folder is recognised by its layout, a ``.csv``
    file is read by :func:`load_csv`, any other folder by :func:`load_folder`.
    """
    if name in _DATASETS:
        folder = dataset_folder(name, root)
        if not folder.is_dir():
            raise CovidlensError(
                f"data set {name!r} is not at {folder}; set --data or ${DATA_ROOT_ENV} to the folder "
                f"that holds it, or fetch it with 'covidlens data download {name}'."
            )
        return _DATASETS[name][1](folder)
    path = Path(name)
    if (path / "splits" / "COVID").is_dir() and (path / "CT_COVID").is_dir():
        return load_covid_ct(path)
    if path.suffix.lower() == ".csv" and path.is_file():
        return load_csv(path)
    if path.is_dir():
        return load_folder(path)
    raise CovidlensError(
        f"{name!r} is neither a known data set ({', '.join(list_datasets())}) nor an existing CSV file or folder."
    )


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise CovidlensError(f"split file {path} is missing; the data set folder is incomplete.")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _figure_group(file_name: str) -> str:
    """'12%0.jpg' and '12%1.jpg' are crops of one figure: both map to '12'."""
    return re.sub(r"%\d+$", "", Path(file_name).stem)


@register_dataset("covid-ct", "ct/covid-ct")
def load_covid_ct(folder: Path) -> SampleTable:
    """COVID-CT (Zhao et al. 2020) with its official split: 425 train, 118 val, 203 test images.

    COVID images are grouped by patient id from ``meta/covid_patient_split_map.csv``; NonCOVID images
    have no patient ids and are grouped by source figure.
    """
    patients: dict[str, str] = {}
    map_file = folder / "meta" / "covid_patient_split_map.csv"
    if map_file.is_file():
        with map_file.open(newline="") as handle:
            patients = {row["file"]: row["patient_id"] for row in csv.DictReader(handle)}
    samples = []
    for label, cls in enumerate(("NonCOVID", "COVID")):
        for split in SPLITS:
            for name in _read_lines(folder / "splits" / cls / f"{split}CT_{cls}.txt"):
                path = folder / f"CT_{cls}" / name
                if not path.is_file():
                    raise CovidlensError(f"{path} is listed in the official split but missing.")
                group = patients.get(name) or f"{cls}:{_figure_group(name)}"
                samples.append(Sample(path, label, split, group))
    return SampleTable("covid-ct", ["NonCOVID", "COVID"], samples, positive_index=1)


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
    return SampleTable(folder.name, classes, samples, positive_index=len(classes) - 1)


def load_csv(table: Path) -> SampleTable:
    """User data as a CSV with columns ``path,label`` and optional ``split`` and ``patient_id``.

    Relative paths are taken from the CSV's folder; rows without a split are 'test'.
    """
    table = Path(table)
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
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
        group = (row.get("patient_id") or "").strip() or str(path)
        samples.append(Sample(path, classes.index(row["label"]), split, group))
    return SampleTable(table.stem, classes, samples, positive_index=len(classes) - 1)
