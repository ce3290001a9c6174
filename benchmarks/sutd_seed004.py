"""Benchmark: seed 004 reproduced on sutd-3class, one 3-class model against a two-stage cascade.

    python benchmarks/sutd_seed004.py --dataset sutd-3class --out reports/sutd_seed004 \
        [--config configs/sutd_lite0.yaml] [--work DIR] [--epochs N] [--limit-per-class N] [--input-size N]
        [--threads 2] [--set KEY=VALUE ...]

NOT COVID-19: every image of sutd-3class is a pediatric Kermany et al. (2018) chest X-ray; its
``covid`` class is viral pneumonia and ``non-covid`` bacterial pneumonia. Nothing measured here is
evidence of COVID-19 detection, and every output says so.

Three networks are trained with one config, by default ``configs/seed004_vgg16bn.yaml`` (the seed's VGG16-BN from scratch,
1 channel, 150 px, [-1, 1], Adam lr 0.01, batch 64, cross-entropy = NLL of the log-softmax,
translation-only augmentation; ``--config configs/sutd_lite0.yaml`` is EfficientNet-Lite0 from
ImageNet weights): the 3-class model, stage 1 (normal vs infected, on every image) and
stage 2 (covid vs non-covid, on the infected images only). The two stages read CSV tables
(``path,label,split,patient_id``) written under ``--work``; they keep the images' splits and patients.
``--dataset sutd-3class`` is the official (course) split, ``sutd-3class-patient`` its patient-disjoint
variant from the Kermany map (every official test image stays in test).

Both designs give the three probabilities normal / covid / non-covid (the cascade's through
:mod:`covidlens.evaluation.cascade`) and are scored alike on the whole test split (615 images in the
official split; 1060 in the patient-disjoint one, which adds the images of the test patients): accuracy,
per-class precision and recall with 95% intervals that resample Kermany patients, the 3 x 3 confusion
matrix, and the operating point with the fewest missed infected images (threshold on
P(infected) = 1 - P(normal) chosen on validation, reported on test with its cost in normals called
infected). With both designs, the 3-class model minus the cascade in accuracy and macro-F1 is reported as a
paired difference: both scored on every patient resample. The seed's own figure, 68 % accuracy on its 25
test images, is printed beside them.

Finished runs are reused by name (``<runs>/<config stem>-<dataset>-<design>``): a rerun only scores.
Writes ``results.md`` and ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest

from covidlens.checkpoint import load_checkpoint
from covidlens.data.datasets import load_dataset
from covidlens.evaluation.cascade import (
    CASCADE_CLASSES,
    cascade_predict,
    fewest_missed_threshold,
    infected_counts,
    infected_score,
    operating_point_predictions,
    per_class_rates,
)
from covidlens.evaluation.evaluate import class_map, resampling_groups
from covidlens.evaluation.metrics import (
    bootstrap_ci,
    json_safe,
    multiclass_bootstrap_ci,
    multiclass_confusion,
    multiclass_metrics,
    paired_multiclass_difference,
)
from covidlens.inference import class_probabilities
from covidlens.training.config import load_config
from covidlens.training.fit import MODEL_DIR, run_folder, train

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "seed004_vgg16bn.yaml"
NOT_COVID = (
    "NOT COVID-19: every sutd-3class image is a pediatric Kermany et al. (2018) chest X-ray; its 'covid' class "
    "is viral pneumonia and 'non-covid' is bacterial pneumonia. These results are no evidence of COVID-19 detection."
)
#: Seed 004's Fig. 6 on its 25 test images, rows the true class (normal, covid, non-covid), columns predicted.
SEED_CONFUSION = [[5, 3, 0], [0, 8, 1], [0, 4, 4]]
SEED_CORRECT, SEED_TEST_IMAGES = 17, 25
#: The two cascade stages: the label each 3-class label becomes, and the stage's positive class.
STAGES = {
    "stage1": ({"normal": "normal", "covid": "infected", "non-covid": "infected"}, "infected"),
    "stage2": ({"covid": "covid", "non-covid": "non-covid"}, "covid"),
}


def write_stage_tables(table, work: Path) -> dict[str, Path]:
    """One CSV per cascade stage under ``work``, every image keeping its split and patient."""
    work.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stage, (relabel, _) in STAGES.items():
        path = work / f"{table.name}-{stage}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "split", "patient_id"])
            for s in table.samples:
                name = table.classes[s.label]
                if name in relabel:
                    writer.writerow([str(Path(s.path).resolve()), relabel[name], s.split, s.group])
        paths[stage] = path
    return paths


def design_config(design: str, dataset: str, args):
    values = {"name": f"{args.config.stem}-{args.dataset}-{design}", "trainer.out_dir": str(args.runs), "data.dataset": dataset}
    if design in STAGES:
        values["data.positive_class"] = STAGES[design][1]
    elif args.data_root:
        values["data.root"] = str(args.data_root)
    if args.epochs is not None:
        values["optim.epochs"] = args.epochs
    if args.limit_per_class is not None:
        values["data.limit_per_class"] = args.limit_per_class
    if args.input_size is not None:
        values["model.input_size"] = args.input_size
    return load_config(args.config, args.overrides, values)


def trained(config):
    run_dir = run_folder(config)
    if not (run_dir / MODEL_DIR / "model.json").is_file():
        print(f"== training {config.name} on {config.data.dataset} ({config.optim.epochs} epochs)", flush=True)
        train(config, resume=(run_dir / "checkpoints" / "last.ckpt").is_file(), progress=False)
    return load_checkpoint(run_dir / MODEL_DIR), float((run_dir / "train_seconds.txt").read_text()) / 60


def score(y, probs, y_val, probs_val, groups, args) -> dict:
    """Everything a design is reported with: multiclass metrics at the most probable class, and the
    fewest-missed operating point chosen on validation."""
    names = list(CASCADE_CLASSES)
    threshold = fewest_missed_threshold(y_val, probs_val)
    pred = operating_point_predictions(probs, threshold)
    infected = (y != 0).astype(int)
    at_point = bootstrap_ci(infected, infected_score(probs), threshold, n_boot=args.bootstrap, groups=groups)
    intervals = multiclass_bootstrap_ci(y, probs, names, n_boot=args.bootstrap, groups=groups)
    return {
        "metrics": multiclass_metrics(y, probs, names),
        "ci95": {k: list(v) for k, v in intervals.items()},
        "confusion_matrix": multiclass_confusion(y, probs, len(names)).tolist(),
        "counts_most_probable": {
            "val": infected_counts(y_val, probs_val.argmax(axis=1)),
            "test": infected_counts(y, probs.argmax(axis=1)),
        },
        "fewest_missed": {
            "threshold_on_p_infected": threshold,
            "val": infected_counts(y_val, operating_point_predictions(probs_val, threshold)),
            "test": infected_counts(y, pred),
            "test_rates": per_class_rates(multiclass_confusion(y, pred, len(names)), names),
            "test_confusion_matrix": multiclass_confusion(y, pred, len(names)).tolist(),
            "test_infected_sensitivity_ci95": list(at_point["recall"]),
            "test_normal_specificity_ci95": list(at_point["specificity"]),
        },
    }


def _cell(result: dict, key: str) -> str:
    value, (lo, hi) = result["metrics"][key], result["ci95"][key]
    if value is None or value != value or lo is None or hi is None:
        return "n/a"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def _matrix(rows, title: str) -> list[str]:
    names = list(CASCADE_CLASSES)
    lines = [f"{title} (rows true, columns predicted)", "", "| true \\ predicted | " + " | ".join(names) + " |",
             "|---" * (len(names) + 1) + "|"]
    lines += [f"| {names[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(rows)]
    return lines + [""]


def report(results: dict, args) -> str:
    names = list(CASCADE_CLASSES)
    seed_ci = binomtest(SEED_CORRECT, SEED_TEST_IMAGES).proportion_ci(method="wilson")
    lines = [
        f"# Seed 004 on {args.dataset}: one 3-class {results['model']} against a two-stage cascade", "",
        f"**{NOT_COVID}**", "",
        f"Test: the whole {results['n_test']}-image test split ({results['test_counts']}); intervals: 95 % bootstrap "
        f"over {results['resampled']}, {args.bootstrap} resamples. Seed 004 reported accuracy "
        f"{SEED_CORRECT / SEED_TEST_IMAGES:.0%} on its {SEED_TEST_IMAGES} test images "
        f"(Wilson 95 % [{seed_ci.low:.2f}, {seed_ci.high:.2f}]).", "",
        "| design | train min | accuracy | macro-F1 | " + " | ".join(f"precision {n} | recall {n}" for n in names) + " |",
        "|---" * (3 + 2 * len(names)) + "|---|",
    ]
    for design, r in results["designs"].items():
        cells = [_cell(r, "accuracy"), _cell(r, "macro_f1")] + [_cell(r, f"{m}/{n}") for n in names for m in ("precision", "recall")]
        lines.append(f"| {design} | {r['train_minutes']:.1f} | " + " | ".join(cells) + " |")
    if results.get("paired"):
        lines += ["", "3-class minus cascade on the same test images (paired bootstrap over the same resamples):", ""]
        lines += [f"- {k}: {v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]" for k, v in results["paired"].items()]
    lines += ["", "Most probable class (the cascade: normal when P(infected) < 0.5, else stage 2's class):", ""]
    for design, r in results["designs"].items():
        lines += _matrix(r["confusion_matrix"], f"**{design}**")
    lines += ["Fewest missed infected: threshold on P(infected) = 1 - P(normal), the highest that misses no "
              "infected validation image; infected images take their most probable infected class.", "",
              "| design | threshold | val missed / normals called infected | test missed / normals called infected "
              "| test infected sensitivity | test normal specificity | test accuracy |",
              "|---|---|---|---|---|---|---|"]
    for design, r in results["designs"].items():
        f = r["fewest_missed"]
        v, t = f["val"], f["test"]
        sens, spec = f["test_infected_sensitivity_ci95"], f["test_normal_specificity_ci95"]
        n_inf = t["missed_infected"] + t["infected_found"]
        n_norm = t["normal_called_infected"] + t["normal_cleared"]
        lines.append(
            f"| {design} | {f['threshold_on_p_infected']:.3f} | {v['missed_infected']} / {v['normal_called_infected']} "
            f"| {t['missed_infected']} / {t['normal_called_infected']} "
            f"| {t['infected_found'] / n_inf:.3f} [{sens[0]:.3f}, {sens[1]:.3f}] "
            f"| {t['normal_cleared'] / n_norm:.3f} [{spec[0]:.3f}, {spec[1]:.3f}] | {f['test_rates']['accuracy']:.3f} |"
        )
    lines.append("")
    for design, r in results["designs"].items():
        base = r["counts_most_probable"]["test"]
        t = r["fewest_missed"]["test"]
        lines.append(
            f"- {design}: against the most probable class, the operating point changes missed infected test images "
            f"{base['missed_infected']} -> {t['missed_infected']} and normals called infected "
            f"{base['normal_called_infected']} -> {t['normal_called_infected']}."
        )
    lines += ["", *_matrix(SEED_CONFUSION, f"Seed 004's Fig. 6 ({SEED_TEST_IMAGES} test images)"), f"**{NOT_COVID}**", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["sutd-3class", "sutd-3class-patient"], default="sutd-3class")
    parser.add_argument("--config", type=Path, default=CONFIG,
                        help="training config of all three networks (default the seed's VGG16-BN, "
                             "configs/seed004_vgg16bn.yaml; configs/sutd_lite0.yaml is the ImageNet Lite0)")
    parser.add_argument("--data-root", type=Path, help="folder holding cxr/sutd-3class (default $COVIDLENS_DATA)")
    parser.add_argument("--out", type=Path, default=Path("reports/sutd_seed004"), help="report folder")
    parser.add_argument("--work", type=Path, default=None, help="folder for the stage CSV tables (default OUT/work)")
    parser.add_argument("--runs", type=Path, default=None, help="run folder (default OUT/runs)")
    parser.add_argument("--epochs", type=int, help="override optim.epochs of every run")
    parser.add_argument("--limit-per-class", type=int, help="train on at most this many images per class")
    parser.add_argument("--input-size", type=int, help="override the 150 px input")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for training and scoring (default 2)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--designs", nargs="+", choices=["3-class", "cascade"], default=["3-class", "cascade"],
                        help="which designs to train and score (default both)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key in every run (repeatable)")
    args = parser.parse_args(argv)
    args.work = args.work or args.out / "work"
    args.runs = args.runs or args.out / "runs"
    torch.set_num_threads(args.threads)
    print(NOT_COVID, flush=True)
    table = load_dataset(args.dataset, args.data_root)
    if tuple(table.classes) != CASCADE_CLASSES:
        raise SystemExit(f"{args.dataset} has classes {table.classes}, expected {list(CASCADE_CLASSES)}")
    stage_tables = write_stage_tables(table, args.work)
    test = [s for s in table.split("test") if s.label >= 0]
    val = [s for s in table.split("val") if s.label >= 0]
    y, y_val = np.array([s.label for s in test]), np.array([s.label for s in val])
    groups, resampled = resampling_groups(table, test, y)

    designs, runs = {}, {}
    if "3-class" in args.designs:
        three, three_minutes = trained(design_config("3-class", args.dataset, args))
        order = class_map(three.info, table)
        if order != list(range(len(CASCADE_CLASSES))):
            raise SystemExit(f"the 3-class model's classes {three.info.classes} are not the data set's {table.classes}")
        designs["3-class"] = (class_probabilities(three, test), class_probabilities(three, val), three_minutes)
        runs["3-class"] = str(three.path)
    if "cascade" in args.designs:
        stage1, stage1_minutes = trained(design_config("stage1", str(stage_tables["stage1"]), args))
        stage2, stage2_minutes = trained(design_config("stage2", str(stage_tables["stage2"]), args))
        designs["cascade"] = (cascade_predict(stage1, stage2, test), cascade_predict(stage1, stage2, val),
                              stage1_minutes + stage2_minutes)
        runs.update(stage1=str(stage1.path), stage2=str(stage2.path))
    results = {
        "note": NOT_COVID,
        "dataset": args.dataset,
        "n_test": len(test),
        "test_counts": ", ".join(f"{n} {int((y == k).sum())}" for k, n in enumerate(CASCADE_CLASSES)),
        "n_val": len(val),
        "resampled": resampled,
        "bootstrap_resamples": args.bootstrap,
        "runs": runs,
        "model": design_config("3-class", args.dataset, args).model.name,
        "config": str(args.config),
        "seed004": {"accuracy": SEED_CORRECT / SEED_TEST_IMAGES, "test_images": SEED_TEST_IMAGES,
                    "confusion_matrix": SEED_CONFUSION},
        "designs": {},
    }
    for design, (probs, probs_val, minutes) in designs.items():
        results["designs"][design] = {"train_minutes": minutes, **score(y, probs, y_val, probs_val, groups, args)}
    if len(designs) == 2:
        names = list(CASCADE_CLASSES)
        results["paired"] = {
            metric: list(paired_multiclass_difference(y, designs["3-class"][0], designs["cascade"][0], names, metric,
                                                      n_boot=args.bootstrap, groups=groups))
            for metric in ("accuracy", "macro_f1")
        }
    args.out.mkdir(parents=True, exist_ok=True)
    text = report(results, args)
    (args.out / "results.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(json_safe(results), indent=2) + "\n")
    print(text)
    for design, r in results["designs"].items():
        print(f"{design}: accuracy {r['metrics']['accuracy']:.3f} on {len(test)} test images against seed 004's "
              f"{SEED_CORRECT / SEED_TEST_IMAGES:.0%} on {SEED_TEST_IMAGES} ({NOT_COVID.split(':')[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
