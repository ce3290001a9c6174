"""Benchmark: how long one 300-slice chest CT takes through ``covidlens screen``, stage by stage (issue 21).

    python benchmarks/screen_speed.py --data-root ../shared/data --lesion-checkpoint RUN/model \
        [--ct-checkpoint RUN/model] [--backends onnxruntime torch] [--repeats 2] [--out reports/screen_speed]

The study: COVID-CT-MD's P001 volume (148 slices of 256 x 256, real HU) resampled to 300 slices of
512 x 512 (linear interpolation, spacing scaled to match), the size of a clinical chest CT at about
1 mm; it is written once as an int16 NIfTI outside the repository (``--work``). Each repeat screens it
end to end into a fresh folder with ``covidlens.screen`` (reading, lungs, lesions, the classifier with
its Grad-CAM key slices, writing result.json, the report, NIfTI masks); the wall time and the road's
own stage times are reported per backend of the classifier. Target: 60 s on the 2-core reference machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SLICES, SIDE = 300, 512


def study_volume(data_root: Path, work: Path) -> Path:
    import nibabel
    from scipy import ndimage

    target = work / f"P001_{SLICES}x{SIDE}.nii.gz"
    if target.exists():
        return target
    source = nibabel.load(str(data_root / "ct" / "covid-ct-md" / "volumes" / "P001.nii.gz"))
    data = np.asarray(source.dataobj, dtype=np.float32)
    factors = (SIDE / data.shape[0], SIDE / data.shape[1], SLICES / data.shape[2])
    resampled = ndimage.zoom(data, factors, order=1)
    affine = source.affine.copy()
    affine[:3, :3] = affine[:3, :3] / np.array(factors)[None, :]
    work.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(np.round(resampled).astype(np.int16), affine), str(target))
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p.add_argument("--lesion-checkpoint", required=True)
    p.add_argument("--ct-checkpoint")
    p.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"], choices=["onnxruntime", "torch"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path.home() / ".cache" / "covidlens" / "screen_speed")
    p.add_argument("--out", type=Path, default=Path("reports/screen_speed"))
    args = p.parse_args(argv)

    import torch

    from covidlens.screening import ScreenModels, screen

    volume = study_volume(args.data_root, args.work)
    rows = []
    for backend in args.backends:
        models = ScreenModels.load(args.lesion_checkpoint, args.ct_checkpoint, backend=backend)
        for repeat in range(args.repeats):
            out = Path(tempfile.mkdtemp(prefix="screen_speed-"))
            started = time.perf_counter()
            run = screen([volume], out / "run", models, workers=0)
            wall = time.perf_counter() - started
            record = json.loads((out / "run" / run.rows[0]["name"] / "result.json").read_text())
            shutil.rmtree(out, ignore_errors=True)
            row = {"backend": backend, "repeat": repeat + 1, "wall_s": round(wall, 1), **record["timings"],
                   "verdict": record["verdict"]["lesions"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    machine = f"{torch.get_num_threads()} torch threads, {sys.platform}"
    lines = [f"One {SLICES}-slice {SIDE} x {SIDE} CT (P001 resampled) through covidlens screen; {machine}.", "",
             "| classifier backend | repeat | wall s | reading | lungs | lesions | classifier | writing |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['repeat']} | {r['wall_s']} | " + " | ".join(
            f"{r.get(k, 0):.1f}" for k in ("reading", "lungs", "lesions", "classifier", "writing")) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
