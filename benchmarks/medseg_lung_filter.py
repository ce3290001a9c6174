"""Benchmark: does a lung mask remove lesion false positives on MedSeg, and what does it cost?

    python benchmarks/medseg_lung_filter.py --checkpoint RUN/model --data-root ../shared/data \
        --out reports/medseg_lung_filter

The lesion model segments each of the 48 MedSeg test slices once; each lung rule then turns the
lesion pixels it calls outside the lungs into background, and the slices are scored again:

- ``none``: no filter (the benchmark's headline Dice);
- ``grey-window``: :func:`covidlens.measure.lungs.segment_lungs_grey`, the HU rule through the lung
  window, what ``quantify`` uses for 8-bit slices; where it gives an empty mask the slice is left
  unfiltered and counted;
- ``cropped`` and ``cropped-hull``: :func:`covidlens.measure.lungs.segment_lungs_cropped`, the
  slice's own Otsu threshold, without and with each lung's convex hull.

Per rule: mean Dice over slices with its 95% bootstrap interval, the paired difference in mean Dice
against ``none`` (same resampled slices), false-positive lesion pixels per slice, the share of the
radiologists' lesion pixels that lie inside the lung mask (what the filter can keep at best), and
the share of the slice the mask covers. MedSeg has no pixel spacing, so areas are in pixels.
Writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from covidlens.checkpoint import load_checkpoint
from covidlens.data.datamodule import read_image_and_mask
from covidlens.data.datasets import load_dataset
from covidlens.evaluation.metrics import json_safe
from covidlens.evaluation.segmentation import bootstrap_intervals, confusion_counts, ratios, summarise
from covidlens.measure.lungs import segment_lungs_cropped, segment_lungs_grey
from covidlens.segmentation.predict import segment_batch

RULES = {
    "none": None,
    "grey-window": segment_lungs_grey,
    "cropped": lambda grey: segment_lungs_cropped(grey, hull=False),
    "cropped-hull": segment_lungs_cropped,
}


def score_rule(rule, greys, truths, preds, classes, groups, n_boot: int) -> dict:
    counts = np.zeros((len(greys), len(classes), 4), dtype=np.int64)
    kept, covered, empty = [], [], 0
    for i, (grey, truth, pred) in enumerate(zip(greys, truths, preds)):
        if rule is None:
            lung = np.ones_like(truth, dtype=bool)
        else:
            lung = rule(grey)
            if not lung.any():
                empty += 1
                lung = np.ones_like(truth, dtype=bool)
        filtered = np.where(lung, pred, 0)
        counts[i] = confusion_counts(truth, filtered, len(classes))
        lesion = truth > 0
        if lesion.any():
            kept.append(float((lesion & lung).sum() / lesion.sum()))
        covered.append(float(lung.mean()))
    return {
        "counts": counts,
        "metrics": summarise(counts, classes),
        "ci95": {k: list(v) for k, v in bootstrap_intervals(counts, classes, groups, n_boot).items()},
        "false_positive_pixels_per_slice": float(counts[:, 1, 1].mean()),
        "truth_lesion_inside_mask": float(np.mean(kept)),
        "truth_lesion_inside_mask_min": float(np.min(kept)),
        "mask_fraction_of_slice": float(np.mean(covered)),
        "empty_masks": empty,
    }


def paired_dice_difference(counts, reference, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean Dice difference (rule - reference) over slices, with a 95% bootstrap interval over slices."""
    diff = ratios(counts)["dice"][:, 1] - ratios(reference)["dice"][:, 1]
    rng = np.random.default_rng(seed)
    draws = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n_boot)]
    return float(diff.mean()), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="binary lesion segmentation checkpoint folder")
    parser.add_argument("--data-root", type=Path, help="folder holding ct/medseg-infnet (default $COVIDLENS_DATA)")
    parser.add_argument("--out", type=Path, default=Path("reports/medseg_lung_filter"))
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    classes = list(ckpt.info.classes)
    if len(classes) != 2:
        parser.error(f"{args.checkpoint} segments {len(classes)} classes; this benchmark needs a binary lesion model.")
    samples = [s for s in load_dataset("medseg-infnet", args.data_root).split("test") if s.mask is not None]
    greys, truths, preds = [], [], []
    for start in range(0, len(samples), 8):
        pairs = [read_image_and_mask(s, 2) for s in samples[start : start + 8]]
        probs = segment_batch(ckpt, [image for image, _ in pairs])
        for (image, truth), p in zip(pairs, probs):
            greys.append(np.asarray(image))
            truths.append(truth)
            preds.append(p.argmax(0))
        print(f"segmented {min(start + 8, len(samples))}/{len(samples)} slices", flush=True)
    groups = [s.group for s in samples]
    results = {name: score_rule(rule, greys, truths, preds, classes, groups, args.bootstrap) for name, rule in RULES.items()}
    reference = results["none"]["counts"]
    rows = [
        "| lung rule | mean Dice [95% CI] | Δ mean Dice vs none [95% CI] | FP lesion px / slice | truth lesion inside mask "
        "(mean, min) | mask / slice | empty masks |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        d, lo, hi = paired_dice_difference(r["counts"], reference, args.bootstrap)
        r["dice_difference_vs_none"] = [d, lo, hi]
        dice, (dlo, dhi) = r["metrics"]["mean_dice/infection"], r["ci95"]["mean_dice/infection"]
        rows.append(
            f"| {name} | {dice:.3f} [{dlo:.3f}, {dhi:.3f}] | {d:+.3f} [{lo:+.3f}, {hi:+.3f}] | "
            f"{r['false_positive_pixels_per_slice']:.0f} | {r['truth_lesion_inside_mask']:.3f}, "
            f"{r['truth_lesion_inside_mask_min']:.3f} | {r['mask_fraction_of_slice']:.2f} | {r['empty_masks']}/{len(samples)} |"
        )
        del r["counts"]
    text = "\n".join(
        [
            f"# Lung-mask filtering of lesion predictions, MedSeg test ({len(samples)} slices)",
            "",
            f"Checkpoint: {args.checkpoint} ({ckpt.info.model}, {ckpt.info.input_size} px). Areas in pixels "
            "(MedSeg has no spacing). Intervals: 95% bootstrap over slices.",
            "",
            *rows,
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(json_safe(results), indent=2) + "\n")
    (args.out / "results.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
