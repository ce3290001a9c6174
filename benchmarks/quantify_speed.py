"""Benchmark: seconds per scan for lesion quantification on CPU (issue 13).

    python benchmarks/quantify_speed.py --checkpoint LESION_RUN/model --data-root ../shared/data \
        --out reports/quantify_speed [--threads 2]

Two inputs, both real CT in Hounsfield units from COVID-CT-MD:

- a 300-slice volume: the 168 slices of ``cap001.nii.gz`` followed by the first 132 of ``P001.nii.gz``
  (256 x 256 each, stacked in a temporary NIfTI with cap001's spacing; two patients, so only the
  timing means anything, not the measures);
- the 40-file full-resolution DICOM series of P001 (512 x 512), whose seconds per slice are also
  given times 300, as a 512 px scan of 300 slices would take.

Each is quantified once to warm up and then timed ``--repeats`` times (median) through
:func:`covidlens.quantify_scan` without writing outputs: reading, the HU lung mask, the lesion model
slice by slice in batches, and the measures. Writes ``quantify_speed.json`` and ``.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from covidlens.checkpoint import load_checkpoint
from covidlens.measure.quantify import quantify_scan


def stacked_volume(volumes: Path, folder: Path, depth: int = 300) -> Path:
    first, second = nib.load(volumes / "cap001.nii.gz"), nib.load(volumes / "P001.nii.gz")
    a, b = np.asarray(first.dataobj), np.asarray(second.dataobj)
    if a.shape[:2] != b.shape[:2]:
        raise SystemExit(f"cap001 is {a.shape[:2]} in-plane but P001 is {b.shape[:2]}; cannot stack them.")
    data = np.concatenate([a, b], axis=2)[:, :, :depth]
    path = folder / f"stack{depth}.nii.gz"
    image = nib.Nifti1Image(data.astype(np.int16), first.affine)
    image.header.set_zooms(first.header.get_zooms()[:3])
    nib.save(image, path)
    return path


def time_scan(path: Path, ckpt, repeats: int) -> dict:
    result = quantify_scan(path, ckpt, progress=False)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        quantify_scan(path, ckpt, progress=False)
        seconds.append(time.perf_counter() - start)
    median = sorted(seconds)[len(seconds) // 2]
    print(f"{path.name}: {result.n_slices} slices, {median:.1f} s (median of {repeats}), "
          f"{median / result.n_slices * 1000:.0f} ms per slice", flush=True)
    return {"scan": path.name, "slices": result.n_slices, "lung_slices": result.n_lung_slices,
            "seconds": seconds, "median_s": median, "ms_per_slice": median / result.n_slices * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="lesion segmentation checkpoint folder")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("reports/quantify_speed"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    md = args.data_root / "ct" / "covid-ct-md"
    with tempfile.TemporaryDirectory() as tmp:
        stack = time_scan(stacked_volume(md / "volumes", Path(tmp)), ckpt, args.repeats)
    series = time_scan(md / "dicom-series" / "P001", ckpt, args.repeats)
    series["seconds_for_300_slices"] = series["ms_per_slice"] * 300 / 1000
    report = {"machine": f"{platform.machine()}, {args.threads} torch threads", "checkpoint": str(args.checkpoint),
              "model": ckpt.info.model, "input_size": ckpt.info.input_size, "stack300": stack, "dicom_series": series}
    lines = [f"# Lesion quantification speed ({ckpt.info.model}, {ckpt.info.input_size} px, {args.threads} threads)", "",
             "| scan | slices | slices with lung | seconds (median) | ms per slice | seconds for 300 slices |",
             "|---|---|---|---|---|---|",
             f"| cap001 + P001 stacked, 256 px | {stack['slices']} | {stack['lung_slices']} | {stack['median_s']:.1f} | "
             f"{stack['ms_per_slice']:.0f} | {stack['median_s']:.1f} |",
             f"| P001 DICOM series, 512 px | {series['slices']} | {series['lung_slices']} | {series['median_s']:.1f} | "
             f"{series['ms_per_slice']:.0f} | {series['seconds_for_300_slices']:.0f} (x300 / 40) |"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quantify_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "quantify_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
