"""Benchmark: does the training loader keep up with the model? (issue 13)

    python benchmarks/loader_speed.py --data-root ../shared/data --out reports/loader_speed \
        [--model efficientnet_lite0] [--input-size 224] [--batch-size 16] [--workers 0 1] [--threads 2]

The training loader of ``covidlens train`` (:class:`covidlens.data.datamodule.ImageDataset` under
:func:`~covidlens.data.datamodule.make_loader`, the COVID-CT official training split, the
classification train preset at ``--input-size``) runs two epochs on its own for each worker count:
the first decodes every file, the second is served by the in-memory cache of decoded slices (keyed
by file and slice; the random crop, flip and jitter still run each epoch, as they must). The files
read in each epoch are counted, so "an epoch after the first reads no image files" is checked, not
assumed. Beside it, the model's own training speed: forward, loss and backward plus an AdamW step on
random batches of the same shape, after warm-up, on ``--threads`` threads.

Writes ``loader_speed.json`` and ``loader_speed.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from covidlens.data.datamodule import ImageDataset, make_loader
from covidlens.data.datasets import load_dataset
from covidlens.data.sets.core import Sample
from covidlens.data.transforms import TrainPreset
from covidlens.models import create_model
from covidlens.runtime.benchmark import time_calls, torch_threads

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class CountingSample(Sample):
    """A sample that counts how often its file is decoded (one counter shared by the epoch)."""

    reads = 0

    def image(self):
        CountingSample.reads += 1
        return super().image()


def loader_epochs(samples, size: int, batch_size: int, workers: int, epochs: int = 2) -> list[dict]:
    counted = [CountingSample(**{f: getattr(s, f) for f in s.__dataclass_fields__}) for s in samples]
    dataset = ImageDataset(counted, TrainPreset(size, *IMAGENET, in_channels=3))
    loader = make_loader(dataset, batch_size, train=True, num_workers=workers)
    rows = []
    for epoch in range(epochs):
        CountingSample.reads = 0
        start, images = time.perf_counter(), 0
        for batch, _ in loader:
            images += batch.shape[0]
        seconds = time.perf_counter() - start
        # Worker processes decode in their own copies of the class; their reads are not counted here.
        reads = CountingSample.reads if workers == 0 else None
        rows.append({"epoch": epoch + 1, "workers": workers, "images": images, "seconds": seconds,
                     "images_per_s": images / seconds, "files_read": reads})
        print(f"loader workers={workers} epoch {epoch + 1}: {images / seconds:.0f} images/s "
              f"({images} images, files read: {'n/a (in workers)' if reads is None else reads})", flush=True)
    return rows


def model_training_speed(name: str, size: int, batch_size: int, threads: int, iters: int) -> dict:
    model = create_model(name, num_classes=1)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randn(batch_size, 3, size, size)
    target = torch.randint(0, 2, (batch_size, 1)).float()

    def step():
        optimiser.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), target)
        loss.backward()
        optimiser.step()

    with torch_threads(threads):
        seconds = time_calls(step, warmup=2, iters=iters)
    per_batch = sorted(seconds)[len(seconds) // 2]
    print(f"model {name} training: {batch_size / per_batch:.1f} images/s (median of {iters} steps)", flush=True)
    return {"model": name, "threads": threads, "batch_size": batch_size, "median_step_s": per_batch,
            "images_per_s": batch_size / per_batch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, help="folder holding ct/covid-ct (default $COVIDLENS_DATA)")
    parser.add_argument("--out", type=Path, default=Path("reports/loader_speed"))
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=2, help="threads for the model's training step")
    parser.add_argument("--iters", type=int, default=10, help="timed training steps")
    args = parser.parse_args(argv)
    samples = load_dataset("covid-ct", args.data_root).split("train")
    loader = [row for w in args.workers for row in loader_epochs(samples, args.input_size, args.batch_size, w)]
    model = model_training_speed(args.model, args.input_size, args.batch_size, args.threads, args.iters)
    cached = max(r["images_per_s"] for r in loader if r["epoch"] > 1)
    report = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads available",
              "train_images": len(samples), "input_size": args.input_size, "loader": loader, "model": model,
              "cached_loader_over_model": cached / model["images_per_s"]}
    lines = [f"# Training loader against the model ({len(samples)} COVID-CT training slices, {args.input_size} px)", "",
             "| loader workers | epoch | images/s | files read |", "|---|---|---|---|"]
    for r in loader:
        lines.append(f"| {r['workers']} | {r['epoch']} | {r['images_per_s']:.0f} | "
                     f"{'n/a (in workers)' if r['files_read'] is None else r['files_read']} |")
    lines += ["", f"Model training step ({args.model}, batch {args.batch_size}, {args.threads} threads): "
              f"{model['images_per_s']:.1f} images/s. Cached loader / model: {report['cached_loader_over_model']:.1f}x."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loader_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "loader_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
