"""The worker pool's batching: predict requests waiting together share one pass, each is answered on
its own, in order, and one bad request fails only itself."""

from __future__ import annotations

import asyncio
import threading

import pytest

from covidlens.serve.pool import Batchable, InferencePool


def _pool_with_gate():
    gate = threading.Event()
    calls: list[tuple[str, int]] = []

    def single(state, x):
        if x == "gate":
            gate.wait(10)
        calls.append(("single", 1))
        if x == "bad":
            raise ValueError("bad request")
        return x * 2 if isinstance(x, int) else x

    def many(state, requests):
        calls.append(("many", len(requests)))
        return [ValueError("bad request") if x == "bad" else x * 2 for (x,) in requests]

    return InferencePool(lambda i: None, workers=1, queue_size=16), Batchable(single, many, max_batch=4), gate, calls


def test_waiting_requests_share_one_pass_and_each_gets_its_own_answer():
    pool, job, gate, calls = _pool_with_gate()
    plain_calls = []

    def plain(state, x):
        plain_calls.append(x)
        return -x

    async def scenario():
        tickets = [pool.admit() for _ in range(8)]
        first = asyncio.ensure_future(tickets[0].run(job, "gate", timeout=20))
        await asyncio.sleep(0.2)  # the worker now holds the gate job; the others queue behind it
        runs = [asyncio.ensure_future(t.run(job, k, timeout=20)) for k, t in zip([1, 2, "bad", 4, 5], tickets[1:6])]
        other = asyncio.ensure_future(tickets[6].run(plain, 7, timeout=20))
        last = asyncio.ensure_future(tickets[7].run(job, 8, timeout=20))
        await asyncio.sleep(0.1)
        gate.set()
        return await first, await asyncio.gather(*runs, return_exceptions=True), await other, await last

    try:
        first, results, other, last = asyncio.run(scenario())
    finally:
        pool.shutdown(5)
    assert first == "gate"
    assert results[:2] == [2, 4] and isinstance(results[2], ValueError) and results[3:] == [8, 10]
    assert other == -7 and last == 16
    # Behind the gate: four share a pass (max_batch), the fifth its own pass; the plain job keeps its turn.
    assert calls == [("single", 1), ("many", 4), ("single", 1), ("single", 1)]
    assert plain_calls == [7]
    assert pool.admitted == 0


def test_batchable_refuses_an_empty_batch_size():
    with pytest.raises(ValueError):
        Batchable(lambda s: None, lambda s, r: [], max_batch=0)


def test_concurrent_predicts_through_the_server_match_a_lone_one(live_server, ct_models, real, monkeypatch):
    """Requests queued behind a held one are batched; each answer equals the lone request's."""
    import httpx

    from covidlens.serve import pipeline
    from tests.serve.conftest import CT_DICOM, CT_PNG

    server = live_server(ct_models, workers=1, queue_size=8)
    files = [("scan.png", real(CT_PNG), "image/png"), ("slice.dcm", real(CT_DICOM), "application/dicom")]

    def post(item):
        return httpx.post(f"{server.url}/v1/predict", files={"file": item}, timeout=60).json()

    alone = [post(item) for item in files]
    sizes: list[int] = []
    real_many = pipeline.predict_many

    def counted(models, requests):
        sizes.append(len(requests))
        return real_many(models, requests)

    monkeypatch.setattr(pipeline, "predict_many", counted)
    gate = threading.Event()
    real_job = pipeline.predict_job
    first = [True]

    def held(models, upload, options):
        if first[0]:
            first[0] = False
            gate.wait(20)
        return real_job(models, upload, options)

    monkeypatch.setattr(pipeline, "predict_job", held)
    answers: dict[int, dict] = {}
    threads = [threading.Thread(target=lambda k=k: answers.__setitem__(k, post(files[k % 2]))) for k in range(7)]
    threads[0].start()
    while server.app.state.pool.admitted < 1:
        threading.Event().wait(0.01)
    for thread in threads[1:]:
        thread.start()
    import time

    deadline = time.monotonic() + 30
    while server.app.state.pool._jobs.qsize() < 6:  # all six uploaded and waiting behind the held one
        assert time.monotonic() < deadline, "the requests did not reach the queue"
        time.sleep(0.01)
    gate.set()
    for thread in threads:
        thread.join(60)
    assert sizes and max(sizes) >= 2, "requests waiting together were not batched"
    for k, answer in answers.items():
        lone = alone[k % 2]
        assert answer["decision"] == lone["decision"]
        for name, p in lone["probabilities"].items():
            assert answer["probabilities"][name] == pytest.approx(p, abs=1e-5)


def test_onnxruntime_backend_gives_the_pytorch_answers(checkpoints, ct_models, client_for, real):
    """--backend onnxruntime: predict scores through an exported model, same probabilities to 1e-4;
    explain still runs (on PyTorch, which Grad-CAM needs)."""
    from covidlens.runtime import OnnxModel
    from covidlens.serve.pipeline import ServedModels
    from tests.serve.conftest import CT_PNG

    fast = ServedModels.load(ct=checkpoints["ct"], lesion=checkpoints["lesion"], backend="onnxruntime")
    assert isinstance(fast.runners["ct"], OnnxModel) and not ct_models.runners
    upload = {"file": ("scan.png", real(CT_PNG), "image/png")}
    torch_answer = client_for(ct_models).post("/v1/predict", files=upload).json()
    onnx_client = client_for(fast)
    onnx_answer = onnx_client.post("/v1/predict", files=upload).json()
    assert onnx_answer["decision"] == torch_answer["decision"]
    for name, p in torch_answer["probabilities"].items():
        assert onnx_answer["probabilities"][name] == pytest.approx(p, abs=1e-4)
    explained = onnx_client.post("/v1/explain", files=upload)
    assert explained.status_code == 200 and explained.json()["explanation"]["overlay_png"]
