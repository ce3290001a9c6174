"""What counts as one study: the inputs of ``covidlens screen`` turned into a list of studies.

A study is what one answer is given for. A NIfTI file is one study; a loose image or DICOM file is
one study; a folder whose files are DICOM is one series, hence one study (a folder of one DICOM file
is that slice), and its sub-folders are searched the same way (a linked folder once). A folder of studies therefore screens each series folder and each loose image
once. What cannot be a study (an empty folder, a folder of text files, a series too long to be one
chest CT) becomes a :class:`Study` with its ``problem`` set, so that it gets its one sentence in the
results while every other study is screened.

Each study gets a ``key`` (its path relative to the input it came from, so that two runs over the
same inputs agree) and a ``name`` safe as a folder name, unique within the run.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from covidlens.data.io import IMAGE_SUFFIXES, VOLUME_SUFFIXES, is_dicom

#: A series folder with more DICOM files than this is refused before any is read: more slices than
#: the largest volume covidlens reads (:data:`covidlens.data.io.MAX_VOXELS` allows 2048 of 512 x 512).
MAX_SERIES_FILES = 2048


@dataclass(frozen=True)
class Study:
    #: What is read: a file, or a folder holding one DICOM series.
    path: Path
    #: Stable identity across runs and shards: the input it came from and its path below it.
    key: str
    #: Folder name for its outputs (letters, digits, ``-_.``; unique in the run).
    name: str
    #: Why it cannot be screened (one sentence), or "" when it can.
    problem: str = ""

    def shard(self, count: int) -> int:
        """Which of ``count`` shards screens this study (a hash of the key, the same on every machine)."""
        return int(hashlib.sha256(self.key.encode()).hexdigest()[:8], 16) % count


def find_studies(inputs: list[str | Path]) -> list[Study]:
    """Every study under ``inputs`` (files and folders), in a stable order; see the module docstring."""
    found: list[tuple[Path, str, str]] = []
    roots = [Path(given) for given in inputs]
    for root, label in zip(roots, _labels(roots)):
        if not root.exists():
            found.append((root, str(root), f"{root} does not exist."))
        elif root.is_file():
            found.append((root, label, _file_problem(root)))
        else:
            found.extend(_walk(root, root, label, top=True, seen=set()))
    names: set[str] = set()
    studies = []
    keys: set[str] = set()
    for path, key, problem in found:
        if key not in keys:  # the same input given twice is screened once
            keys.add(key)
            studies.append(Study(path, key, _unique(_safe(key), names), problem))
    return studies


def _labels(roots: list[Path]) -> list[str]:
    """Each input's name as its studies' keys begin, with as many of its parent folders as it takes to
    tell apart two inputs of the same name (site-1/scans and site-2/scans), whatever their order."""
    paths = [Path(os.path.abspath(root)).parts[1:] for root in roots]
    labels = []
    for root, parts in zip(roots, paths):
        depth = 1
        while depth < len(parts) and any(other != parts and other[-depth:] == parts[-depth:] for other in paths):
            depth += 1
        labels.append(root.name if depth == 1 else "/".join(parts[-depth:]))
    return labels


def _walk(folder: Path, root: Path, label: str, top: bool, seen: set[Path]) -> list[tuple[Path, str, str]]:
    key = f"{label}/{folder.relative_to(root)}".rstrip("/.") if folder != root else label
    if folder.resolve() in seen:  # a linked folder met before (a link to a parent would never end)
        return []
    seen.add(folder.resolve())
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        return [(folder, key, f"{folder} cannot be listed ({exc.strerror or exc}).")]
    files = [p for p in entries if p.is_file() and not p.name.startswith(".")]
    folders = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    dicoms = [p for p in files if _is_dicom(p)]
    out: list[tuple[Path, str, str]] = []
    if dicoms:
        problem = ""
        if len(dicoms) > MAX_SERIES_FILES:
            problem = (f"{folder} holds {len(dicoms)} DICOM files, more than the {MAX_SERIES_FILES} slices of the "
                       "largest CT covidlens reads as one study; split it into one folder per series.")
        # One DICOM file is one slice, not a volume one slice deep.
        out.append((dicoms[0] if len(dicoms) == 1 else folder, key, problem))
    loose = [p for p in files if p not in dicoms and _is_image(p)]
    for path in loose:
        out.append((path, f"{key}/{path.name}", ""))
    for sub in folders:
        out.extend(_walk(sub, root, label, top=False, seen=seen))
    if top and not out:
        what = "is empty" if not files and not folders else "holds no DICOM, NIfTI or image files"
        out.append((folder, key, f"{folder} {what}, so it holds no study to screen."))
    return out


def _file_problem(path: Path) -> str:
    if _is_dicom(path) or _is_image(path):
        return ""
    return (f"{path} is not a DICOM, NIfTI or image file (covidlens screens DICOM series and slices, NIfTI volumes "
            "and PNG/JPEG images).")


def _is_dicom(path: Path) -> bool:
    try:
        return path.stat().st_size > 132 and is_dicom(path)
    except OSError:
        return False


def _is_image(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(VOLUME_SUFFIXES) or path.suffix.lower() in IMAGE_SUFFIXES


def _safe(key: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", key.replace("/", "__")).strip("._") or "study"
    return text[:120]


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate
