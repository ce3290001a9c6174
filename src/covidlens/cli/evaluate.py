"""``covidlens evaluate``: score checkpoints on a split with confidence intervals."""

from __future__ import annotations

import argparse

from covidlens.cli.common import add_data_args
from covidlens.kinds import SPLITS


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score checkpoints on a split with confidence intervals")
    p.add_argument("--checkpoint", action="append", required=True,
                   help="checkpoint folder; repeat for an ensemble (mean probability)")
    p.add_argument("--split", default="test", choices=SPLITS, help="split to score (default test)")
    p.add_argument("--out", help="report folder (metrics.md/json, ROC, confusion matrices, predictions.csv)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test-time augmentation (default: as trained)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals (default 2000)")
    p.add_argument("--class-map", action="append", metavar="DATA=MODEL",
                   help="score data whose class is named differently, e.g. NonCOVID=Normal (repeatable)")
    p.add_argument("--no-modality-check", dest="check_modality", action="store_false",
                   help="score data even when it is not of the model's modality")
    add_data_args(p, default=None, default_help="the data set recorded in the checkpoint")
    p.set_defaults(run=run)


def run(args) -> int:
    from covidlens.evaluation.evaluate import evaluate, format_table, parse_class_renames

    renames = parse_class_renames(args.class_map)
    result = evaluate(args.checkpoint, args.data, args.data_root, args.split, args.tta, args.out, args.bootstrap,
                      class_renames=renames, check_modality=args.check_modality)
    counts = ", ".join(f"{n} {c}" for c, n in result["class_counts"].items())
    print(f"{result['dataset']} / {result['split']}: {result['n_images']} images ({counts}); "
          f"intervals resample {result['bootstrap_resamples_what']}")
    print(format_table(result))
    if args.out:
        print(f"report: {args.out}")
    return 0
