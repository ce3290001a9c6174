"""``covidlens benchmark`` and the FLOP count it reports."""

from __future__ import annotations

import json

import pytest
import torch

from covidlens.cli import main
from covidlens.errors import CovidlensError
from covidlens.runtime import count_flops, gmacs
from covidlens.runtime.benchmark import benchmark_model, matmul_peak_gflops


def test_flops_of_a_convolution_and_a_linear_layer_are_the_textbook_numbers():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(8 * 16 * 16, 5))
    conv = 2 * 16 * 16 * 8 * 3 * 3 * 3
    linear = 2 * 8 * 16 * 16 * 5
    assert count_flops(net, 16) == conv + linear
    assert gmacs(net, 16) == pytest.approx((conv + linear) / 2e9)


def test_deformable_convolutions_are_counted():
    from covidlens.models.blocks import DeformConv2d

    layer = DeformConv2d(4, 6)
    kernel = 2 * 16 * 16 * 6 * 4 * 3 * 3
    offsets_and_masks = 2 * 16 * 16 * 27 * 4 * 3 * 3
    assert count_flops(layer, 16, in_channels=4) == kernel + offsets_and_masks


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_benchmark_reports_throughput_and_latency(backend):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    threads = torch.get_num_threads()
    r = benchmark_model("simple_cnn", input_size=32, batch_size=3, backend=backend, threads=1, warmup=1, iters=3)
    assert r.images_per_s > 0 and r.ms_per_image == pytest.approx(r.ms_per_batch / 3)
    assert r.ms_per_batch <= r.ms_per_batch_p90 and r.gmacs > 0 and r.params_m > 0
    assert torch.get_num_threads() == threads  # restored, not left at 1


def test_matmul_peak_is_a_positive_rate():
    assert matmul_peak_gflops(size=256, repeats=2) > 0.1


def test_cli_benchmark_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["benchmark", "--model", "simple_cnn", "vgg", "--input-size", "32", "--batch-size", "2",
                 "--warmup", "1", "--iters", "2", "--threads", "1", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["model", "backend"] and [line.split()[0] for line in table[1:]] == ["simple_cnn", "vgg"]
    saved = json.loads(out.read_text())
    assert [r["model"] for r in saved["results"]] == ["simple_cnn", "vgg"] and saved["machine"]["cores"] >= 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "resnet51"], "unknown model 'resnet51'"),
        (["--model", "simple_cnn", "--backend", "onnxruntime", "--channels-last"], "channels-last is a PyTorch memory format"),
        (["--model", "simple_cnn", "--iters", "0"], "at least 1 measured iteration"),
        (["--model", "simple_cnn", "--input-size", "8"], "input size from 16 to 4096"),
    ],
)
def test_bad_benchmark_input_is_one_sentence(argv, message, capsys):
    assert main(["benchmark", "--input-size", "32", *argv] if "--input-size" not in argv else ["benchmark", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("covidlens: error:") and len(err.splitlines()) == 1 and message in err


def test_cuda_benchmark_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(CovidlensError, match="no CUDA device"):
        benchmark_model("simple_cnn", input_size=32, device="cuda")
