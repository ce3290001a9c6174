"""Benchmark: do CAM / Grad-CAM / Grad-CAM++ maps of a COVID-CT classifier fall on real lesions?

    python benchmarks/explain_medseg.py --checkpoint runs/bench/covid_ct_lite0_a/model \
        --out reports/explain [--tolerance 5] [--gallery 6]

Runs every method on the MedSeg slices (``ct/medseg-infnet``, train and test, radiologist infection
masks; the classifier never saw them), explaining the COVID class, and reports per method: the
pointing-game hit rate with its Wilson interval against the chance rate of the dilated mask, the share
of heat inside the mask against the mask's share of the image, and the randomisation check: the same
measures for the architecture with re-initialised weights and the Spearman correlation between the
trained and randomised maps. Writes ``summary.md``/``summary.json`` and a few example panels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from covidlens.checkpoint import Checkpoint, load_checkpoint
from covidlens.data.datasets import dataset_folder, default_data_root, load_dataset
from covidlens.data.io import read_image
from covidlens.explain.cam import METHODS, explain_image
from covidlens.explain.measure import energy_in_mask, mean_ci, pointing_hit, rank_correlation, wilson_interval
from covidlens.explain.render import render_panel
from covidlens.models import create_model


def medseg_slices(root: Path, reorient: bool) -> list[tuple[Path, Image.Image, np.ndarray]]:
    """(path, grey image, lesion mask) for every slice with a lesion, train then test.

    The registry records that these slices are stored turned by 90 degrees (``Sample.rot90``);
    ``reorient`` applies that turn to image and mask together, into the usual axial view that COVID-CT
    figures show, so that orientation is not one more difference between the sets.
    """
    slices = []
    for sample in load_dataset("medseg-infnet", root).samples:
        image = read_image(sample.path)
        mask = np.asarray(Image.open(sample.mask).convert("L")) > 127
        if reorient:
            image = Image.fromarray(np.ascontiguousarray(np.rot90(np.asarray(image), sample.rot90)))
            mask = np.rot90(mask, sample.rot90)
        if mask.any():
            slices.append((sample.path, image, np.ascontiguousarray(mask)))
    return slices


def randomised(ckpt: Checkpoint, seed: int = 0) -> Checkpoint:
    torch.manual_seed(seed)
    model = create_model(ckpt.info.model, num_classes=ckpt.info.num_outputs, **ckpt.info.model_kwargs).eval()
    return Checkpoint(model, ckpt.info, ckpt.path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", default=None, help="data root (default $COVIDLENS_DATA)")
    parser.add_argument("--out", default="reports/explain")
    parser.add_argument("--tolerance", type=int, default=5, help="mask dilation in pixels for the pointing game")
    parser.add_argument("--gallery", type=int, default=4, help="example panels written per method")
    parser.add_argument("--as-stored", action="store_true", help="keep the slices turned as stored (see medseg_slices)")
    args = parser.parse_args()

    root = Path(args.data) if args.data else default_data_root()
    if not dataset_folder("medseg-infnet", root).is_dir():
        print(f"skipped: MedSeg slices not found under {root}", file=sys.stderr)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trained = load_checkpoint(args.checkpoint)
    random_model = randomised(trained)
    positive = trained.info.classes[trained.info.positive_index]
    slices = medseg_slices(root, reorient=not args.as_stored)
    rows = {}
    for method in METHODS:
        started = time.time()
        stats = {k: [] for k in ("hit", "chance", "energy", "area", "rand_hit", "rand_energy", "rho", "prob", "empty")}
        for i, (path, image, mask) in enumerate(slices):
            e = explain_image(trained, image, method, target_class=positive)
            r = explain_image(random_model, image, method, target_class=positive)
            # An all-zero map (no positive evidence for the class at all) counts as a pointing miss;
            # its heat-in-mask share and rank correlation are undefined and left out of those means.
            hit, chance = pointing_hit(e.heat, mask, args.tolerance)
            energy, area = energy_in_mask(e.heat, mask)
            stats["empty"].append(not e.heat.any())
            stats["hit"].append(hit)
            stats["chance"].append(chance)
            stats["energy"].append(energy)
            stats["area"].append(area)
            stats["rand_hit"].append(pointing_hit(r.heat, mask, args.tolerance)[0])
            stats["rand_energy"].append(energy_in_mask(r.heat, mask)[0])
            stats["rho"].append(rank_correlation(e.heat, r.heat))
            stats["prob"].append(e.probability)
            if i < args.gallery:
                render_panel(e, out / f"{path.stem}_{method.replace('++', 'pp')}.png", source=f"MedSeg {path.name}")
        n, hits = len(slices), int(np.sum(stats["hit"]))
        rows[method] = {
            "n_slices": n,
            "pointing_hit_rate": hits / n,
            "pointing_ci95": wilson_interval(hits, n),
            "pointing_chance": float(np.mean(stats["chance"])),
            "empty_maps": int(np.sum(stats["empty"])),
            "energy_in_mask": mean_ci([v for v in stats["energy"] if np.isfinite(v)]),
            "mask_area_share": float(np.mean(stats["area"])),
            "random_weights_hit_rate": float(np.mean(stats["rand_hit"])),
            "random_weights_energy": float(np.nanmean(stats["rand_energy"])),
            "trained_vs_random_spearman": mean_ci([v for v in stats["rho"] if np.isfinite(v)]),
            "mean_p_covid": float(np.mean(stats["prob"])),
            "seconds": time.time() - started,
        }
        print(method, json.dumps(rows[method]), flush=True)
    lines = [
        f"Checkpoint `{args.checkpoint}` ({trained.info.model}); {len(slices)} MedSeg slices with lesions; "
        f"pointing tolerance {args.tolerance} px; explained class {positive}; "
        f"{'as stored (turned 90 degrees)' if args.as_stored else 'turned to the usual axial view'}.",
        "",
        "| method | pointing hit rate [95% CI] | chance | empty maps | heat in mask [95% CI] | mask share | random-weights hit rate | random-weights heat in mask | Spearman trained vs random [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, r in rows.items():
        lines.append(
            f"| {method} | {r['pointing_hit_rate']:.3f} [{r['pointing_ci95'][0]:.3f}, {r['pointing_ci95'][1]:.3f}] | "
            f"{r['pointing_chance']:.3f} | {r['empty_maps']} | {r['energy_in_mask'][0]:.3f} [{r['energy_in_mask'][1]:.3f}, {r['energy_in_mask'][2]:.3f}] | "
            f"{r['mask_area_share']:.3f} | {r['random_weights_hit_rate']:.3f} | {r['random_weights_energy']:.3f} | "
            f"{r['trained_vs_random_spearman'][0]:.3f} [{r['trained_vs_random_spearman'][1]:.3f}, {r['trained_vs_random_spearman'][2]:.3f}] |"
        )
    lines += ["", f"Mean P({positive}) on these slices: {np.mean([r['mean_p_covid'] for r in rows.values()]):.3f}"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
