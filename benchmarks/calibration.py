"""Benchmark: are the classifiers' probabilities right, before and after temperature scaling?

    python benchmarks/calibration.py --data-root ../shared/data --out reports/calibration \
        [--store $COVIDLENS_HOME] [--bootstrap 1000]

For the store's ``ct-classifier`` and ``cxr-classifier`` (built with ``covidlens models build``): a copy
of each is calibrated on its own validation split (:func:`covidlens.evaluation.calibration.calibrate_checkpoint`;
the store is not changed), and both the raw and the calibrated model are scored with ``evaluate`` on:

* CT: COVID-CT's test split (in source); COVID-CT-MD's slices (outside: 3 scans, 'infected' slices
  taken as COVID and the rest as NonCOVID; normal001 is 0 by diagnosis, not by a reader);
* CXR (lung-masked inputs, as the model was trained): COVID-19 Radiography's test split (in source);
  covid-chestxray's COVID-19 X-rays without near-duplicates of COVID-19 Radiography against its test
  normals (outside, built as in ``benchmarks/cxr_table1.py``; the normals come from the training
  source, a confounder said beside the numbers).

Reported per set: expected calibration error (15 bins) and Brier score with 95 % intervals that
resample patients (or near-duplicate groups) where the set knows them, AUC, and the reliability
diagram before/after. Calibration is never judged on the validation split it was fitted on.
Writes ``results.md``, ``results.json`` and ``reliability-<model>-<set>.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from covidlens.evaluation.calibration import calibrate_checkpoint
from covidlens.evaluation.evaluate import evaluate
from covidlens.evaluation.metrics import json_safe
from covidlens.evaluation.plots import plot_reliability

sys.path.insert(0, str(Path(__file__).resolve().parent))


def cxr_outside_table(lung_model: Path, root: Path | None, work: Path) -> tuple[Path, str]:
    """covid-chestxray COVID-19 (no near-duplicates of COVID-19 Radiography) + radiography test normals,
    lung-masked; and a sentence on what it holds."""
    from cxr_table1 import cross_source_positives

    from covidlens.data.datasets import load_dataset
    from covidlens.data.derived import derive_lung_images, write_table
    from covidlens.segmentation.lungs import load_lung_model

    lungs = load_lung_model(lung_model)
    rad, ext = load_dataset("covid19-radiography", root), load_dataset("covid-chestxray", root)
    rad_folder, ext_folder = rad.samples[0].path.parents[1], ext.samples[0].path.parents[1]
    ext_covid = [s for s in ext.samples if s.label == ext.classes.index("COVID-19")]
    kept, dropped = cross_source_positives(ext_covid, rad.samples, ext_folder, rad_folder)
    normals = [s for s in rad.samples if s.split in ("test", "val") and rad.classes[s.label] == "Normal"]
    rad_images = derive_lung_images(lungs, normals, rad_folder, work, "covid19-radiography")
    ext_images = derive_lung_images(lungs, kept, ext_folder, work, "covid-chestxray")
    rows = [(p, "Normal", s.split, s.group) for p, s in zip(rad_images["masked"], normals)]
    rows += [(p, "COVID", "test", f"patient:{s.group}") for p, s in zip(ext_images["masked"], kept)]
    note = (f"{len(kept)} covid-chestxray COVID-19 X-rays of {len({s.group for s in kept})} patients ({dropped} "
            f"near-duplicates left out) against {sum(s.split == 'test' for s in normals)} COVID-19 Radiography test normals")
    return write_table(work / "tables" / "cross-source-masked.csv", rows), note


def sets_for(name: str, info_dataset: str, lung_model: Path | None, root: Path | None, work: Path) -> list[dict]:
    if name == "ct-classifier":
        return [
            {"set": "COVID-CT test (in source)", "data": "covid-ct"},
            {"set": "COVID-CT-MD slices (outside)", "data": "covid-ct-md",
             "renames": {"infected": "COVID", "not infected": "NonCOVID"},
             "note": "3 scans; 'infected' slices as COVID; normal001 slices are 0 by diagnosis"},
        ]
    table, note = cxr_outside_table(lung_model, root, work)
    return [
        {"set": "COVID-19 Radiography test (in source)", "data": info_dataset},
        {"set": "covid-chestxray vs radiography normals (outside)", "data": str(table),
         "note": note + "; the normals come from the training source (a confounder)"},
    ]


def score(checkpoint: Path, spec: dict, root, n_boot: int) -> dict:
    result = evaluate([checkpoint], spec["data"], root, "test", n_boot=n_boot, class_renames=spec.get("renames"))
    c = result["calibration"]
    auc = result["operating_points"]["threshold_0.5"]["metrics"].get("auc")
    return {"n_images": result["n_images"], "groups": result["bootstrap_resamples_what"],
            "ece": c["metrics"]["ece"], "ece_ci": c["ci95"]["ece"], "brier": c["metrics"]["brier"],
            "brier_ci": c["ci95"]["brier"], "auc": auc, "reliability": c["reliability"],
            "mean_p": float(sum(b["predicted"] * b["n"] for b in c["reliability"] if b["n"]) / result["n_images"]),
            "positive_share": result["n_positive"] / result["n_images"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="COVIDLENS_HOME holding models/ (default: the store's own)")
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--out", type=Path, default=Path("reports/calibration"))
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    args.out = args.out.resolve()  # the derived tables hold paths, read from the table's own folder
    torch.set_num_threads(args.threads)
    if args.store:
        import os

        os.environ["COVIDLENS_HOME"] = str(args.store)
    from covidlens.store.store import store_root

    models = store_root()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in ("ct-classifier", "cxr-classifier"):
        source = models / name
        if not (source / "model.json").is_file():
            print(f"{name}: not in the store at {models}; build it with covidlens models build {name}", file=sys.stderr)
            continue
        raw, calibrated = args.out / name / "raw", args.out / name / "calibrated"
        for folder in (raw, calibrated):
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(source, folder)
        fit = calibrate_checkpoint(calibrated, root=args.data_root)
        print(f"{name}: temperature {fit['temperature']:.3f} fitted on {fit['n_images']} validation images", flush=True)
        info_dataset = json.loads((source / "model.json").read_text())["dataset"]
        for spec in sets_for(name, info_dataset, models / "cxr-lungs", args.data_root, args.out / "work"):
            before, after = score(raw, spec, args.data_root, args.bootstrap), score(calibrated, spec, args.data_root, args.bootstrap)
            slug = spec["set"].split(" (")[0].lower().replace(" ", "-")
            plot_reliability({"raw": before["reliability"], f"T = {fit['temperature']:.2f}": after["reliability"]},
                             args.out / f"reliability-{name}-{slug}.png", title=f"{name} on {spec['set']}")
            rows.append({"model": name, "set": spec["set"], "note": spec.get("note", ""), "temperature": fit["temperature"],
                         "fit": fit, "before": before, "after": after})
            print(f"  {spec['set']}: ECE {before['ece']:.3f} -> {after['ece']:.3f}, "
                  f"Brier {before['brier']:.3f} -> {after['brier']:.3f}", flush=True)

    def cell(d, key):
        lo, hi = d[f"{key}_ci"]
        return f"{d[key]:.3f} [{lo:.3f}, {hi:.3f}]"

    lines = [
        "# Calibration of P(COVID) before and after temperature scaling",
        "",
        "Command: `python benchmarks/calibration.py` (see its docstring). Temperature fitted on each model's "
        "validation split only; ECE with 15 equal-width bins; Brier summed over both classes; 95 % bootstrap "
        f"intervals ({args.bootstrap} resamples of the groups named per row).",
        "",
        "| model | set | images | T | AUC | mean P(COVID) / COVID share | ECE raw | ECE calibrated | Brier raw | Brier calibrated |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['model']} | {r['set']} | {b['n_images']} | {r['temperature']:.2f} | {b['auc']:.3f} | "
                     f"{b['mean_p']:.2f} -> {a['mean_p']:.2f} / {b['positive_share']:.2f} | {cell(b, 'ece')} | "
                     f"{cell(a, 'ece')} | {cell(b, 'brier')} | {cell(a, 'brier')} |")
    lines += [""] + [f"- {r['model']}, {r['set']}: " + "; ".join(filter(None, [r["note"], f"intervals resample {r['before']['groups']}"])) + "."
                     for r in rows]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(json_safe(rows), indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
