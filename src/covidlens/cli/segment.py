"""``covidlens segment``: train, evaluate and run lesion segmentation models."""

from __future__ import annotations

import argparse
import sys

from covidlens.cli.common import add_data_args, batch_status, check_output_folder
from covidlens.cli.train import FLAG_KEYS
from covidlens.kinds import SPLITS


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help="train, evaluate and run lesion segmentation (e.g. on medseg-infnet)")
    ssub = p.add_subparsers(dest="segment_command", required=True, metavar="ACTION")

    q = ssub.add_parser("train", help="train a segmentation model from a YAML config (configs/medseg_*.yaml)")
    q.add_argument("--config", help="YAML experiment config; its data.dataset must be a segmentation set")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.epochs=5 (repeatable)")
    q.add_argument("--name", help="run name (folder under the output directory)")
    q.add_argument("--out-dir", help="output directory for runs (default runs/)")
    q.add_argument("--model", help="registered segmentation model (see 'covidlens models --task segmentation')")
    q.add_argument("--epochs", type=int, help="number of training epochs")
    q.add_argument("--lr", type=float, help="learning rate")
    q.add_argument("--batch-size", type=int, help="slices per training batch")
    q.add_argument("--input-size", type=int, help="square input side in pixels (a multiple of 32)")
    q.add_argument("--seed", type=int, help="random seed of the run (also picks the validation slices)")
    q.add_argument("--no-pretrained", action="store_true", help="train from scratch even if the config asks for weights")
    q.add_argument("--resume", action="store_true", help="continue the run of this name from its last checkpoint")
    q.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch is still printed)")
    q.add_argument("--data", default=None, help="segmentation data set name (default: the config's)")
    q.add_argument("--data-root", default=None, help="folder holding the registered data sets (default: $COVIDLENS_DATA)")
    q.set_defaults(run=run_train, positive_class=None)

    q = ssub.add_parser("evaluate", help="Dice, IoU, sensitivity, specificity with intervals, and overlays")
    q.add_argument("--checkpoint", required=True, help="segmentation checkpoint folder (RUN/model)")
    q.add_argument("--split", default="test", choices=SPLITS, help="split to score (default test)")
    q.add_argument("--out", help="report folder (metrics.md/json, per_slice.csv, overlays/, index.html)")
    q.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals (default 2000)")
    q.add_argument("--empty-truth", choices=["score", "skip"], default="score",
                   help="slices without the class in the truth: 'score' gives Dice 1 if none is predicted, "
                        "else 0; 'skip' leaves them out of mean Dice and IoU (default score)")
    q.add_argument("--no-overlays", action="store_true", help="do not draw the per-slice overlay PNGs and index.html")
    q.add_argument("--limit", type=int, help="score only the first N slices of the split (quick checks)")
    q.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the mirrored slice (default: as the checkpoint says)")
    add_data_args(q, default="medseg-infnet")
    q.set_defaults(run=run_evaluate)

    q = ssub.add_parser("predict", help="lesion masks and overlays for image files or folders")
    q.add_argument("paths", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files or folders of images")
    q.add_argument("--checkpoint", required=True, help="segmentation checkpoint folder (RUN/model)")
    q.add_argument("--out", required=True,
                   help="folder for masks/ (palette PNG of class indices), overlays/, segments.csv and index.html")
    q.set_defaults(run=run_predict)


def run_train(args) -> int:
    from covidlens.training.config import load_config
    from covidlens.training.fit import train
    from covidlens.training.report import write_training_curves

    direct = {key: getattr(args, flag) for flag, key in FLAG_KEYS if getattr(args, flag, None) is not None}
    if args.no_pretrained:
        direct["model.pretrained"] = False
    config = load_config(args.config, args.overrides, direct)
    run_dir = train(config, resume=args.resume, progress=not args.no_progress, task="segmentation")
    write_training_curves(run_dir)
    print(f"trained: {run_dir / 'model'}  (config {run_dir / 'config.yaml'}, logs {run_dir / 'logs'})")
    return 0


def run_evaluate(args) -> int:
    from covidlens.evaluation.segmentation import evaluate_segmentation, format_distances, format_table

    check_output_folder(args.out)
    result = evaluate_segmentation(
        args.checkpoint, args.data, args.data_root, args.split, args.out, args.bootstrap,
        empty_truth=args.empty_truth, overlays=not args.no_overlays, limit=args.limit, tta=args.tta,
    )
    print(f"{result['dataset']} / {result['split']}: {result['n_slices']} slices; intervals resample "
          f"{result['bootstrap_resamples_what']}")
    print(format_table(result))
    print(format_distances(result))
    if args.out:
        print(f"report: {args.out}")
    return 0


def run_predict(args) -> int:
    from covidlens.segmentation.predict import segment_files

    check_output_folder(args.out)
    results = segment_files(args.checkpoint, args.paths, args.out)
    for r in results:
        if r.error:
            print(f"skipped {r.path}: {r.error}", file=sys.stderr)
        else:
            lesions = ", ".join(f"{c} {v:.1%}" for c, v in list(r.fractions.items())[1:])
            print(f"{r.path}  {lesions}  {r.overlay_png}")
    print(f"gallery: {args.out}/index.html")
    return batch_status(sum(1 for r in results if r.error), len(results))
