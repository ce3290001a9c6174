"""``covidlens serve`` from the command line: one sentence for a wrong checkpoint, and the documented
``curl -F file=@scan.png .../v1/predict`` against a real server process, which SIGTERM stops cleanly
(port closed, requests finished, worker pool stopped)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from covidlens.cli import main
from tests.serve.conftest import CT_PNG


@pytest.mark.parametrize(
    "flags,message",
    [
        ([], "no model given and the store"),
        (["--ct-checkpoint", "{lesion}"], "is a CT segmentation model, but --ct-checkpoint needs a CT classifier."),
        (["--cxr-checkpoint", "{ct}"], "is a CT classification model, but --cxr-checkpoint needs a chest X-ray classifier."),
        (["--ct-checkpoint", "{ct}", "--lesion-checkpoint", "{cxr}"],
         "is a CXR classification model, but --lesion-checkpoint needs a CT lesion segmentation model."),
        (["--ct-checkpoint", "{ct}", "--cxr-lung-checkpoint", "{lesion}"],
         "is a CT segmentation model, but --cxr-lung-checkpoint needs a chest X-ray lung model."),
        (["--ct-checkpoint", "{ct}", "--port", "0"], "--port must be between 1 and 65535, not 0."),
    ],
)
def test_a_wrong_start_gives_one_sentence_and_exit_2(flags, message, checkpoints, capsys):
    argv = ["serve", *[f.format(**checkpoints) for f in flags]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_curl_against_covidlens_serve_and_a_clean_stop(checkpoints, data_root):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "covidlens.cli", "serve", "--ct-checkpoint", str(checkpoints["ct"]),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.communicate()
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "covidlens serve was not ready in 90 s"
            time.sleep(0.2)
        scan = data_root / CT_PNG
        if shutil.which("curl"):
            answer = subprocess.run(["curl", "-s", "-F", f"file=@{scan}", f"{url}/v1/predict"],
                                    capture_output=True, text=True, timeout=60, check=True).stdout
        else:
            answer = httpx.post(f"{url}/v1/predict", files={"file": scan.read_bytes()}, timeout=60).text
        body = json.loads(answer)
        assert body["decision"] in ("COVID", "NonCOVID") and body["modality"]["used"] == "ct"
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    # uvicorn shuts down cleanly, then re-raises the signal so the exit status says what stopped it
    assert server.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err and "covidlens serve stopped" in err
    assert f"covidlens serve: {url}/ (models: ct)" in out
    assert "predict: 1 file(s)" in err and "2020.01.24" not in err  # size and type logged, never the name
