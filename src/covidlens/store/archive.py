"""Model archives: a store folder packed as a reproducible ``.tar.gz`` with its SHA-256, and unpacked
only after every member is checked.

An archive holds the files of one model folder at its top level (``model.safetensors``,
``model.json``, ``card.md``, ``card.json``). Unpacking refuses, before writing anything, a member that
would land outside the folder (an absolute path, a ``..`` component), anything but a regular file or
folder (links, devices), more members than a model has, and sizes over :data:`MAX_ARCHIVE_BYTES`.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from covidlens.errors import CovidlensError

#: Largest archive downloaded, and largest sum of its unpacked members (a real model is under 100 MB).
MAX_ARCHIVE_BYTES = 2 << 30
#: A model folder holds four files; a few more leaves room for later ones, not for a tar bomb.
MAX_MEMBERS = 32
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def pack_folder(folder: Path, archive: Path) -> str:
    """Write ``folder``'s files into ``archive`` (same bytes for the same files) and return its SHA-256."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            member = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            member.mode = 0o644
            member.mtime = 0
            with open(path, "rb") as handle:
                tar.addfile(member, handle)
    partial.replace(archive)
    return sha256_of(archive)


def _member_path(member: tarfile.TarInfo, where: str) -> PurePosixPath:
    name = member.name
    path = PurePosixPath(name)
    if not name or name.startswith(("/", "\\")) or path.is_absolute() or name[1:2] == ":":
        raise CovidlensError(f"{where} has a member {member.name!r} with an absolute path; nothing was installed.")
    if any(part == ".." for part in path.parts) or "\\" in member.name:
        raise CovidlensError(f"{where} has a member {member.name!r} that points outside the model folder; "
                             "nothing was installed.")
    if not (member.isfile() or member.isdir()):
        raise CovidlensError(f"{where} has a member {member.name!r} that is a link or special file, not a plain "
                             "file; nothing was installed.")
    return path


def unpack_archive(archive: Path, folder: Path, where: str) -> Path:
    """Check every member of ``archive`` and then extract it into the new folder ``folder``."""
    if archive.stat().st_size > MAX_ARCHIVE_BYTES:
        raise CovidlensError(f"{where} is larger than the {MAX_ARCHIVE_BYTES >> 30} GiB bound on a model archive; "
                             "nothing was installed.")
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members, total = [], 0
            for member in tar:
                if len(members) == MAX_MEMBERS:
                    raise CovidlensError(f"{where} has more than {MAX_MEMBERS} members, more than a model folder "
                                         "holds; nothing was installed.")
                members.append((member, _member_path(member, where)))
                total += member.size
                if total > MAX_ARCHIVE_BYTES:
                    raise CovidlensError(f"{where} unpacks to more than the {MAX_ARCHIVE_BYTES >> 30} GiB bound on "
                                         "a model; nothing was installed.")
            folder.mkdir()
            for member, path in members:
                target = folder.joinpath(*path.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink, _CHUNK)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise CovidlensError(f"{where} is not a readable .tar.gz archive ({exc}); nothing was installed.") from exc
    return folder


def pack_model(name: str, out_dir: Path) -> tuple[Path, str]:
    """Pack the installed ``name`` into ``out_dir/NAME.tar.gz`` with ``NAME.tar.gz.sha256`` beside it."""
    from covidlens.store.store import installed_checkpoint, verify_model

    folder = installed_checkpoint(name)
    verify_model(name, folder)
    archive = Path(out_dir) / f"{name}.tar.gz"
    digest = pack_folder(folder, archive)
    archive.with_name(archive.name + ".sha256").write_text(f"{digest}  {archive.name}\n")
    return archive, digest
