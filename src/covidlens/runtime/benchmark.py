"""Images per second and latency of a registered model after warm-up, on PyTorch or ONNX Runtime.

Like timm's ``benchmark.py``: a random batch of the chosen size is run ``warmup`` times unmeasured,
then ``iters`` times measured one by one; the result gives the median time per batch, the images per
second it implies and the time per image. Decoding is not included: this measures the model alone
(``benchmarks/speed.py`` measures whole prediction paths).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass

import torch

from covidlens.checkpoint import ModelInfo
from covidlens.errors import CovidlensError
from covidlens.models import create_model, get_model_spec
from covidlens.runtime.backends import check_backend
from covidlens.runtime.flops import count_flops
from covidlens.runtime.onnx import OnnxModel, onnx_model, onnx_session, require_onnxruntime


@dataclass
class BenchmarkResult:
    model: str
    task: str
    backend: str
    device: str
    input_size: int
    batch_size: int
    #: Intra-op threads asked for (None: the engine's default, one per core).
    threads: int | None
    channels_last: bool
    warmup: int
    iters: int
    params_m: float
    #: Billions of multiply-adds per image (what papers call GFLOPs); real FLOPs are twice this.
    gmacs: float
    images_per_s: float
    #: Median wall time of one batch, and that time shared over its images.
    ms_per_batch: float
    ms_per_image: float
    #: Slowest decile of batch times: how steady the measurement was.
    ms_per_batch_p90: float


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """PyTorch's intra-op thread count set for the duration, then restored."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise CovidlensError(f"threads must be at least 1, got {threads}.")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_calls(fn, warmup: int, iters: int, synchronize=None) -> list[float]:
    """Seconds taken by each of ``iters`` calls of ``fn()`` after ``warmup`` unmeasured ones."""
    if warmup < 0 or iters < 1:
        raise CovidlensError(f"need warm-up >= 0 and at least 1 measured iteration, got {warmup} and {iters}.")
    for _ in range(warmup):
        fn()
    if synchronize:
        synchronize()
    times = []
    for _ in range(iters):
        started = time.perf_counter()
        fn()
        if synchronize:
            synchronize()
        times.append(time.perf_counter() - started)
    return times


def matmul_peak_gflops(size: int = 4096, threads: int | None = None, device: str = "cpu", repeats: int = 5) -> float:
    """Measured float32 arithmetic peak in GFLOP/s: the best of ``repeats`` ``size x size`` matrix
    products (2 size^3 FLOPs each), which BLAS runs close to the hardware's limit."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else None
    with torch_threads(threads):
        times = time_calls(lambda: a @ b, warmup=1, iters=repeats, synchronize=sync)
    return 2 * size**3 / min(times) / 1e9


def benchmark_model(
    name: str,
    input_size: int | None = None,
    batch_size: int = 16,
    backend: str = "torch",
    threads: int | None = None,
    device: str = "cpu",
    channels_last: bool = False,
    warmup: int = 5,
    iters: int = 20,
    num_classes: int = 2,
) -> BenchmarkResult:
    """Time ``name`` from the registry (random weights: speed does not depend on them) on a random
    ``batch_size x 3 x input_size x input_size`` batch; ``input_size`` None is the model's own."""
    check_backend(backend)
    spec = get_model_spec(name)
    size = input_size or spec.input_size
    if not 16 <= size <= 4096 or batch_size < 1:
        raise CovidlensError(f"need an input size from 16 to 4096 pixels and a batch of at least 1, "
                             f"got {size} and {batch_size}.")
    if device not in ("cpu", "cuda"):
        raise CovidlensError(f"unknown device {device!r}; choose cpu or cuda.")
    if device == "cuda" and backend == "torch" and not torch.cuda.is_available():
        raise CovidlensError("no CUDA device is available to PyTorch here; use --device cpu.")
    if channels_last and backend != "torch":
        raise CovidlensError("channels-last is a PyTorch memory format; ONNX Runtime chooses its own layout.")
    if backend == "onnxruntime":
        require_onnxruntime()
    model = create_model(name, num_classes=num_classes, pretrained=False).eval()
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    macs = count_flops(model, size) / 2e9
    batch = torch.randn(batch_size, 3, size, size)
    sync = None
    with torch_threads(threads):
        if backend == "torch":
            memory_format = torch.channels_last if channels_last else torch.contiguous_format
            model = model.to(device, memory_format=memory_format)
            batch = batch.to(device, memory_format=memory_format)
            sync = torch.cuda.synchronize if device == "cuda" else None

            def run():
                with torch.inference_mode():
                    model(batch)
        else:
            session = onnx_session(onnx_model(model, size, 3, f"model {name!r}").SerializeToString(), threads, device)
            runner = OnnxModel(session, _bench_info(name, size))

            def run():
                runner(batch)

        times = time_calls(run, warmup, iters, sync)
    median = statistics.median(times)
    p90 = sorted(times)[min(len(times) - 1, int(0.9 * len(times)))]
    return BenchmarkResult(
        model=name, task=spec.task, backend=backend, device=device, input_size=size, batch_size=batch_size,
        threads=threads, channels_last=channels_last, warmup=warmup, iters=iters, params_m=params_m, gmacs=macs,
        images_per_s=batch_size / median, ms_per_batch=1e3 * median, ms_per_image=1e3 * median / batch_size,
        ms_per_batch_p90=1e3 * p90,
    )


def _bench_info(name: str, size: int) -> ModelInfo:
    """A description that lets :class:`OnnxModel` check the graph's input shape."""
    return ModelInfo(model=name, classes=["a", "b"], input_size=size, mean=[0.0] * 3, std=[1.0] * 3, num_outputs=2)
