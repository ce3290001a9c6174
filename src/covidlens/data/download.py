"""Fetching public data sets for users who are online, through ``pooch``: checksummed, with a progress bar.

Each registered source lists its files with URL and SHA-256 where known. ``pooch`` streams every
download into a temporary file beside its destination and moves it into place only once the digest
matches, so a failed, interrupted or tampered download never leaves a file behind (and never
replaces a good copy). A file without a pinned digest is kept and its SHA-256 returned, for the user
to record. Archives are unpacked into the data set folder so that the layout is the one
:mod:`covidlens.data.datasets` reads.
"""

from __future__ import annotations

import contextlib
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests

from covidlens.errors import CovidlensError


@dataclass(frozen=True)
class RemoteFile:
    url: str
    #: Where the file (or, for an archive, its contents) goes, relative to the data set folder.
    target: str
    #: Hex SHA-256 of the downloaded bytes; None when not pinned (then the digest is only reported).
    sha256: str | None = None
    unzip: bool = False


_UCSD = "https://github.com/UCSD-AI4H/COVID-CT/raw/master"
SOURCES: dict[str, list[RemoteFile]] = {
    # The authors' repository. It was not reachable from the machine this was written on, so no
    # digest is pinned yet: `covidlens data download` prints each file's SHA-256 for the user to record.
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


def _reason(exc: requests.exceptions.RequestException) -> str:
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"the server answered HTTP {exc.response.status_code}"
    if isinstance(exc, requests.exceptions.Timeout):
        return "the server did not answer in time"
    return "the server could not be reached"


def fetch(
    url: str,
    destination: Path,
    sha256: str | None = None,
    progress: bool = True,
    processor: pooch.Unzip | None = None,
) -> str:
    """Download ``url`` to ``destination`` with ``pooch.retrieve``; return the SHA-256 of the bytes.

    A file already at ``destination`` is kept without downloading when it has the pinned digest, or
    when none is pinned (pooch only ever moves complete downloads into place, so a re-run after a
    failure resumes with the files still missing). ``processor`` (``pooch.Unzip``, whose
    ``zipfile`` extraction drops absolute and ``..`` member paths) runs once the file is in place.
    Raises :class:`CovidlensError` when the server cannot be reached, the digest differs or the
    folder cannot be written; nothing new is left at ``destination`` then.
    """
    destination = Path(destination).absolute()
    try:
        downloader = pooch.HTTPDownloader(progressbar=progress)
        pooch.retrieve(
            url,
            known_hash=None if sha256 is None else f"sha256:{sha256.lower()}",
            fname=destination.name,
            path=destination.parent,
            processor=processor,
            downloader=downloader,
        )
    except requests.exceptions.RequestException as exc:
        raise CovidlensError(
            f"could not download {url} because {_reason(exc)}; check the internet connection and try again."
        ) from exc
    except ValueError as exc:
        raise CovidlensError(
            f"the file at {url} does not have its pinned SHA-256 {sha256}, so it was discarded; "
            "try again later, and report it if it keeps happening."
        ) from exc
    except OSError as exc:
        raise CovidlensError(f"could not write {destination} ({exc.strerror}); choose a writable data folder.") from exc
    return pooch.file_hash(str(destination), alg="sha256")


def download_dataset(name: str, folder: Path, progress: bool = True) -> dict[str, str]:
    """Fetch every file of a registered source into ``folder``; return {url: sha256}."""
    if name not in SOURCES:
        raise CovidlensError(f"no download is registered for {name!r}; downloadable: {', '.join(sorted(SOURCES))}.")
    folder = Path(folder).absolute()
    downloads = folder / ".downloads"
    digests = {}
    try:
        for item in SOURCES[name]:
            target = folder / item.target
            if item.unzip:
                archive = downloads / Path(item.url).name
                unzip = pooch.Unzip(extract_dir=str(target))
                try:
                    digests[item.url] = fetch(item.url, archive, item.sha256, progress, unzip)
                except zipfile.BadZipFile as exc:
                    shutil.rmtree(downloads, ignore_errors=True)
                    raise CovidlensError(
                        f"{item.url} is not a valid zip archive ({exc}); try the download again."
                    ) from exc
            else:
                digests[item.url] = fetch(item.url, target, item.sha256, progress)
    except CovidlensError:
        with contextlib.suppress(OSError):
            downloads.rmdir()  # only when empty: complete archives stay for the next attempt
        raise
    shutil.rmtree(downloads, ignore_errors=True)
    return digests
