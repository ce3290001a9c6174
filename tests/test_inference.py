"""Batched prediction over folders: decoding workers change nothing but speed."""

from __future__ import annotations

import pytest

from covidlens.checkpoint import load_checkpoint
from covidlens.inference import default_workers, iter_predictions, predict


@pytest.fixture(scope="module")
def tiny(tiny_run):
    return load_checkpoint(tiny_run / "model")


@pytest.fixture()
def mixed_folder(covid_ct, tmp_path):
    """Seven real slices and one text file named like an image, in a nested folder."""
    (tmp_path / "scans" / "more").mkdir(parents=True)
    for i, name in enumerate(sorted((covid_ct / "CT_NonCOVID").iterdir())[:4]):
        (tmp_path / "scans" / f"n{i}{name.suffix}").write_bytes(name.read_bytes())
    for i, name in enumerate(sorted((covid_ct / "CT_COVID").iterdir())[:3]):
        (tmp_path / "scans" / "more" / f"c{i}{name.suffix}").write_bytes(name.read_bytes())
    (tmp_path / "scans" / "n1_broken.png").write_text("not an image")
    return tmp_path / "scans"


def test_workers_give_the_same_rows_in_the_same_order(tiny, mixed_folder):
    alone = predict(tiny, [mixed_folder], batch_size=3, num_workers=0)
    workers = predict(tiny, [mixed_folder], batch_size=3, num_workers=2)
    assert [r.path for r in workers] == [r.path for r in alone] and len(alone) == 8
    assert [r.error != "" for r in alone].count(True) == 1
    broken = next(r for r in workers if r.error)
    assert broken.path.endswith("n1_broken.png") and "not an image" in broken.error
    for a, b in zip(alone, workers):
        assert a.label == b.label and (a.error or abs(a.probability - b.probability) < 1e-6)


def test_predictions_stream_before_the_folder_is_done(tiny, mixed_folder):
    rows = iter_predictions(tiny, [mixed_folder], batch_size=2, num_workers=1)
    first = next(rows)  # one batch decoded and scored, the rest not yet
    assert first.path.endswith(".png") or first.path.endswith(".jpg")
    assert len(list(rows)) == 7


def test_channels_last_gives_the_same_probabilities(tiny_run, mixed_folder):
    plain = predict(load_checkpoint(tiny_run / "model"), [mixed_folder], num_workers=0)
    fast = predict(load_checkpoint(tiny_run / "model"), [mixed_folder], num_workers=0, channels_last=True)
    assert max(abs(a.probability - b.probability) for a, b in zip(plain, fast) if not a.error) < 1e-5


def test_default_workers_start_none_for_a_single_batch():
    assert default_workers(10, 16) == 0
    assert 1 <= default_workers(1000, 16) <= 4


def test_mixed_precision_only_for_a_pytorch_model_on_a_gpu():
    import contextlib

    import torch

    from covidlens.inference import _mixed_precision

    assert isinstance(_mixed_precision(torch.nn.Linear(2, 1), torch.device("cpu")), contextlib.nullcontext)
    assert isinstance(_mixed_precision(object(), "cuda"), contextlib.nullcontext)  # ONNX Runtime's own


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_gpu_mixed_precision_stays_close_to_float32(tiny_run, mixed_folder):
    ckpt = load_checkpoint(tiny_run / "model", device="cuda")
    gpu = predict(ckpt, [mixed_folder], num_workers=0)
    cpu = predict(load_checkpoint(tiny_run / "model"), [mixed_folder], num_workers=0)
    for a, b in zip(gpu, cpu):
        assert a.error == b.error and (a.error or a.probability == pytest.approx(b.probability, abs=1e-2))
