"""Benchmark: lesion volumes of the 50 real MosMedData masks, ours against an independent count.

    python benchmarks/mosmed_volumes.py --out reports/mosmed_volumes [--data-root ../shared/data]

For each mask in ``ct/mosmed-masks`` (listed, with its study's CT-0..CT-4 class, by the data-set
registry from ``dataset_registry.csv``) it compares two computations that share no code:

- ours: the mask read by :func:`covidlens.data.io.read_scan` (reoriented to (slice, row, col), spacing
  reordered to match) and measured by :func:`covidlens.measure.lesion_volume_ml`; also the sum of
  :func:`covidlens.measure.per_slice_areas_mm2` times the slice spacing;
- independent: nibabel's header zooms multiplied together, times the count of non-zero voxels of
  the stored array, written out below without covidlens.

Target: relative difference <= 0.1 % on every study. Writes ``mosmed_volumes.md`` and
``mosmed_volumes.json`` to ``--out`` and prints one line per study. It also gives the share of these
real lesion volumes below each lesion-volume floor of the screen verdict
(:data:`covidlens.screening.verdict.VOLUME_FLOOR_ML`): what each floor would miss of these mild cases.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nibabel
import numpy as np

from covidlens.data.datasets import load_dataset
from covidlens.data.io import read_scan
from covidlens.screening.verdict import VOLUME_FLOOR_ML
from covidlens.errors import CovidlensError
from covidlens.measure import lesion_volume_ml, per_slice_areas_mm2

TARGET = 0.001  # 0.1 %
REPO = Path(__file__).resolve().parents[1]


def independent_volume_ml(path: Path) -> tuple[float, int, tuple[float, float, float]]:
    """Voxel count x product of the header zooms, straight from nibabel (mL, count, zooms)."""
    image = nibabel.load(str(path))
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    count = int(np.count_nonzero(np.asanyarray(image.dataobj)))
    return count * zooms[0] * zooms[1] * zooms[2] / 1000.0, count, zooms


def relative_difference(ours: float, reference: float) -> float:
    if reference == 0.0:
        return 0.0 if ours == 0.0 else float("inf")
    return abs(ours - reference) / reference


def run(data_root: Path, out: Path) -> dict:
    table = load_dataset("mosmed-masks", data_root)
    rows = []
    start = time.perf_counter()
    for number, sample in enumerate(table.samples, start=1):
        scan = read_scan(sample.mask)
        ours = lesion_volume_ml(scan.pixels, scan.spacing)
        from_slices = float(per_slice_areas_mm2(scan.pixels, scan.spacing).sum()) * scan.spacing[0] / 1000.0
        reference, count, zooms = independent_volume_ml(sample.mask)
        row = {
            "study": sample.series,
            "ct_class": table.classes[sample.label],
            "shape": list(scan.pixels.shape),
            "spacing_mm": list(scan.spacing),
            "voxels": count,
            "ours_ml": ours,
            "per_slice_sum_ml": from_slices,
            "independent_ml": reference,
            "relative_difference": relative_difference(ours, reference),
            "per_slice_relative_difference": relative_difference(from_slices, reference),
        }
        rows.append(row)
        print(
            f"[{number:2d}/{len(table.samples)}] {row['study']} {row['ct_class']}: ours {ours:.3f} mL, "
            f"independent {reference:.3f} mL, rel. diff {row['relative_difference']:.2e}",
            flush=True,
        )
    seconds = time.perf_counter() - start
    worst = max(max(r["relative_difference"], r["per_slice_relative_difference"]) for r in rows)
    summary = {
        "studies": len(rows),
        "classes": {c: n for c in table.classes if (n := sum(r["ct_class"] == c for r in rows))},
        "max_relative_difference": worst,
        "target": TARGET,
        "passed": worst <= TARGET,
        "volume_range_ml": [min(r["ours_ml"] for r in rows), max(r["ours_ml"] for r in rows)],
        "median_ml": float(np.median([r["ours_ml"] for r in rows])),
        "below_screen_floors": {point: float(np.mean([r["ours_ml"] < floor for r in rows]))
                                for point, floor in VOLUME_FLOOR_ML.items()},
        "seconds": seconds,
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "mosmed_volumes.json").write_text(json.dumps(summary, indent=2))
    (out / "mosmed_volumes.md").write_text(markdown(summary))
    return summary


def markdown(summary: dict) -> str:
    lines = [
        "# MosMedData lesion volumes: covidlens against an independent voxel count",
        "",
        f"{summary['studies']} real masks; classes {summary['classes']}. Largest relative difference "
        f"{summary['max_relative_difference']:.2e} (target <= {summary['target']:.0e}): "
        f"{'passed' if summary['passed'] else 'FAILED'}. Lesion volumes "
        f"{summary['volume_range_ml'][0]:.2f}-{summary['volume_range_ml'][1]:.2f} mL (median {summary['median_ml']:.1f}); "
        f"{summary['seconds']:.1f} s.",
        "",
        "Below the screen verdict's lesion-volume floors: " + "; ".join(
            f"{VOLUME_FLOOR_ML[p]:g} mL ({p}): {share:.0%} of the studies" for p, share in summary["below_screen_floors"].items()),
        "",
        "| study | class | shape (D, H, W) | spacing mm (slice, row, col) | voxels | ours mL | per-slice sum mL "
        "| independent mL | rel. diff |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in summary["rows"]:
        shape = "x".join(str(n) for n in r["shape"])
        spacing = ", ".join(f"{s:.4g}" for s in r["spacing_mm"])
        lines.append(
            f"| {r['study']} | {r['ct_class']} | {shape} | {spacing} | {r['voxels']} | {r['ours_ml']:.3f} "
            f"| {r['per_slice_sum_ml']:.3f} | {r['independent_ml']:.3f} | {r['relative_difference']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for mosmed_volumes.md and .json")
    parser.add_argument(
        "--data-root", type=Path, default=REPO.parent / "shared" / "data", help="folder holding ct/mosmed-masks"
    )
    args = parser.parse_args(argv)
    try:
        summary = run(args.data_root, args.out)
    except CovidlensError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{summary['studies']} studies, max relative difference {summary['max_relative_difference']:.2e} "
        f"(target {TARGET:.0e}, {'passed' if summary['passed'] else 'FAILED'}), {summary['seconds']:.1f} s; "
        f"wrote {args.out / 'mosmed_volumes.md'}"
    )
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
