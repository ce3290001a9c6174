"""Downloads are tested against a small HTTP server on 127.0.0.1 serving files from a temporary folder."""

import hashlib
import http.server
import io
import socket
import threading
import zipfile
from functools import partial

import pytest

from covidlens.data import download
from covidlens.data.download import RemoteFile, download_dataset, fetch
from covidlens.errors import CovidlensError

PAYLOAD = b"covidlens test payload\n" * 500


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path / "served"``; yields (base URL, folder). The server shuts itself down after 20 s
    even if a test hangs, and its thread is a daemon, so it can never keep the test run alive."""
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    deadline = threading.Timer(20.0, httpd.shutdown)
    deadline.daemon = True
    deadline.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        deadline.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def one_sentence(message):
    return "\n" not in message and message.endswith(".") and message.count(". ") == 0


def test_good_digest_is_accepted_and_the_file_kept(server, tmp_path):
    base, root = server
    (root / "file.bin").write_bytes(PAYLOAD)
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    target = tmp_path / "out" / "file.bin"
    assert fetch(f"{base}/file.bin", target, digest, progress=False) == digest
    assert target.read_bytes() == PAYLOAD
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]  # no temporary file left


def test_wrong_digest_is_refused_and_leaves_no_file(server, tmp_path):
    base, root = server
    (root / "file.bin").write_bytes(PAYLOAD)
    out = tmp_path / "out"
    with pytest.raises(CovidlensError, match="pinned SHA-256") as caught:
        fetch(f"{base}/file.bin", out / "file.bin", "0" * 64, progress=False)
    assert one_sentence(str(caught.value))
    assert not out.exists() or list(out.iterdir()) == []


def test_wrong_digest_keeps_a_previous_good_copy(server, tmp_path):
    base, root = server
    (root / "file.bin").write_bytes(b"tampered")
    good = b"previous good copy"
    target = tmp_path / "file.bin"
    target.write_bytes(good)
    with pytest.raises(CovidlensError, match="pinned SHA-256"):
        fetch(f"{base}/file.bin", target, "0" * 64, progress=False)
    assert target.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin", "served"]


def dead_url(name):
    """An address on a port that was free a moment ago and has nobody listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/{name}"


def test_unreachable_server_gives_one_sentence(tmp_path):
    with pytest.raises(CovidlensError, match="could not be reached") as caught:
        fetch(dead_url("file.bin"), tmp_path / "out" / "file.bin", progress=False)
    assert one_sentence(str(caught.value))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_missing_file_names_the_http_status(server, tmp_path):
    base, _ = server
    with pytest.raises(CovidlensError, match="HTTP 404") as caught:
        fetch(f"{base}/absent.bin", tmp_path / "out" / "absent.bin", "0" * 64, progress=False)
    assert one_sentence(str(caught.value))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def zip_bytes(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_download_dataset_unpacks_archives_and_returns_digests(server, tmp_path, monkeypatch):
    base, root = server
    archive = zip_bytes({"CT_COVID/a.png": b"A", "CT_COVID/b.png": b"B"})
    (root / "CT_COVID.zip").write_bytes(archive)
    (root / "trainCT_COVID.txt").write_bytes(b"a.png\n")
    pinned = hashlib.sha256(archive).hexdigest()
    monkeypatch.setitem(
        download.SOURCES,
        "tiny",
        [
            RemoteFile(f"{base}/CT_COVID.zip", ".", sha256=pinned, unzip=True),
            RemoteFile(f"{base}/trainCT_COVID.txt", "splits/COVID/trainCT_COVID.txt"),  # unpinned
        ],
    )
    folder = tmp_path / "data"
    digests = download_dataset("tiny", folder, progress=False)
    assert digests == {
        f"{base}/CT_COVID.zip": pinned,
        f"{base}/trainCT_COVID.txt": hashlib.sha256(b"a.png\n").hexdigest(),
    }
    assert (folder / "CT_COVID" / "a.png").read_bytes() == b"A"
    assert (folder / "CT_COVID" / "b.png").read_bytes() == b"B"
    assert (folder / "splits" / "COVID" / "trainCT_COVID.txt").read_bytes() == b"a.png\n"
    assert not (folder / ".downloads").exists()


def test_download_dataset_refuses_a_broken_archive(server, tmp_path, monkeypatch):
    base, root = server
    (root / "broken.zip").write_bytes(b"not a zip archive")
    monkeypatch.setitem(download.SOURCES, "broken", [RemoteFile(f"{base}/broken.zip", ".", unzip=True)])
    with pytest.raises(CovidlensError, match="not a valid zip archive"):
        download_dataset("broken", tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / ".downloads").exists()


def test_download_dataset_offline_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setitem(download.SOURCES, "offline", [RemoteFile(dead_url("CT_COVID.zip"), ".", unzip=True)])
    with pytest.raises(CovidlensError, match="could not be reached") as caught:
        download_dataset("offline", tmp_path / "data", progress=False)
    assert one_sentence(str(caught.value))
    assert [p for p in (tmp_path / "data").rglob("*")] == []


def test_unknown_source_is_named():
    with pytest.raises(CovidlensError, match="downloadable: covid-ct"):
        download_dataset("nope", "unused")
