"""A real HTTP server on 127.0.0.1 serving a folder, a temporary store, and helpers that install a tiny
trained checkpoint into it and craft model archives."""

from __future__ import annotations

import functools
import http.server
import io
import json
import shutil
import tarfile
import threading
from pathlib import Path

import pytest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_folder(tmp_path_factory):
    """(folder, base URL): files put in the folder are served over HTTP until the module ends."""
    folder = tmp_path_factory.mktemp("served")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """A fresh, empty $COVIDLENS_HOME; returns its models folder."""
    monkeypatch.setenv("COVIDLENS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return tmp_path / "home" / "models"


def install_run(run: Path, name: str) -> Path:
    """Put a trained run's checkpoint into the store as ``name``, with a card."""
    from covidlens.store import model_dir, write_card

    folder = model_dir(name)
    shutil.copytree(run / "model", folder)
    write_card(folder, {"name": name, "summary": "a tiny test model", "built": "2024-01-01T00:00"})
    return folder


def write_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def model_members(folder: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [(tarfile.TarInfo(p.name), p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()]


def write_manifest(path: Path, name: str, url: str, archive: Path, sha256: str | None = None) -> Path:
    from covidlens.store.archive import sha256_of

    entry = {"url": url, "sha256": sha256 or sha256_of(archive), "size": archive.stat().st_size}
    path.write_text(json.dumps({name: entry}))
    return path
