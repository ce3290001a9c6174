"""Faults of issue 12: a full queue, a client that leaves mid-upload, a request that times out, a
worker that raises, and a shutdown with a request in flight; after each the server answers the next
request correctly."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from covidlens.serve import pipeline
from tests.serve.conftest import CT_PNG

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _post(base_url: str, content: bytes, timeout: float = 30.0) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/predict", files={"file": ("scan.png", content, "image/png")}, timeout=timeout)


def _answers_correctly(base_url: str, content: bytes) -> None:
    response = _post(base_url, content)
    assert response.status_code == 200, response.text
    assert response.json()["decision"] in ("COVID", "NonCOVID")


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _held_job(monkeypatch):
    """predict_job and predict_many wait for the returned event before doing the real work.

    Both are held: requests that reach the queue before the worker takes the first one are run
    together through predict_many, and holding only predict_job let such a pair finish at once (the
    full-queue test then never saw two requests admitted, a race CI lost once)."""
    release = threading.Event()
    real_job, real_many = pipeline.predict_job, pipeline.predict_many

    def held(models, upload, options):
        release.wait(20)
        return real_job(models, upload, options)

    def held_many(models, requests):
        release.wait(20)
        return real_many(models, requests)

    monkeypatch.setattr(pipeline, "predict_job", held)
    monkeypatch.setattr(pipeline, "predict_many", held_many)
    return release


def test_a_full_queue_answers_503_with_retry_after(live_server, ct_models, real, monkeypatch):
    server = live_server(ct_models, workers=1, queue_size=1)
    pool = server.app.state.pool
    release = _held_job(monkeypatch)
    first: list[httpx.Response] = []
    waiting = [threading.Thread(target=lambda: first.append(_post(server.url, real(CT_PNG)))) for _ in range(2)]
    for thread in waiting:
        thread.start()
    _wait_for(lambda: pool.admitted == 2)
    busy = _post(server.url, real(CT_PNG))
    assert busy.status_code == 503
    assert int(busy.headers["Retry-After"]) >= 1
    assert busy.json()["error"]["message"].startswith("The server is busy")
    release.set()
    for thread in waiting:
        thread.join(30)
    assert [r.status_code for r in first] == [200, 200]  # the admitted ones are served, in order
    monkeypatch.undo()
    _answers_correctly(server.url, real(CT_PNG))


def test_a_client_that_disconnects_mid_upload_frees_its_slot(live_server, ct_models, real):
    server = live_server(ct_models, workers=1, queue_size=0)
    pool = server.app.state.pool
    image = real(CT_PNG)
    boundary = "cut"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'.encode()
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(
            f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(head) + len(image) + 100}\r\n\r\n".encode() + head + image[: len(image) // 3]
        )
        _wait_for(lambda: pool.admitted == 1)
    _wait_for(lambda: pool.admitted == 0)  # with queue 0, a leaked slot would make the next request 503
    _answers_correctly(server.url, image)


def test_a_request_that_times_out_gets_504_and_the_next_is_answered(client_for, ct_models, real, monkeypatch):
    client = client_for(ct_models, request_timeout_s=0.3)
    release = _held_job(monkeypatch)
    slow = client.post("/v1/predict", files={"file": real(CT_PNG)})
    assert slow.status_code == 504
    assert "took longer than this server allows (0.3 s)" in slow.json()["error"]["message"]
    release.set()
    monkeypatch.undo()
    pool = client.app.state.pool
    _wait_for(lambda: pool.admitted == 0)
    good = client.post("/v1/predict", files={"file": real(CT_PNG)})
    assert good.status_code == 200, good.text


def test_a_worker_that_raises_gives_500_and_the_worker_lives_on(client_for, ct_models, real, monkeypatch, caplog):
    client = client_for(ct_models, workers=1)

    def broken(models, upload, options):
        raise RuntimeError("simulated failure inside the model")

    monkeypatch.setattr(pipeline, "predict_job", broken)
    caplog.set_level("ERROR", logger="covidlens.serve")
    failed = client.post("/v1/predict", files={"file": real(CT_PNG)})
    assert failed.status_code == 500
    assert failed.json()["error"] == {
        "code": "internal_error",
        "message": "The server failed on this scan (the error is in its log); try again, and report it if it happens again.",
    }
    assert "simulated failure inside the model" in caplog.text  # in the log, not in the answer
    monkeypatch.undo()
    good = client.post("/v1/predict", files={"file": real(CT_PNG)})
    assert good.status_code == 200, good.text


def test_shutdown_finishes_the_request_in_flight(live_server, ct_models, real, monkeypatch):
    server = live_server(ct_models, workers=1, queue_size=2)
    pool = server.app.state.pool
    release = _held_job(monkeypatch)
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(_post(server.url, real(CT_PNG))))
    thread.start()
    _wait_for(lambda: pool.admitted == 1)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    time.sleep(0.3)
    release.set()
    thread.join(30)
    stopper.join(30)
    assert answers and answers[0].status_code == 200, answers
    assert not pool.accepting
