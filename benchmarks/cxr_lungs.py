"""Benchmark: the CXR lung model (stage 1 of segment-then-classify), on manual and on lungVAE masks.

    covidlens segment train --config configs/cxr_lungs_unet.yaml --out-dir runs      # about 30 min on 2 cores
    python benchmarks/cxr_lungs.py --checkpoint runs/cxr_lungs_unet_lite0/model --out reports/cxr_lungs

1. Held-out manual masks: the test split of ``lung-masks-shenzhen-montgomery`` (one image per patient),
   scored by ``covidlens segment evaluate`` (Dice, IoU, sensitivity, specificity, HD95 and Hausdorff
   distance in pixels of the 256 px masks, 95 % intervals over images), also per source
   (Shenzhen, Montgomery).
2. External, not ground truth: the lungVAE masks of ``covid-chestxray`` (model output of Selvan et al.
   2020, 210 images, another population: COVID-19 and other pneumonias). Dice of our mask against
   theirs, each resized to the image. Agreement with another model, not accuracy: where both fail
   the same way it is high, and lungVAE's own Dice (0.84 quoted by seed 002) bounds what it can show.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from covidlens.data.datasets import load_dataset
from covidlens.evaluation.metrics import json_safe
from covidlens.evaluation.segmentation import evaluate_segmentation, format_distances, format_headline, format_table
from covidlens.explain.measure import mean_ci
from covidlens.segmentation.lungs import load_lung_model, lung_masks


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args(argv)
    ckpt = load_lung_model(args.checkpoint)
    args.out.mkdir(parents=True, exist_ok=True)
    manual = evaluate_segmentation(ckpt, "lung-masks-shenzhen-montgomery", args.data_root, "test",
                                   args.out / "manual", args.bootstrap)
    print(f"manual masks, test split ({manual['n_slices']} images): mean Dice {format_headline(manual)}")
    print(format_table(manual))
    print(format_distances(manual))

    # Per source: Dice per image from the evaluation's per-slice table.
    import csv

    table = load_dataset("lung-masks-shenzhen-montgomery", args.data_root)
    source_of = {str(s.path): s.meta["source"] for s in table.split("test")}
    per_source: dict[str, list[float]] = {}
    with (args.out / "manual" / "per_slice.csv").open() as handle:
        for row in csv.DictReader(handle):
            per_source.setdefault(source_of[row["path"]], []).append(float(row["dice/lung"]))
    by_source = {k: dict(zip(("mean", "lo", "hi"), mean_ci(v, args.bootstrap)), n=len(v)) for k, v in per_source.items()}
    for k, v in by_source.items():
        print(f"  {k}: {v['n']} images, mean Dice {v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]")

    ext = load_dataset("covid-chestxray", args.data_root)
    with_mask = [s for s in ext.samples if s.mask is not None]
    greys = [Image.open(s.path).convert("L") for s in with_mask]
    ours = lung_masks(ckpt, greys)
    agreement = []
    for s, grey, mask in zip(with_mask, greys, ours):
        theirs = Image.open(s.mask).convert("L").resize(grey.size, Image.Resampling.NEAREST)
        agreement.append(dice(mask, np.asarray(theirs) > 127))
    mean, lo, hi = mean_ci(agreement, args.bootstrap)
    print(f"lungVAE masks of covid-chestxray ({len(agreement)} frontal X-rays with a mask): "
          f"Dice of ours against theirs {mean:.3f} [{lo:.3f}, {hi:.3f}], median {np.median(agreement):.3f}")
    result = {"manual": manual, "per_source": by_source,
              "lungvae_agreement": {"n": len(agreement), "mean_dice": mean, "ci95": [lo, hi],
                                    "median_dice": float(np.median(agreement)),
                                    "below_0.8": int(sum(d < 0.8 for d in agreement))}}
    (args.out / "results.json").write_text(json.dumps(json_safe(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
