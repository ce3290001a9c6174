"""Benchmark: Semi-Inf-Net's idea on this machine: lesion pseudo-labels on unlabelled real CT slices.

    python benchmarks/lesion_pseudo_labels.py --teacher reports/lesions23/runs/unet_efficientnet_lite2-binary/model \
        --data-root ../shared/data --out reports/lesion_pseudo [--epochs 15] [--min-share 0.005 --max-share 0.4]

1. The teacher (a lesion model trained on MedSeg's training slices only) outlines the lesions of the COVID
   class of COVID-CT's *training* split (slices from papers; no lesion labels): probability >= 0.5.
   A slice is kept when its lesion area is between ``--min-share`` and ``--max-share`` of the image
   (an empty mask on a COVID-19 slice is a miss, not a label; a huge one is a figure margin or a failure),
   and when it is not a near-duplicate (256-bit hash) of any MedSeg test slice.
2. A student with the teacher's recipe (``configs/medseg_unet.yaml`` with ``--set`` overrides, default the
   store's Lite2 256 px) starts from ImageNet weights and trains on MedSeg's training slices plus the kept
   pseudo-labelled slices. The validation slices are exactly the teacher's (``carve_validation`` of
   MedSeg's training split with the config's seed and ``data.val_slices``), so both choose their epoch on
   the same real labels, and the MedSeg test split is never seen.
3. Score with ``benchmarks/lesion_recipes.py`` (paired Dice on MedSeg test) and
   ``benchmarks/screen_studies.py --lesion-checkpoint`` (COVID-CT-MD outside sets), as every recipe.

Rule, written before the student was scored: the student replaces the store's ct-lesions recipe only if
its best validation Dice (the same 8 MedSeg slices) beats the teacher's AND its outside figures stay within
issue 23's bounds (P001 / cap001 infected-slice AUC at least 0.954 / 0.957, normal001 at most 13 mL).
The test Dice is reported either way and decides nothing.

MedSeg slices are turned to the usual view (the set's ``rot90``) and written as PNG, with the pseudo-label
masks (0/255), under ``--work`` (default ~/.cache/covidlens/lesion_pseudo, outside the repository), with one
CSV table (``path,mask,split,patient_id``) the trainer reads. Writes ``pseudo_labels.json`` (what was kept
and why not) under ``--out``; the run is ``--out/runs/<name>``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from covidlens.data.datamodule import carve_validation
from covidlens.data.datasets import load_dataset
from covidlens.data.sets.near_duplicates import MAX_DISTANCE, _hashes, _popcount
from covidlens.segmentation.predict import segment_batch
from covidlens.training.config import load_config
from covidlens.training.fit import MODEL_DIR, run_folder, train

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "medseg_unet.yaml"
STORE_RECIPE = ["model.name=unet_efficientnet_lite2", "model.kwargs={}", "model.pretrained=true",
                "model.input_size=256"]


def hashes(samples, folder: Path) -> np.ndarray:
    raw = _hashes([s.path for s in samples], [str(s.path.relative_to(folder)) for s in samples], folder)
    return np.frombuffer(b"".join(raw), dtype=np.uint64).reshape(len(samples), -1)


def pseudo_label(teacher: str, samples, out: Path, lo: float, hi: float, batch: int = 8) -> tuple[list, dict]:
    """Teacher masks for ``samples`` written under ``out``; the kept (image, mask, group) rows and counts."""
    out.mkdir(parents=True, exist_ok=True)
    kept, reasons = [], {"kept": 0, "empty_or_too_small": 0, "too_large": 0}
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        images = [s.image() for s in chunk]
        for s, image, probs in zip(chunk, images, segment_batch(teacher, images)):
            share = float((probs[1] >= 0.5).mean())
            if share < lo:
                reasons["empty_or_too_small"] += 1
                continue
            if share > hi:
                reasons["too_large"] += 1
                continue
            stem = f"covidct-{len(kept):04d}"
            image.save(out / f"{stem}.png")
            Image.fromarray(((probs[1] >= 0.5) * 255).astype(np.uint8)).save(out / f"{stem}_mask.png")
            kept.append((out / f"{stem}.png", out / f"{stem}_mask.png", f"covid-ct:{s.group}"))
            reasons["kept"] += 1
        print(f"pseudo-labels: {min(start + batch, len(samples))}/{len(samples)} slices, {reasons['kept']} kept", flush=True)
    return kept, reasons


def medseg_rows(samples, out: Path, split_of) -> list:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in samples:
        stem = s.group.replace("/", "-")
        image, mask = out / f"{stem}.png", out / f"{stem}_mask.png"
        if not image.is_file():
            s.image().save(image)
            m = np.asarray(Image.open(s.mask).convert("L"))
            Image.fromarray(np.ascontiguousarray(np.rot90(m, s.rot90))).save(mask)
        rows.append((image, mask, split_of(s), f"medseg:{s.group}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="lesion model trained on MedSeg's training slices only")
    parser.add_argument("--data-root", type=Path, help="folder holding ct/ (default $COVIDLENS_DATA)")
    parser.add_argument("--out", type=Path, default=Path("reports/lesion_pseudo"))
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "covidlens" / "lesion_pseudo")
    parser.add_argument("--epochs", type=int, default=15, help="student epochs (default 15)")
    parser.add_argument("--min-share", type=float, default=0.005, help="smallest kept lesion share of a slice")
    parser.add_argument("--max-share", type=float, default=0.4, help="largest kept lesion share of a slice")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="student config overrides after the store's Lite2 recipe (repeatable)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = str(args.data_root) if args.data_root else None
    medseg = load_dataset("medseg-infnet", root)
    covid_ct = load_dataset("covid-ct", root)
    table = args.work / "medseg-plus-pseudo.csv"
    config = load_config(CONFIG, STORE_RECIPE + args.overrides, {
        "name": "student-pseudo", "trainer.out_dir": str(args.out / "runs"), "optim.epochs": args.epochs,
        "trainer.accelerator": "cpu", "data.dataset": str(table), "data.modality": "ct"})
    train_slices = [s for s in medseg.samples if s.split == "train"]
    _, val = carve_validation(train_slices, config.data.val_slices, config.seed)
    val_groups = {s.group for s in val}

    positives = [s for s in covid_ct.split("train") if covid_ct.classes[s.label] == "COVID"]
    test = [s for s in medseg.samples if s.split == "test"]
    ct_folder, medseg_folder = positives[0].path.parents[1], test[0].path.parents[2]
    distance = _popcount(hashes(positives, ct_folder)[:, None, :] ^ hashes(test, medseg_folder)[None, :, :]).sum(axis=2)
    near = distance.min(axis=1) <= MAX_DISTANCE
    candidates = [s for s, n in zip(positives, near) if not n]
    print(f"COVID-CT training COVID slices: {len(positives)}; {int(near.sum())} near-duplicates of MedSeg test "
          f"slices left out", flush=True)
    kept, reasons = pseudo_label(args.teacher, candidates, args.work / "pseudo", args.min_share, args.max_share)
    rows = medseg_rows(medseg.samples, args.work / "medseg",
                       lambda s: "test" if s.split == "test" else "val" if s.group in val_groups else "train")
    rows += [(image, mask, "train", group) for image, mask, group in kept]
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "mask", "split", "patient_id", "mask_classes"])
        writer.writerows([str(i), str(m), split, g, ";".join(medseg.mask_classes)] for i, m, split, g in rows)
    summary = {"teacher": args.teacher, "covid_ct_train_covid_slices": len(positives),
               "near_duplicates_of_medseg_test": int(near.sum()), **reasons,
               "medseg_train": len(train_slices) - len(val), "medseg_val": len(val),
               "share_bounds": [args.min_share, args.max_share], "table": str(table)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pseudo_labels.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), flush=True)

    if not (run_folder(config) / MODEL_DIR / "model.json").is_file():
        print(f"== training {config.name}: {summary['medseg_train']} MedSeg + {len(kept)} pseudo-labelled slices, "
              f"{config.optim.epochs} epochs", flush=True)
        train(config, progress=False)
    print(f"student: {run_folder(config) / MODEL_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
