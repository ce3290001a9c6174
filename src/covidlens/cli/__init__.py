"""The ``covidlens`` command: argument parsing only; every subcommand calls the library."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

from covidlens.errors import CovidlensError


def _add_data_args(parser: argparse.ArgumentParser, default: str | None = "covid-ct") -> None:
    parser.add_argument("--data", default=default, help="data set: a registered name (covid-ct), a folder of class folders, or a CSV table")
    parser.add_argument("--data-root", default=None, help="folder holding the registered data sets (default: $COVIDLENS_DATA)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="covidlens", description="Screen chest CT for COVID-19: train, evaluate, predict, explain.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a classifier from a YAML config")
    p.add_argument("--config", help="YAML experiment config (configs/*.yaml); defaults apply without one")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=3e-4 (repeatable)")
    p.add_argument("--name", help="run name (folder under the output directory)")
    p.add_argument("--out-dir", help="output directory for runs (default runs/)")
    p.add_argument("--model", help="registered model name")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--input-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--no-pretrained", action="store_true", help="train from scratch")
    p.add_argument("--resume", action="store_true", help="continue the run of this name from its last checkpoint")
    p.add_argument("--no-progress", action="store_true")
    _add_data_args(p, default=None)

    p = sub.add_parser("evaluate", help="score checkpoints on a split with confidence intervals")
    p.add_argument("--checkpoint", action="append", required=True, help="checkpoint folder; repeat for an ensemble")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--out", help="report folder (metrics.md/json, ROC, confusion matrices, predictions.csv)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help="flip test-time augmentation (default: as trained)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals")
    _add_data_args(p)

    p = sub.add_parser("predict", help="P(COVID-19) for image files or folders")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--threshold", type=float, help="decision threshold on P(COVID)")
    p.add_argument("--operating-point", choices=["0.5", "sensitivity"], default="0.5",
                   help="'sensitivity' uses the threshold chosen on validation for the target sensitivity")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--csv", help="also write the table as CSV here")
    p.add_argument("--json", help="also write the rows as JSON here")

    p = sub.add_parser("explain", help="heat maps (CAM, Grad-CAM, Grad-CAM++) for image files or folders")
    p.add_argument("paths", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++", "cam"])
    p.add_argument("--out", required=True, help="folder for the PNG panels (and index.html for several images)")
    p.add_argument("--target-layer", help="layer to explain (default: the model's registered one)")
    p.add_argument("--class", dest="target_class", help="class to explain (default: the predicted one)")
    p.add_argument("--npy", action="store_true", help="also save each raw map as .npy")

    sub.add_parser("models", help="list the registered models")

    p = sub.add_parser("data", help="list, describe or download data sets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dsub.add_parser("list", help="registered data sets and where they are expected")
    q = dsub.add_parser("info", help="image counts per split and class")
    q.add_argument("dataset")
    q.add_argument("--data-root", default=None)
    q = dsub.add_parser("download", help="download a public data set (needs internet)")
    q.add_argument("dataset")
    q.add_argument("--data-root", default=None)
    return parser


def cmd_train(args) -> int:
    from covidlens.training.config import load_config
    from covidlens.training.fit import train
    from covidlens.training.report import write_training_curves

    # Flags carry typed values straight into the config; only --set goes through YAML parsing.
    direct = {}
    for flag, key in (("name", "name"), ("out_dir", "trainer.out_dir"), ("model", "model.name"), ("epochs", "optim.epochs"),
                      ("lr", "optim.lr"), ("batch_size", "optim.batch_size"), ("input_size", "model.input_size"),
                      ("seed", "seed"), ("data", "data.dataset"), ("data_root", "data.root")):
        value = getattr(args, flag)
        if value is not None:
            direct[key] = value
    if args.no_pretrained:
        direct["model.pretrained"] = False
    config = load_config(args.config, args.overrides, direct)
    run_dir = train(config, resume=args.resume, progress=not args.no_progress)
    write_training_curves(run_dir)
    print(f"trained: {run_dir / 'model'}  (config {run_dir / 'config.yaml'}, logs {run_dir / 'logs'})")
    return 0


def cmd_evaluate(args) -> int:
    from covidlens.evaluation.evaluate import evaluate, format_table

    result = evaluate(args.checkpoint, args.data, args.data_root, args.split, args.tta, args.out, args.bootstrap)
    print(f"{result['dataset']} / {result['split']}: {result['n_images']} images, {result['n_positive']} positive")
    print(format_table(result))
    if args.out:
        print(f"report: {args.out}")
    return 0


def cmd_predict(args) -> int:
    from covidlens.checkpoint import load_checkpoint
    from covidlens.inference import predict

    for target in (args.csv, args.json):
        if target and not Path(target).resolve().parent.is_dir():
            raise CovidlensError(f"cannot write {target}: its folder does not exist.")
    ckpt = load_checkpoint(args.checkpoint)
    threshold = args.threshold
    if threshold is None and args.operating_point == "sensitivity":
        if ckpt.info.sensitivity_threshold is None:
            raise CovidlensError(f"{args.checkpoint} has no validation-chosen sensitivity threshold; pass --threshold.")
        threshold = ckpt.info.sensitivity_threshold
    rows = predict(ckpt, args.paths, threshold=threshold, tta=args.tta)
    width = min(max((len(r.path) for r in rows), default=4), 80)
    print(f"{'image':<{width}}  P(COVID)  decision")
    for r in rows:
        shown = r.path if len(r.path) <= width else "..." + r.path[-(width - 3):]
        if r.error:
            print(f"{shown:<{width}}  {'-':>8}  error: {r.error}")
        else:
            print(f"{shown:<{width}}  {r.probability:8.3f}  {r.label}")
    records = [asdict(r) for r in rows]
    for record in records:
        if isinstance(record["probability"], float) and math.isnan(record["probability"]):
            record["probability"] = None
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    failed = sum(1 for r in rows if r.error)
    if failed:
        print(f"{failed} of {len(rows)} files could not be read.", file=sys.stderr)
    return 1 if failed == len(rows) else 0


def cmd_explain(args) -> int:
    from covidlens.checkpoint import load_checkpoint
    from covidlens.explain.render import explain_files

    ckpt = load_checkpoint(args.checkpoint)
    written, failed = explain_files(ckpt, args.paths, args.out, args.method, args.target_layer, args.target_class, args.npy)
    for _, png in written:
        print(png)
    for path, reason in failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if (Path(args.out) / "index.html").is_file():
        print(f"gallery: {Path(args.out) / 'index.html'}")
    return 0 if written else 1


def cmd_models(args) -> int:
    from covidlens.models import get_model_spec, list_models

    for name in list_models():
        spec = get_model_spec(name)
        weights = spec.pretrained_source or "from scratch"
        print(f"{name:<20} {spec.input_size:>4}px  {weights:<45} {spec.description}")
    return 0


def cmd_data(args) -> int:
    from covidlens.data.datasets import dataset_folder, default_data_root, list_datasets, load_dataset

    if args.data_command == "list":
        print(f"data root: {default_data_root()} (set $COVIDLENS_DATA or --data-root)")
        for name in list_datasets():
            folder = dataset_folder(name)
            print(f"{name:<12} {folder}  {'present' if folder.is_dir() else 'missing'}")
        return 0
    if args.data_command == "info":
        table = load_dataset(args.dataset, args.data_root)
        print(f"{table.name}: classes {', '.join(table.classes)}")
        for split, counts in table.counts().items():
            print(f"  {split:<5} " + "  ".join(f"{c}={n}" for c, n in counts.items()))
        return 0
    from covidlens.data.download import download_dataset

    folder = dataset_folder(args.dataset, args.data_root)
    digests = download_dataset(args.dataset, folder)
    for url, digest in digests.items():
        print(f"{digest}  {url}")
    print(f"downloaded {args.dataset} to {folder}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "explain": cmd_explain,
    "models": cmd_models,
    "data": cmd_data,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CovidlensError as exc:
        print(f"covidlens: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output path that cannot be written, a full disk
        print(f"covidlens: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("covidlens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
