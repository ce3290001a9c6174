"""Pulling store models from a manifest of archives with pinned SHA-256 digests.

A manifest is a JSON object ``{NAME: {"url": ..., "sha256": ..., "size": ...}}``. The one shipped in
the package (``manifest.json``) names the project's release page, where no model archive is published
yet: its entries have no digest, and pulling them says so. ``--manifest`` points at another manifest,
a file or an http(s) URL (a mirror behind a firewall, or your own archives from ``covidlens models pack``).

The archive is downloaded with pooch, which checks the digest before the file is moved into place;
only then is it unpacked (:func:`~covidlens.store.archive.unpack_archive`), its checkpoint loaded with
the strict checks, and the folder renamed into the store.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from covidlens.errors import CovidlensError
from covidlens.store.archive import MAX_ARCHIVE_BYTES, unpack_archive
from covidlens.store.store import check_name, install, staging

DEFAULT_MANIFEST = Path(__file__).with_name("manifest.json")
#: Largest manifest read (a real one is under 2 kB).
MAX_MANIFEST_BYTES = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    url: str
    sha256: str | None
    size: int | None


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _read_source(source: str) -> str:
    if _is_url(source):
        from covidlens.data.download import fetch

        with tempfile.TemporaryDirectory() as scratch, _quiet_pooch():
            path = Path(scratch) / "manifest.json"
            fetch(source, path, progress=False)
            return _read_text(path, source)
    path = Path(source).expanduser()
    if not path.is_file():
        raise CovidlensError(f"manifest {source} does not exist; pass a manifest file or an http(s) URL.")
    return _read_text(path, source)


def _read_text(path: Path, source: str) -> str:
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise CovidlensError(f"manifest {source} is larger than any model manifest ({MAX_MANIFEST_BYTES} bytes at most).")
    try:
        return path.read_text()
    except UnicodeDecodeError as exc:
        raise CovidlensError(f"manifest {source} is not a text file.") from exc


def read_manifest(source: str | Path | None = None) -> dict[str, ManifestEntry]:
    """The manifest at ``source`` (a file or an http(s) URL; the package's own when None), checked."""
    source = str(source) if source is not None else str(DEFAULT_MANIFEST)
    try:
        raw = json.loads(_read_source(source))
    except json.JSONDecodeError as exc:
        raise CovidlensError(f"manifest {source} is not valid JSON ({exc}).") from exc
    if not isinstance(raw, dict):
        raise CovidlensError(f"manifest {source} must be a JSON object of model names.")
    entries = {}
    for name, entry in raw.items():
        check_name(name)
        bad = f"manifest {source} has an invalid entry for {name}:"
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) or not entry["url"]:
            raise CovidlensError(f"{bad} it needs a 'url'.")
        sha, size = entry.get("sha256"), entry.get("size")
        if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha.lower())):
            raise CovidlensError(f"{bad} 'sha256' must be 64 hexadecimal digits.")
        if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
            raise CovidlensError(f"{bad} 'size' must be a positive number of bytes.")
        entries[name] = ManifestEntry(name, entry["url"], sha.lower() if sha else None, size)
    return entries


@contextmanager
def _quiet_pooch():
    """pooch logs each download on its own; the command says what it installed in one line instead."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def pull(name: str, manifest: str | Path | None = None, progress: bool = True) -> Path:
    """Download, verify, unpack and install ``name`` from the manifest; return its store folder."""
    from covidlens.data.download import fetch

    check_name(name)
    entries = read_manifest(manifest)
    where = "the default manifest" if manifest is None else f"manifest {manifest}"
    if name not in entries:
        raise CovidlensError(f"{where} lists no {name} archive; build it with 'covidlens models build {name}'.")
    entry = entries[name]
    if entry.sha256 is None or entry.size is None:
        raise CovidlensError(f"{where} has no published {name} archive yet (no pinned SHA-256 and size); build it "
                             f"with 'covidlens models build {name}' or pass --manifest.")
    if entry.size > MAX_ARCHIVE_BYTES:
        raise CovidlensError(f"{where} declares a {name} archive of {entry.size:,} bytes, over the "
                             f"{MAX_ARCHIVE_BYTES >> 30} GiB bound on a model archive; nothing was installed.")
    with staging(name) as scratch, _quiet_pooch():
        archive = scratch / f"{name}.tar.gz"
        fetch(entry.url, archive, entry.sha256, progress=progress)
        if archive.stat().st_size != entry.size:
            raise CovidlensError(f"the archive at {entry.url} has {archive.stat().st_size:,} bytes, not the "
                                 f"{entry.size:,} the manifest declares; nothing was installed.")
        folder = unpack_archive(archive, scratch / "model", f"the archive at {entry.url}")
        return install(name, folder, scratch)
