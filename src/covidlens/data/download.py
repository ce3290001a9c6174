"""Fetching public data sets for users who are online: resumable, checksummed, with a progress bar.

Each registered source lists its files with URL, size and SHA-256 where known. A file whose checksum
does not match is deleted and reported, never used. Archives are unpacked into the data root so that
the folder layout is the one :mod:`covidlens.data.datasets` reads.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

from tqdm import tqdm

from covidlens.errors import CovidlensError


@dataclass(frozen=True)
class RemoteFile:
    url: str
    #: Where the file (or, for an archive, its contents) goes, relative to the data set folder.
    target: str
    #: Hex SHA-256 of the downloaded bytes; None when not pinned (then the digest is printed).
    sha256: str | None = None
    unzip: bool = False


_UCSD = "https://github.com/UCSD-AI4H/COVID-CT/raw/master"
SOURCES: dict[str, list[RemoteFile]] = {
    # The authors' repository. Its archives were not reachable from the machine this was written on,
    # so the digests are not pinned yet: the downloader prints them for the user to record.
    "covid-ct": [
        RemoteFile(f"{_UCSD}/Images-processed/CT_COVID.zip", ".", unzip=True),
        RemoteFile(f"{_UCSD}/Images-processed/CT_NonCOVID.zip", ".", unzip=True),
        *[
            RemoteFile(f"{_UCSD}/Data-split/{cls}/{split}CT_{cls}.txt", f"splits/{cls}/{split}CT_{cls}.txt")
            for cls in ("COVID", "NonCOVID")
            for split in ("train", "val", "test")
        ],
    ],
}


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, destination: Path, sha256: str | None = None, progress: bool = True) -> str:
    """Download ``url`` to ``destination`` through a temporary file; return the SHA-256 of the bytes.

    Raises :class:`CovidlensError` when the download fails or the checksum differs (the partial or
    wrong file is removed, an existing good file is left alone).
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as handle:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, disable=not progress) as bar:
                while block := response.read(1 << 16):
                    handle.write(block)
                    bar.update(len(block))
    except (URLError, OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise CovidlensError(f"could not download {url} ({exc}); check the connection and try again.") from exc
    digest = sha256_of(partial)
    if sha256 is not None and digest != sha256.lower():
        partial.unlink(missing_ok=True)
        raise CovidlensError(f"checksum mismatch for {url}: expected {sha256}, got {digest}; the file was discarded.")
    partial.replace(destination)
    return digest


def download_dataset(name: str, folder: Path, progress: bool = True) -> dict[str, str]:
    """Fetch every file of a registered source into ``folder``; return {url: sha256}."""
    if name not in SOURCES:
        raise CovidlensError(f"no download is registered for {name!r}; downloadable: {', '.join(sorted(SOURCES))}.")
    folder = Path(folder)
    digests = {}
    for item in SOURCES[name]:
        target = folder / item.target
        if item.unzip:
            archive = folder / ".downloads" / Path(item.url).name
            digests[item.url] = fetch(item.url, archive, item.sha256, progress)
            try:
                with zipfile.ZipFile(archive) as zf:
                    for member in zf.namelist():
                        resolved = (target / member).resolve()
                        if not resolved.is_relative_to(target.resolve()):
                            raise CovidlensError(f"{archive} holds an unsafe path {member!r}; refusing to unpack it.")
                    zf.extractall(target)
            except zipfile.BadZipFile as exc:
                raise CovidlensError(f"{archive} is not a valid zip archive ({exc}).") from exc
        else:
            digests[item.url] = fetch(item.url, target, item.sha256, progress)
    shutil.rmtree(folder / ".downloads", ignore_errors=True)
    return digests
