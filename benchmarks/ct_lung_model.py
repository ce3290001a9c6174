"""Benchmark: the learned CT lung model (issue 23, item 2) against its three targets.

    python benchmarks/ct_lung_model.py --checkpoint runs/ct_lungs_unet_lite0/model \
        --labels /tmp/ct_lung_labels/table.csv --data-root ../shared/data \
        --lesion-checkpoint reports/medseg_lite0/runs/unet_efficientnet_lite0-binary/model --out reports/ct_lungs

1. Lung Dice against the HU lung mask on the scan held out whole (the label table's ``test`` rows:
   cap001, plain lung-window renders, without the slices the label builder excluded): pooled over the
   scan (target at least 0.95), and the mean over slices where either mask holds lung. The
   validation slices (NY-SBU patients, another scanner) are scored the same way.
2. MedSeg test slices (48, turned to the usual view): the share of the radiologists' lesion pixels
   inside the predicted lung, pooled and as the mean over slices with lesion (target at least 0.97;
   the 8-bit rules keep 0.74-0.87), beside the same figures for the grey-level rules.
3. With ``--lesion-checkpoint``: MedSeg mean lesion Dice after moving lesion predictions outside each
   lung mask to background, against unfiltered, with the paired difference and 95% bootstrap
   intervals over slices (target: filtered at least unfiltered).

Writes ``results.json`` and ``results.md`` under ``--out`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from covidlens.measure.lungs import segment_lungs_cropped, segment_lungs_grey


def dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice of two boolean masks; 1 when both are empty."""
    truth, pred = np.asarray(truth, dtype=bool), np.asarray(pred, dtype=bool)
    total = int(truth.sum()) + int(pred.sum())
    return 1.0 if total == 0 else 2.0 * float((truth & pred).sum()) / total


def pooled_dice(truths, preds) -> float:
    """Dice of the pixel counts summed over all slices (one scan as one volume)."""
    inter = sum(int((np.asarray(t, bool) & np.asarray(p, bool)).sum()) for t, p in zip(truths, preds))
    total = sum(int(np.asarray(t, bool).sum()) + int(np.asarray(p, bool).sum()) for t, p in zip(truths, preds))
    return 1.0 if total == 0 else 2.0 * inter / total


def lesion_kept(lesions, lungs) -> tuple[float, float, float]:
    """(pooled share, mean share over slices with lesion, smallest share) of lesion pixels inside the lung."""
    shares, inside, total = [], 0, 0
    for lesion, lung in zip(lesions, lungs):
        lesion, lung = np.asarray(lesion, bool), np.asarray(lung, bool)
        if lesion.any():
            shares.append(float((lesion & lung).sum() / lesion.sum()))
            inside += int((lesion & lung).sum())
            total += int(lesion.sum())
    if not shares:
        return float("nan"), float("nan"), float("nan")
    return inside / total, float(np.mean(shares)), float(np.min(shares))


def bootstrap_mean(values, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean with its 95% percentile bootstrap interval over items."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    draws = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(n_boot)]
    return float(values.mean()), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def _read_rows(table: Path, split: str) -> list[dict]:
    with table.open(newline="") as handle:
        return [r for r in csv.DictReader(handle) if r["split"] == split and r["variant"] == "plain"]


def score_hu_split(ckpt, table: Path, split: str) -> dict:
    from covidlens.segmentation.ct_lungs import ct_lung_masks

    rows = _read_rows(table, split)
    greys = [np.asarray(Image.open(table.parent / r["path"])) for r in rows]
    truths = [np.asarray(Image.open(table.parent / r["mask"])) > 127 for r in rows]
    preds = ct_lung_masks(ckpt, greys)
    per_slice = [dice(t, p) for t, p in zip(truths, preds) if t.any() or p.any()]
    return {
        "scans": sorted({r["scan"] for r in rows}),
        "slices": len(rows),
        "pooled_dice": pooled_dice(truths, preds),
        "mean_slice_dice": bootstrap_mean(per_slice) if per_slice else None,
        "slices_with_lung": len(per_slice),
        "worst_slices": sorted(((round(dice(t, p), 3), r["scan"], r["slice"]) for r, t, p in zip(rows, truths, preds)
                                if t.any() or p.any()))[:5],
    }


def main(argv: list[str] | None = None) -> int:
    from covidlens.checkpoint import load_checkpoint
    from covidlens.data.datamodule import read_image_and_mask
    from covidlens.data.datasets import load_dataset
    from covidlens.evaluation.metrics import json_safe
    from covidlens.segmentation.ct_lungs import ct_lung_masks
    from covidlens.segmentation.predict import segment_batch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="CT lung model (background, lung)")
    parser.add_argument("--labels", type=Path, default=Path("/tmp/ct_lung_labels/table.csv"),
                        help="table.csv of python -m covidlens.segmentation.ct_lung_labels")
    parser.add_argument("--data-root", type=Path, help="folder holding ct/medseg-infnet (default $COVIDLENS_DATA)")
    parser.add_argument("--lesion-checkpoint", type=Path, help="binary lesion model for the filtered-Dice figure")
    parser.add_argument("--out", type=Path, default=Path("reports/ct_lungs"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    ckpt = load_checkpoint(args.checkpoint)
    results: dict = {"checkpoint": str(args.checkpoint), "labels": str(args.labels)}
    if args.labels.is_file():
        results["held_out"] = score_hu_split(ckpt, args.labels, "test")
        results["validation"] = score_hu_split(ckpt, args.labels, "val")
        with (args.labels.parent / "excluded.csv").open(newline="") as handle:
            results["excluded_test_slices"] = sum(1 for r in csv.DictReader(handle) if r["split"] == "test")

    samples = [s for s in load_dataset("medseg-infnet", args.data_root).split("test") if s.mask is not None]
    pairs = [read_image_and_mask(s, 2) for s in samples]
    greys = [np.asarray(image) for image, _ in pairs]
    lesions = [truth > 0 for _, truth in pairs]
    rules = {
        "learned CT lung model": ct_lung_masks(ckpt, greys),
        "grey-window (HU rule via lung window)": [segment_lungs_grey(g) for g in greys],
        "cropped (Otsu)": [segment_lungs_cropped(g, hull=False) for g in greys],
        "cropped-hull (Otsu + hull)": [segment_lungs_cropped(g) for g in greys],
    }
    medseg = {}
    preds = None
    if args.lesion_checkpoint:
        lesion_ckpt = load_checkpoint(args.lesion_checkpoint)
        preds = [p.argmax(0) > 0 for start in range(0, len(greys), 8)
                 for p in segment_batch(lesion_ckpt, greys[start : start + 8])]
        unfiltered = [dice(t, p) for t, p in zip(lesions, preds)]
    for name, lungs in rules.items():
        pooled, mean, low = lesion_kept(lesions, lungs)
        row = {"kept_pooled": pooled, "kept_mean": mean, "kept_min": low,
               "empty_masks": sum(not m.any() for m in lungs), "mask_fraction": float(np.mean([m.mean() for m in lungs]))}
        if preds is not None:
            # An empty mask leaves the slice unfiltered, as benchmarks/medseg_lung_filter.py does.
            filtered = [dice(t, p & (m if m.any() else True)) for t, p, m in zip(lesions, preds, lungs)]
            row["dice_filtered"] = bootstrap_mean(filtered, args.bootstrap)
            row["dice_difference"] = bootstrap_mean(np.subtract(filtered, unfiltered), args.bootstrap)
        medseg[name] = row
    results["medseg"] = medseg
    if preds is not None:
        results["medseg_unfiltered_dice"] = bootstrap_mean(unfiltered, args.bootstrap)
    results["seconds"] = time.time() - started

    lines = [f"# CT lung model: {args.checkpoint}", ""]
    for key, title in (("held_out", "Held-out HU scan"), ("validation", "Validation HU slices (NY-SBU)")):
        r = results.get(key)
        if r:
            m = r["mean_slice_dice"]
            lines.append(f"- {title} {', '.join(r['scans'][:3])}{'...' if len(r['scans']) > 3 else ''}: {r['slices']} slices, "
                         f"lung Dice pooled **{r['pooled_dice']:.3f}** (target >= 0.95), mean over {r['slices_with_lung']} "
                         f"slices with lung {m[0]:.3f} [{m[1]:.3f}, {m[2]:.3f}]" if m else "")
    if "excluded_test_slices" in results:
        lines.append(f"- Held-out slices excluded by the label builder (missed edge consolidation): {results['excluded_test_slices']}")
    lines += ["", f"MedSeg test ({len(samples)} slices):", "",
              "| lung mask | lesion px inside lung, pooled | mean over slices (min) | empty masks | mask / slice |"
              + (" lesion Dice filtered [95% CI] | Δ vs unfiltered [95% CI] |" if preds is not None else ""),
              "|---|---|---|---|---|" + ("---|---|" if preds is not None else "")]
    for name, r in medseg.items():
        line = (f"| {name} | {r['kept_pooled']:.3f} | {r['kept_mean']:.3f} ({r['kept_min']:.3f}) | {r['empty_masks']} | "
                f"{r['mask_fraction']:.2f} |")
        if preds is not None:
            d, e = r["dice_filtered"], r["dice_difference"]
            line += f" {d[0]:.3f} [{d[1]:.3f}, {d[2]:.3f}] | {e[0]:+.3f} [{e[1]:+.3f}, {e[2]:+.3f}] |"
        lines.append(line)
    if preds is not None:
        u = results["medseg_unfiltered_dice"]
        lines += ["", f"Unfiltered lesion Dice ({args.lesion_checkpoint}): {u[0]:.3f} [{u[1]:.3f}, {u[2]:.3f}]"]
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(json_safe(results), indent=2) + "\n")
    (args.out / "results.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
