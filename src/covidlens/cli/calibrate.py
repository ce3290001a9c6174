"""``covidlens calibrate``: fit a classifier's temperature on its validation split and store it."""

from __future__ import annotations

from covidlens.cli.common import add_data_args


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="fit a classifier's probability temperature on validation and store it")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder; its model.json is rewritten")
    p.add_argument("--dry-run", action="store_true", help="print the fit without writing it")
    add_data_args(p, default=None, default_help="the data set recorded in the checkpoint")
    p.set_defaults(run=run)


def run(args) -> int:
    from covidlens.evaluation.calibration import calibrate_checkpoint

    fit = calibrate_checkpoint(args.checkpoint, args.data, args.data_root, write=not args.dry_run)
    b, a = fit["before"], fit["after"]
    print(f"{fit['dataset']} / {fit['split']}: {fit['n_images']} images; temperature "
          f"{fit['temperature_before']:.3f} -> {fit['temperature']:.3f}")
    print(f"on this split (where it was fitted, so not a judgement of it): NLL {fit['nll_before']:.4f} -> "
          f"{fit['nll_after']:.4f}, ECE {b['ece']:.4f} -> {a['ece']:.4f}, Brier {b['brier']:.4f} -> {a['brier']:.4f}")
    print("judge it with covidlens evaluate on the test split and on outside data" if not args.dry_run
          else "dry run: nothing written")
    return 0
