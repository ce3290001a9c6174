"""Benchmark: what each lesion-model recipe adds, as paired Dice differences on MedSeg's 48 test slices.

    python benchmarks/lesion_recipes.py --data-root ../shared/data --out reports/lesion_recipes \
        --model lite0-60ep=reports/medseg_lite0/runs/unet_efficientnet_lite0-binary/model \
        --model lite1=reports/lesions23/runs/unet_efficientnet_lite1-binary/model [--reference lite0-60ep]

Each named checkpoint is scored once without and once with flip test-time augmentation
(``covidlens segment evaluate --tta``), through :func:`covidlens.evaluation.segmentation.evaluate_segmentation`.
Every row is then compared with the reference (the first ``--model`` unless ``--reference`` names
another, scored without TTA) slice by slice: the mean of the per-slice Dice differences with a 95 %
percentile-bootstrap interval that resamples slices' groups as the evaluation does (2000 resamples).
An interval that straddles 0 means the recipe was not shown to help. The test split is scored here,
so recipes must have been chosen on the validation slices beforehand (medseg_segmentation.py does).
Writes ``results.md`` and ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from covidlens.evaluation.metrics import json_safe
from covidlens.evaluation.segmentation import evaluate_segmentation


def per_slice_dice(folder: Path) -> tuple[list[str], list[str], np.ndarray]:
    with (folder / "per_slice.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["path"] for r in rows], [r["group"] for r in rows], np.array([float(r["dice/infection"]) for r in rows])


def paired_difference(a: np.ndarray, b: np.ndarray, groups: list[str], n_boot: int = 2000, seed: int = 0):
    """Mean of b - a over slices, and its 95 % interval resampling groups of slices."""
    diff = b - a
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    units = [np.array(v) for v in members.values()]
    rng = np.random.default_rng(seed)
    draws = [diff[np.concatenate([units[j] for j in rng.integers(0, len(units), len(units))])].mean()
             for _ in range(n_boot)]
    return float(diff.mean()), (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT")
    parser.add_argument("--reference", help="the NAME every row is compared with (default: the first)")
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--out", type=Path, default=Path("reports/lesion_recipes"))
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = dict(item.split("=", 1) for item in args.model)
    reference = args.reference or next(iter(models))
    rows, dice = [], {}
    for name, checkpoint in models.items():
        for tta in (False, True):
            label = f"{name}{' + flip TTA' if tta else ''}"
            folder = args.out / name / ("tta" if tta else "plain")
            result = evaluate_segmentation(checkpoint, "medseg-infnet", args.data_root, "test", folder, args.bootstrap,
                                           overlays=False, tta=tta)
            paths, groups, values = per_slice_dice(folder)
            dice[(name, tta)] = (paths, groups, values)
            rows.append({"label": label, "checkpoint": checkpoint, "tta": tta,
                         "mean_dice": result["metrics"]["mean_dice/infection"],
                         "ci95": result["ci95"]["mean_dice/infection"]})
            print(f"{label}: mean Dice {rows[-1]['mean_dice']:.3f}", flush=True)
    ref_paths, ref_groups, ref_values = dice[(reference, False)]
    for row in rows:
        paths, _, values = dice[(row["label"].split(" + ")[0], row["tta"])]
        if paths != ref_paths:
            raise SystemExit(f"{row['label']} was scored on other slices than {reference}")
        row["difference"], row["difference_ci95"] = paired_difference(ref_values, values, ref_groups, args.bootstrap)
    lines = [
        "# Lesion recipes on MedSeg's 48 test slices: mean Dice and paired difference",
        "",
        f"Reference: {reference} without TTA. Differences are means of per-slice Dice differences with 95 % "
        f"bootstrap intervals ({args.bootstrap} resamples of slice groups). Command: "
        "`python benchmarks/lesion_recipes.py` (see its docstring).",
        "",
        "| recipe | mean Dice [95 % CI] | difference to the reference [95 % CI] |",
        "|---|---|---|",
    ]
    for row in rows:
        lo, hi = row["ci95"]
        dlo, dhi = row["difference_ci95"]
        lines.append(f"| {row['label']} | {row['mean_dice']:.3f} [{lo:.3f}, {hi:.3f}] | "
                     f"{row['difference']:+.3f} [{dlo:+.3f}, {dhi:+.3f}] |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(json_safe(rows), indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
