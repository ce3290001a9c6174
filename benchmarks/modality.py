"""Measure the modality check: chest CT slice, chest X-ray, or neither.

    COVIDLENS_DATA=../shared/data python benchmarks/modality.py --out runs/modality
    COVIDLENS_DATA=../shared/data python benchmarks/modality.py --out runs/modality --weights shipped

The images, the training and the scoring are the package's (:mod:`covidlens.modality.samples`,
:mod:`covidlens.modality.train`; ``covidlens models build modality`` runs the same code into the model
store). This script only measures: it reads the images, trains the CNN with the given settings (or
takes ``--weights``: ``shipped`` for the package's own weights, or a store folder / safetensors file),
scores the CNN alone and the whole check on every held-out test group, measures the rules' margins on
every real image read, and writes ``results.md`` and ``results.json`` to ``--out``.

The shipped weights (``covidlens/modality/modality_cnn.safetensors``) came from these default settings;
to refresh them, build ``covidlens models build modality --recipe full`` and copy its
``model.safetensors`` there, with this script's ``results.json`` as ``modality_cnn.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from covidlens.data.datasets import default_data_root
from covidlens.modality import check as mc
from covidlens.modality import samples as ms
from covidlens.modality.train import ModalitySettings, fit, gather, score

DEFAULTS = ModalitySettings()


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=None, help="data folder (default $COVIDLENS_DATA)")
    p.add_argument("--out", type=Path, required=True, help="folder for results.md and results.json")
    p.add_argument("--weights", default=None,
                   help="measure these weights instead of training: 'shipped', a store folder or a .safetensors file")
    p.add_argument("--train-per-set", type=int, default=DEFAULTS.train_per_set,
                   help="at most this many training images per real set")
    p.add_argument("--eval-per-set", type=int, default=DEFAULTS.eval_per_set,
                   help="at most this many val/test images per real set")
    p.add_argument("--negatives", type=int, default=DEFAULTS.negatives,
                   help="generated images per negative kind for training")
    p.add_argument("--negatives-eval", type=int, default=DEFAULTS.negatives_eval,
                   help="generated images per kind for val and test")
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    p.add_argument("--steps", type=int, default=DEFAULTS.steps, help="batches per epoch")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    p.add_argument("--lr", type=float, default=DEFAULTS.lr)
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    return p


def _weights(choice: str) -> mc.ModalityNet:
    if choice == "shipped":
        return mc.read_modality_net(mc.WEIGHTS)
    path = Path(choice)
    return mc.read_modality_net(path / "model.safetensors" if path.is_dir() else path)


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(1)
    settings = ModalitySettings(args.train_per_set, args.eval_per_set, args.negatives, args.negatives_eval,
                                args.epochs, args.steps, args.batch_size, args.lr, args.seed)
    root = args.data_root or default_data_root()
    started = time.time()
    data = gather(root, settings)
    if args.weights:
        net, best_epoch, best = _weights(args.weights), None, None
    else:
        fitted = fit(data, settings)
        net, best_epoch, best = fitted.net, fitted.best_epoch, round(fitted.val_mean_accuracy, 4)
    rows = [{k: v for k, v in row.items() if not k.endswith("ci95")} for row in score(net, data)]
    measures = data.measures
    margins = {
        "min_side_real": min(min(measures[(k, "min_side")]) for k in ("ct", "cxr")),
        "min_std_real": round(min(min(measures[(k, "std")]) for k in ("ct", "cxr")), 2),
        "max_colour_fraction_real": round(max(max(measures[(k, "colour_fraction")]) for k in ("ct", "cxr")), 4),
        "rules": {"MIN_SIDE": mc.MIN_SIDE, "MIN_STD": mc.MIN_STD, "COLOUR_CHROMA": mc.COLOUR_CHROMA,
                  "MAX_COLOUR_FRACTION": mc.MAX_COLOUR_FRACTION},
        "real_images_refused_by_rules": data.rule_hits,
    }
    command = "COVIDLENS_DATA=../shared/data python benchmarks/modality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {
        "command": command,
        "weights": args.weights or "trained by this run",
        "best_epoch": best_epoch,
        "val_mean_accuracy": best,
        "train_images": {"real": {n: c.get("train", 0) for n, c in data.counts.items()},
                         "generated_per_kind": settings.negatives, "generated_kinds": list(ms.NEGATIVE_KINDS),
                         "real_photographs": data.photos, "crops_per_photograph": ms.CROPS_PER_PHOTO},
        "held_out_real_pictures": data.held_out_pictures,
        "images_read": data.counts,
        "test": rows,
        "rule_margins": margins,
        "notes": [
            "The data folder has no natural photograph: real ones come from scikit-image (training: its bundled "
            "photographs but four; test: those four) and matplotlib (test: two photographs and an MR slice of a "
            "head). 'scene' is a synthetic photo-like generator that training never saw (colour: the whole "
            "check; scene-grey: its grey version, the CNN alone).",
            "Generated test images use seeds disjoint from training and validation.",
            "COVID-CT-MD: cap001 trains, normal001 validates, P001 tests (the registry keeps all three in test).",
            "covid-chestxray CT figures: its CT rows, split by patient 70/10/20 with group_split.",
            "DICOM sets are decided by their header's Modality in the whole check; cnn_accuracy is the CNN "
            "on their lung-windowed image alone.",
        ],
        "seconds": round(time.time() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


def markdown(result: dict) -> str:
    lines = ["| held-out test group | images | CNN alone | whole check |", "|---|---:|---:|---:|"]
    for row in result["test"]:
        lines.append(f"| {row['group']} | {row['n']} | {row['cnn_accuracy']:.3f} | {row['check_accuracy']:.3f} |")
    m = result["rule_margins"]
    lines += ["", f"Rules measured on every real image read: shorter side >= {m['min_side_real']:.0f} px "
                  f"(rule: < {m['rules']['MIN_SIDE']}), grey std >= {m['min_std_real']} (rule: < {m['rules']['MIN_STD']}), "
                  f"coloured fraction <= {m['max_colour_fraction_real']} (rule: > {m['rules']['MAX_COLOUR_FRACTION']}); "
                  f"real images refused by a rule: {len(m['real_images_refused_by_rules'])}.",
              f"Best epoch {result['best_epoch']} (val mean accuracy {result['val_mean_accuracy']})."
              if result["best_epoch"] else f"Weights measured: {result['weights']}.", ""]
    lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
