"""Benchmark: CPU inference speed of covidlens's prediction paths, side by side in one run (issue 13).

    python benchmarks/speed.py --out reports/speed            # the real measurement, on an idle machine
    python benchmarks/speed.py --out /tmp/speed --images 8 --iters 3 --models simple_cnn --seed003   # smoke

For each model (default EfficientNet-Lite0 and ResNet18 at 224 px) on the official COVID-CT test
slices, in one process:

* whole paths, files in and probabilities out: the seed-style loop (one image at a time, PIL decode
  and torchvision transforms in the loop, eager PyTorch under ``no_grad``), covidlens's batched
  ``iter_predictions`` (DataLoader workers decode and resize while the model runs, ``inference_mode``)
  on PyTorch, on PyTorch channels-last, on ONNX Runtime and on ONNX Runtime int8;
* the model alone on decoded batches: eager PyTorch, channels-last, ONNX Runtime float32, and int8
  through ``onnxruntime.quantization`` (dynamic: weights int8, activations quantised per batch;
  static: QDQ per channel, calibrated on COVID-CT training slices);
* for each row its images/s, ms per image, speed-up over the seed loop, and the fraction of this
  CPU's arithmetic peak it reaches: model FLOPs x images/s against the float32 rate of a large
  matrix product measured in the same run.

``--seed003`` adds seed 003's FPS table on this CPU: ResNet50 and the improved ResNet50
(``resnet50_fpn_attention``), one image at a time and batched, beside the seed's reported figures.
Weights are random (speed does not depend on them) unless ``--checkpoint DIR`` gives a trained
model, which also makes the int8 rows' probability differences meaningful. Writes ``speed.json``
and ``speed.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from PIL import Image
from torchvision import transforms

from covidlens.checkpoint import Checkpoint, ModelInfo, load_checkpoint
from covidlens.data.datasets import dataset_folder
from covidlens.data.io import read_image
from covidlens.evaluation.metrics import binary_metrics, bootstrap_ci, paired_bootstrap_difference
from covidlens.inference import batch_probabilities, default_workers, eval_transform, iter_predictions
from covidlens.models import create_model, get_model_spec
from covidlens.runtime import OnnxModel, count_flops
from covidlens.runtime.benchmark import matmul_peak_gflops, time_calls, torch_threads
from covidlens.runtime.onnx import onnx_model, onnx_session

#: Seed 003's Table (TensorFlow 2.4 on an HP Z8 G4 workstation; GPU an RTX 2080 Ti), frames per second.
SEED_003_FPS = {"resnet50": {"cpu": 7.89, "gpu": 23.52}, "resnet50_fpn_attention": {"cpu": 12.75, "gpu": 39.56}}


def official_test_slices(root: str | None, limit: int) -> list[Path]:
    """The official COVID-CT test slices, the two classes interleaved, at most ``limit``."""
    folder = dataset_folder("covid-ct", root)
    lists = [[folder / sub / n for n in (folder / "splits" / cls / f"testCT_{cls}.txt").read_text().split()]
             for cls, sub in (("COVID", "CT_COVID"), ("NonCOVID", "CT_NonCOVID"))]
    mixed = [p for pair in zip(*lists) for p in pair] + lists[0][len(lists[1]):] + lists[1][len(lists[0]):]
    return mixed[:limit]


def train_slices(root: str | None, limit: int) -> list[Path]:
    folder = dataset_folder("covid-ct", root)
    names = (folder / "splits" / "COVID" / "trainCT_COVID.txt").read_text().split()[: limit // 2]
    others = (folder / "splits" / "NonCOVID" / "trainCT_NonCOVID.txt").read_text().split()[: limit - len(names)]
    return [folder / "CT_COVID" / n for n in names] + [folder / "CT_NonCOVID" / n for n in others]


def checkpoint_for(name: str, size: int, trained: dict[str, Path]) -> Checkpoint:
    """A trained checkpoint when one was given for ``name``, else the architecture with random weights."""
    if name in trained:
        return load_checkpoint(trained[name])
    spec = get_model_spec(name)
    info = ModelInfo(model=name, classes=["NonCOVID", "COVID"], positive_class="COVID", input_size=size,
                     mean=list(spec.mean), std=list(spec.std))
    return Checkpoint(create_model(name, num_classes=1, pretrained=False).eval(), info, Path(f"<random {name}>"))


def seed_loop(ckpt: Checkpoint, files: list[Path], warmup: int) -> tuple[float, np.ndarray]:
    """Seconds per image of the seed-style loop, and its P(positive) per file."""
    info = ckpt.info
    preprocess = transforms.Compose([transforms.Resize((info.input_size, info.input_size)), transforms.ToTensor(),
                                     transforms.Normalize(info.mean, info.std)])
    model = ckpt.model.eval()

    def one(path):
        x = preprocess(Image.open(path).convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            return torch.sigmoid(model(x))[0, 0].item()

    for path in files[:warmup]:
        one(path)
    started = time.perf_counter()
    probs = [one(path) for path in files]
    return (time.perf_counter() - started) / len(files), np.array(probs)


def predict_path(source, files: list[Path], batch_size: int, workers: int, channels_last: bool = False):
    """Seconds per image of ``iter_predictions`` over ``files`` (after one warm-up batch), and P(positive)."""
    # No flip test-time augmentation, whatever the checkpoint says: the seed loop does one pass per image.
    list(iter_predictions(source, files[:batch_size], batch_size=batch_size, tta=False, num_workers=0,
                          channels_last=channels_last))
    started = time.perf_counter()
    rows = list(iter_predictions(source, files, batch_size=batch_size, tta=False, num_workers=workers,
                                 channels_last=channels_last))
    elapsed = time.perf_counter() - started
    failed = [r for r in rows if r.error]
    if failed:
        raise SystemExit(f"error: {failed[0].path}: {failed[0].error}")
    return elapsed / len(files), np.array([r.probability for r in rows])


def model_only(fn, batch: torch.Tensor, warmup: int, iters: int) -> float:
    """Median seconds per image of ``fn(batch)`` on decoded tensors."""
    return statistics.median(time_calls(lambda: fn(batch), warmup, iters)) / len(batch)


class CalibrationImages:
    """Feeds ONNX Runtime's static quantiser real slices, preprocessed as for prediction."""

    def __init__(self, files: list[Path], info: ModelInfo, batch_size: int):
        transform = eval_transform(info)
        tensors = [transform(read_image(p)) for p in files]
        self.batches = iter([torch.stack(tensors[i : i + batch_size]).numpy() for i in range(0, len(tensors), batch_size)])

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {"image": batch}


def quantised(fp32: Path, kind: str, calibration: CalibrationImages | None) -> Path:
    """An int8 copy of ``fp32`` by onnxruntime.quantization (after its recommended pre-processing)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = fp32.with_name(fp32.stem + "-prep.onnx")
    quant_pre_process(str(fp32), str(prepared))
    out = fp32.with_name(f"{fp32.stem}-int8-{kind}.onnx")
    if kind == "dynamic":
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8)
    else:
        quantize_static(str(prepared), str(out), calibration, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def measure_model(name: str, args, files, peak: float, trained, scratch: Path) -> list[dict]:
    ckpt = checkpoint_for(name, args.size, trained)
    info = ckpt.info
    flops = count_flops(ckpt.model, info.input_size, info.in_channels)
    rows: list[dict] = []

    labels = np.array([int(f.parent.name == "CT_COVID") for f in files])
    scored = name in trained and 0 < labels.sum() < len(labels)

    def row(path: str, kind: str, seconds: float, probs: np.ndarray | None = None, reference=None):
        rate = 1.0 / seconds
        rows.append({
            "model": name, "path": path, "kind": kind, "input_size": info.input_size, "images_per_s": rate,
            "ms_per_image": 1e3 * seconds, "fraction_of_peak": flops * rate / (peak * 1e9),
            "max_abs_dp_vs_fp32": None if probs is None or reference is None else float(np.abs(probs - reference).max()),
        })
        if scored and probs is not None:
            # A trained model: does this path keep its test AUC? (images resampled; the paired
            # difference is against the path this row derives from, on the same resamples)
            rows[-1]["auc"] = binary_metrics(labels, probs)["auc"]
            rows[-1]["auc_ci95"] = list(bootstrap_ci(labels, probs)["auc"])
            if reference is not None:
                rows[-1]["dauc_vs_reference"] = list(paired_bootstrap_difference(labels, probs, reference))
        print(json.dumps(rows[-1]), flush=True)

    seed_s, seed_p = seed_loop(ckpt, files, args.warmup)
    row("seed loop (1 image, PIL in loop, eager)", "end-to-end", seed_s)
    s, torch_p = predict_path(ckpt, files, args.batch_size, args.workers)
    row(f"predict, PyTorch (batch {args.batch_size})", "end-to-end", s, torch_p, seed_p)
    s, p = predict_path(ckpt, files, args.batch_size, args.workers, channels_last=True)
    row("predict, PyTorch channels-last", "end-to-end", s, p, torch_p)
    ckpt.model.to(memory_format=torch.contiguous_format)

    fp32 = scratch / f"{name}.onnx"
    fp32.write_bytes(onnx_model(ckpt.model, info.input_size, info.in_channels, name).SerializeToString())
    sessions = {"ONNX Runtime fp32": fp32}
    for kind in args.int8:
        calibration = CalibrationImages(train_slices(args.data, args.calibration), info, args.batch_size)
        try:
            sessions[f"ONNX Runtime int8 {kind}"] = quantised(fp32, kind, calibration if kind == "static" else None)
        except Exception as exc:  # report the quantiser's refusal as a row note rather than stop the run
            rows.append({"model": name, "path": f"ONNX Runtime int8 {kind}", "kind": "failed",
                         "error": str(exc).splitlines()[0]})
    runners = {label: OnnxModel(onnx_session(path, args.threads), info) for label, path in sessions.items()}
    for label, runner in runners.items():
        s, p = predict_path(runner, files, args.batch_size, args.workers)
        row(f"predict, {label}", "end-to-end", s, p, torch_p)

    transform = eval_transform(info)
    batch = torch.stack([transform(read_image(p)) for p in files[: args.batch_size]])
    net = ckpt.model

    def eager(x):
        with torch.no_grad():
            return net(x)

    row(f"model only, eager PyTorch (batch {len(batch)})", "model", model_only(eager, batch, args.warmup, args.iters))
    net.to(memory_format=torch.channels_last)
    row("model only, PyTorch channels-last + inference_mode", "model",
        model_only(lambda x: batch_probabilities(net, x, info), batch.to(memory_format=torch.channels_last),
                   args.warmup, args.iters))
    net.to(memory_format=torch.contiguous_format)
    for label, runner in runners.items():
        row(f"model only, {label}", "model", model_only(runner, batch, args.warmup, args.iters))
    for r in rows:
        if r.get("images_per_s"):
            r["speedup_vs_seed_loop"] = r["images_per_s"] * seed_s
    return rows


def seed003_rows(args, peak: float) -> list[dict]:
    """Seed 003's FPS table on this machine: one image at a time (FPS as the seed reports it) and batched."""
    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name in SEED_003_FPS:
        for device in devices:
            model = create_model(name, num_classes=1, pretrained=False).eval().to(device)
            flops = count_flops(model, 224)
            sync = torch.cuda.synchronize if device == "cuda" else None
            for batch_size in (1, args.batch_size):
                x = torch.randn(batch_size, 3, 224, 224, device=device)

                def run():
                    with torch.inference_mode():
                        model(x)

                seconds = statistics.median(time_calls(run, args.warmup, args.iters, sync)) / batch_size
                rows.append({"model": name, "device": device, "batch_size": batch_size, "fps": 1 / seconds,
                             "gflops_per_image": flops / 1e9, "seed_reported_fps": SEED_003_FPS[name][device],
                             "fraction_of_peak": flops / seconds / (peak * 1e9) if device == "cpu" else None})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"# Inference speed on {m['cpu']} ({m['cores']} cores, {m['threads']} threads), one run",
        "",
        f"float32 peak measured by a {m['peak_matmul_size']}² matrix product: **{m['peak_gflops']:.1f} GFLOP/s**. "
        f"{m['images']} official COVID-CT test slices, batch {m['batch_size']}, decoding workers: {m['workers']}.",
        "",
        "| model | path | images/s | ms/image | x seed loop | % of peak | max abs dP | test AUC [95% CI], Δ vs its reference (trained models) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r["kind"] == "failed":
            lines.append(f"| {r['model']} | {r['path']} | failed: {r['error']} | | | | | |")
            continue
        dp = "-" if r["max_abs_dp_vs_fp32"] is None else f"{r['max_abs_dp_vs_fp32']:.1e}"
        auc = "-"
        if "auc" in r:
            auc = f"{r['auc']:.3f} [{r['auc_ci95'][0]:.3f}, {r['auc_ci95'][1]:.3f}]"
            if "dauc_vs_reference" in r:
                d, lo, hi = r["dauc_vs_reference"]
                auc += f", Δ {d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        lines.append(f"| {r['model']} | {r['path']} | {r['images_per_s']:.1f} | {r['ms_per_image']:.1f} | "
                     f"{r['speedup_vs_seed_loop']:.2f} | {100 * r['fraction_of_peak']:.1f} | {dp} | {auc} |")
    lines += ["", "max abs dP: largest difference in P(COVID) from the row it derives from (predict PyTorch "
              "against the seed loop, the others against predict PyTorch); on random weights it shows only "
              "that the paths compute the same function. % of peak: model FLOPs x images/s against the float32 "
              "peak; int8 rows can pass 100 %, their arithmetic is not float32.", ""]
    if result["seed003"]:
        lines += ["## Seed 003's FPS table, measured here", "",
                  "| model | device | batch | FPS here | seed's FPS | GFLOPs/image (2 per multiply-add) | % of peak |",
                  "|---|---|---|---|---|---|---|"]
        for r in result["seed003"]:
            peak = "-" if r["fraction_of_peak"] is None else f"{100 * r['fraction_of_peak']:.1f}"
            lines.append(f"| {r['model']} | {r['device']} | {r['batch_size']} | {r['fps']:.1f} | "
                         f"{r['seed_reported_fps']} | {r['gflops_per_image']:.2f} | {peak} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet18"])
    parser.add_argument("--size", type=int, default=224, help="input size in pixels (default 224)")
    parser.add_argument("--images", type=int, default=203, help="COVID-CT test slices to run (default all 203)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding workers (default: one per spare core)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: one per core)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured runs before each timing")
    parser.add_argument("--iters", type=int, default=20, help="measured batches of the model-only rows")
    parser.add_argument("--int8", nargs="*", default=["dynamic", "static"], choices=["dynamic", "static"],
                        help="ONNX Runtime int8 variants to add (none: pass the flag alone)")
    parser.add_argument("--calibration", type=int, default=64, help="training slices for static int8 calibration")
    parser.add_argument("--seed003", action=argparse.BooleanOptionalAction, default=True,
                        help="add seed 003's FPS table (ResNet50 against the improved ResNet50)")
    parser.add_argument("--peak-size", type=int, default=4096, help="side of the matrices that measure the peak")
    parser.add_argument("--checkpoint", action="append", default=[], help="trained checkpoint to use for its model")
    parser.add_argument("--data", default=None, help="data root (default $COVIDLENS_DATA)")
    parser.add_argument("--out", default="reports/speed")
    args = parser.parse_args()
    if not dataset_folder("covid-ct", args.data).is_dir():
        print(f"skipped: COVID-CT not found at {dataset_folder('covid-ct', args.data)}", file=sys.stderr)
        return 0
    files = official_test_slices(args.data, args.images)
    args.workers = default_workers(len(files), args.batch_size) if args.workers is None else args.workers
    trained = {}
    for folder in args.checkpoint:
        ckpt = load_checkpoint(folder)
        trained[ckpt.info.model] = Path(folder)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with torch_threads(args.threads), tempfile.TemporaryDirectory() as scratch:
        peak = matmul_peak_gflops(args.peak_size)
        print(f"float32 peak: {peak:.1f} GFLOP/s", flush=True)
        rows = [r for name in args.models for r in measure_model(name, args, files, peak, trained, Path(scratch))]
        seed003 = seed003_rows(args, peak) if args.seed003 else []
        threads = torch.get_num_threads()
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": threads,
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "peak_gflops": peak,
                    "peak_matmul_size": args.peak_size, "images": len(files), "workers": args.workers,
                    "batch_size": args.batch_size, "weights": {m: str(trained.get(m, "random")) for m in args.models}},
        "rows": rows,
        "seed003": seed003,
    }
    (out / "speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "speed.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
