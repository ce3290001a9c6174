"""``covidlens predict``: class probabilities and a decision for image files or folders."""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

from covidlens.cli.common import batch_status, check_output_folder
from covidlens.errors import CovidlensError


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="class probabilities and decision for image files or folders")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (model.safetensors + model.json)")
    p.add_argument("--threshold", type=float, help="decision threshold on P(positive class)")
    p.add_argument("--operating-point", choices=["0.5", "sensitivity"], default="0.5",
                   help="'sensitivity' uses the threshold chosen on validation for the target sensitivity")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test-time augmentation (default: as trained)")
    p.add_argument("--csv", help="also write the table as CSV here")
    p.add_argument("--json", help="also write the rows as JSON here")
    p.set_defaults(run=run)


def _record(row) -> dict:
    record = asdict(row)
    probabilities = record.pop("probabilities")
    if isinstance(record["probability"], float) and math.isnan(record["probability"]):
        record["probability"] = None
    return record | {f"p_{name}": p for name, p in probabilities.items()}


def run(args) -> int:
    from covidlens.checkpoint import load_checkpoint
    from covidlens.inference import iter_predictions

    check_output_folder(args.csv, args.json)
    ckpt = load_checkpoint(args.checkpoint)
    info = ckpt.info
    threshold = args.threshold
    if threshold is None and args.operating_point == "sensitivity":
        if info.sensitivity_threshold is None:
            raise CovidlensError(f"{args.checkpoint} has no validation-chosen sensitivity threshold; pass --threshold.")
        threshold = info.sensitivity_threshold
    score = f"P({info.positive_class})" if info.positive_class else "P(label)"
    print(f"{'image':<60}  {score:>10}  decision")
    rows = []
    for row in iter_predictions(ckpt, args.paths, threshold=threshold, tta=args.tta):
        rows.append(row)
        shown = row.path if len(row.path) <= 60 else "..." + row.path[-57:]
        if row.error:
            print(f"{shown:<60}  {'-':>10}  error: {row.error}", flush=True)
        else:
            print(f"{shown:<60}  {row.probability:10.3f}  {row.label}", flush=True)
    records = [_record(r) for r in rows]
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    return batch_status(sum(1 for r in rows if r.error), len(rows))
