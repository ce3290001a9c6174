"""Benchmark (issue 23 item 3): a COVID-CT slice classifier that sees only the lungs (seed 002's
segment-then-classify idea on CT), beside today's classifier on the same recipe and seed.

    python benchmarks/ct_masked_classifier.py \\
        --model demo=/tmp/demo-idle-home2/models/ct-classifier \\
        --model raw-retrain=runs/ct_raw_demo/model \\
        --model masked=runs/ct_masked_demo/model:masked \\
        --lung-checkpoint runs/ct_lungs_unet_lite0/model_last \\
        --masked-table /tmp/ct_masked/covid-ct-masked.csv --out reports/ct_masked

A model given as ``PATH:masked`` sees lung-masked slices everywhere (black outside the lungs):
COVID-CT through the learned CT lung model (covidlens.segmentation.ct_lungs, the copies of
``--masked-table``, made by covidlens.data.ct_masked.ct_masked_table; a slice with no lung found is kept
whole), NY-SBU and COVID-CT-MD, which carry Hounsfield units, through the HU lung rule
(covidlens.measure.lungs.segment_lungs_hu, each volume in 3-D, as the screen road does) and shown
through the lung window as Sample.image does. The other models see the slices as they are.

Measured for every model:

1. COVID-CT official test split (203 images), covidlens.evaluation.evaluate.evaluate: AUC, accuracy and
   sensitivity at 0.5 and at the stored sensitivity threshold, calibration ECE and Brier; intervals
   resample patients (COVID) and source figures (NonCOVID).
2. The four source-cue probes of benchmarks/ct_source_cues.py (jpeg, border, marks, resize) on that
   split: mean |change in P(COVID)| with a bootstrap interval, decisions flipped at 0.5. For a masked
   model the probe is applied to the raw slice and the probed slice is then lung-masked by the lung
   model, as a screen would.
3. NY-SBU DICOM lung slices (meta region == "lungs", 12 slices, all COVID-19 patients): mean P(COVID),
   sensitivity at 0.5 and at the stored sensitivity threshold, Wilson interval over slices and a
   patient-resampled interval.
4. COVID-CT-MD, all labelled slices (classes 'not infected' / 'infected', 3 patients: P001 COVID-19,
   cap001 other pneumonia, normal001): infected-slice AUC, sensitivity and specificity at 0.5 and at the
   stored threshold; intervals resampling the 3 patients (the rule below uses these) and, beside them,
   slices.

SELECTION RULE, written and committed before any outside set was scored with the masked model:

    The masked model ("masked") replaces the store's demo ct-classifier ("demo") as the screen's
    default CT classifier only if ALL of these hold:
      (a) its COVID-CT-MD infected-slice AUC has a patient-resampled 95 % lower bound above 0.5;
      (b) its COVID-CT-MD point AUC exceeds the demo model's;
      (c) its COVID-CT test AUC has a 95 % lower bound above 0.5 (it still classifies in-source).
    Otherwise no classifier is shown to transfer: the default is left as it is and the screen's verdict
    keeps resting on the lesion model. The same-session raw retrain ("raw-retrain") is reported to show
    how much of any difference is training noise, not to choose; if the masked model passes (a)-(c) but
    does not also beat raw-retrain's COVID-CT-MD point AUC, the report says the gain is within retraining
    noise.

Writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ct_source_cues import PROBES, _binary, _binary_sizes, median_sizes, probed_images  # noqa: E402

from covidlens.checkpoint import load_checkpoint  # noqa: E402
from covidlens.data.ct_masked import mask_ct_images, mask_hu_slices  # noqa: E402
from covidlens.data.datasets import load_dataset  # noqa: E402
from covidlens.evaluation.evaluate import evaluate, resampling_groups  # noqa: E402
from covidlens.evaluation.metrics import binary_metrics, bootstrap_ci, json_safe  # noqa: E402
from covidlens.explain.measure import mean_ci, wilson_interval  # noqa: E402
from covidlens.inference import image_probabilities  # noqa: E402


def p_covid(ckpt, images) -> np.ndarray:
    return image_probabilities(ckpt, images, tta=ckpt.info.tta)[:, ckpt.info.positive_index]


def group_mean_ci(values, groups, n_boot: int, seed: int = 0) -> list[float]:
    """95 % percentile interval of a mean, resampling whole groups."""
    values, groups = np.asarray(values, float), np.asarray(groups)
    names = np.unique(groups)
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        pick = rng.choice(names, len(names))
        means.append(np.concatenate([values[groups == g] for g in pick]).mean())
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def thresholds(ckpt) -> dict[str, float]:
    out = {"0.5": 0.5}
    if ckpt.info.sensitivity_threshold is not None:
        out["stored"] = float(ckpt.info.sensitivity_threshold)
    return out


def load_data(root, masked_table: str, lung_ckpt: str, need_masked: bool, log) -> dict:
    ct = load_dataset("covid-ct", root)
    positive = ct.positive_index
    test = [s for s in ct.split("test") if s.label >= 0]
    train = [s for s in ct.split("train") if s.label >= 0]
    test_images = [s.image() for s in test]
    log(f"probing {len(test)} COVID-CT test slices ...")
    probes = probed_images(_binary(test, positive), test_images, _binary_sizes(median_sizes(train), positive))
    data = {"test_y": np.array([int(s.label == positive) for s in test]), "test_images": test_images,
            "probes": {k: v for k, v in probes.items()}}
    sbu = [s for s in load_dataset("ny-sbu-dicom", root).samples if s.meta.get("region") == "lungs"]
    md = load_dataset("covid-ct-md", root)
    data.update({"sbu_images": [s.image() for s in sbu], "sbu_groups": np.array([s.group for s in sbu]),
                 "md_images": [s.image() for s in md.samples], "md_y": np.array([s.label for s in md.samples]),
                 "md_groups": np.array([s.group for s in md.samples])})
    if need_masked:
        table = load_dataset(masked_table)
        by_split = [s for s in table.split("test") if s.label >= 0]
        if len(by_split) != len(test):
            raise SystemExit(f"{masked_table} has {len(by_split)} test slices, COVID-CT {len(test)}.")
        data["masked_test_images"] = [s.image() for s in by_split]
        data["masked_probes"] = {}
        for name, (images, changed) in probes.items():
            log(f"lung-masking the {name} probe's slices ...")
            masked, _, empty = mask_ct_images(lung_ckpt, images)
            data["masked_probes"][name] = (masked, changed, int(empty.sum()))
        log("HU lung masks of NY-SBU and COVID-CT-MD ...")
        data["masked_sbu_images"], sbu_empty = mask_hu_slices(sbu)
        data["masked_md_images"], md_empty = mask_hu_slices(md.samples)
        data["hu_empty"] = {"ny_sbu_lungs": int(sbu_empty.sum()), "covid_ct_md": int(md_empty.sum())}
    return data


def score_model(name: str, path: str, masked: bool, data: dict, root, masked_table: str, n_boot: int, out: Path) -> dict:
    started = time.time()
    ckpt = load_checkpoint(path)
    cuts = thresholds(ckpt)
    res = {"checkpoint": path, "input": "lung-masked" if masked else "raw", "thresholds": cuts,
           "temperature": float(getattr(ckpt.info, "temperature", 1.0) or 1.0)}
    ev = evaluate([ckpt], masked_table if masked else "covid-ct", root=None if masked else root, split="test",
                  n_boot=n_boot, out_dir=out / f"evaluate-{name}", check_modality=False)
    res["covid_ct_test"] = ev

    y = data["test_y"]
    p = p_covid(ckpt, data["masked_test_images"] if masked else data["test_images"])
    probes = {}
    for probe in PROBES:
        if masked:
            images, changed, empty = data["masked_probes"][probe]
        else:
            (images, changed), empty = data["probes"][probe], None
        q = p_covid(ckpt, images)
        delta = (q - p)[changed]
        flips = ((q >= 0.5) != (p >= 0.5))[changed]
        mean, lo, hi = mean_ci(np.abs(delta), n_boot) if len(delta) else (float("nan"),) * 3
        probes[probe] = {"images_changed": int(changed.sum()), "mean_abs_change": mean, "ci95": [lo, hi],
                         "mean_change_covid": float(delta[y[changed] == 1].mean()) if (y[changed] == 1).any() else None,
                         "mean_change_noncovid": float(delta[y[changed] == 0].mean()) if (y[changed] == 0).any() else None,
                         "flipped": int(flips.sum()), "no_lung_kept_whole": empty}
    res["probes"] = probes

    q = p_covid(ckpt, data["masked_sbu_images"] if masked else data["sbu_images"])
    sbu = {"n": len(q), "patients": int(len(set(data["sbu_groups"]))), "mean_p": float(q.mean())}
    for key, t in cuts.items():
        hits = q >= t
        sbu[f"sensitivity_{key}"] = {"value": float(hits.mean()), "wilson95": [max(0.0, v) for v in wilson_interval(int(hits.sum()), len(q))],
                                     "patient95": group_mean_ci(hits, data["sbu_groups"], n_boot)}
    res["ny_sbu_lungs"] = sbu

    q = p_covid(ckpt, data["masked_md_images"] if masked else data["md_images"])
    yy, groups = data["md_y"], data["md_groups"]
    md = {"n_infected": int(yy.sum()), "n_not_infected": int((1 - yy).sum())}
    for key, t in cuts.items():
        m = binary_metrics(yy, q, t)
        by_patient = bootstrap_ci(yy, q, t, n_boot=n_boot, groups=list(groups))
        by_slice = bootstrap_ci(yy, q, t, n_boot=n_boot)
        md[key] = {k: {"value": m[k], "patient95": list(by_patient[k]), "slice95": list(by_slice[k])}
                   for k in ("auc", "recall", "specificity", "accuracy")}
    md["mean_p"] = {f"{g} {'infected' if i else 'not infected'}": float(q[(groups == g) & (yy == i)].mean())
                    for g in np.unique(groups) for i in (1, 0) if ((groups == g) & (yy == i)).any()}
    res["covid_ct_md"] = md
    res["seconds"] = time.time() - started
    return res


def verdict(results: dict) -> dict:
    m, d = results.get("masked"), results.get("demo")
    if m is None or d is None:
        return {"picked": None, "why": "needs both 'masked' and 'demo'"}
    md_auc, md_lo = m["covid_ct_md"]["0.5"]["auc"]["value"], m["covid_ct_md"]["0.5"]["auc"]["patient95"][0]
    demo_auc = d["covid_ct_md"]["0.5"]["auc"]["value"]
    ct_lo = m["covid_ct_test"]["operating_points"]["threshold_0.5"]["ci95"]["auc"][0]
    checks = {"a_md_auc_lower_bound_above_0.5": bool(md_lo > 0.5),
              "b_md_auc_above_demo": bool(md_auc > demo_auc),
              "c_covid_ct_auc_lower_bound_above_0.5": bool(ct_lo is not None and ct_lo > 0.5)}
    picked = "masked" if all(checks.values()) else "demo (unchanged; no classifier shown to transfer)"
    out = {"checks": checks, "picked": picked, "masked_md_auc": md_auc, "masked_md_auc_patient_lower": md_lo,
           "demo_md_auc": demo_auc, "masked_covid_ct_auc_lower": ct_lo}
    if "raw-retrain" in results and all(checks.values()):
        out["beats_raw_retrain"] = bool(md_auc > results["raw-retrain"]["covid_ct_md"]["0.5"]["auc"]["value"])
    return out


def _c(block) -> str:
    return f"{block['value']:.3f} [{block['patient95'][0]:.3f}, {block['patient95'][1]:.3f}]"


def markdown(results: dict, data_notes: dict, rule: dict) -> str:
    lines = ["# Lung-masked COVID-CT classifier beside today's (benchmarks/ct_masked_classifier.py)", "",
             "| model | input | checkpoint | stored threshold | temperature |", "|---|---|---|---|---|"]
    for n, r in results.items():
        lines.append(f"| {n} | {r['input']} | {r['checkpoint']} | {r['thresholds'].get('stored', float('nan')):.3f} | {r['temperature']:.2f} |")
    lines += ["", "## COVID-CT test (203 slices); intervals resample patients / source figures", "",
              "| model | AUC | accuracy 0.5 | sensitivity 0.5 | specificity 0.5 | sensitivity stored | specificity stored | ECE | Brier |",
              "|---|---|---|---|---|---|---|---|---|"]
    for n, r in results.items():
        ev = r["covid_ct_test"]
        lines.append(f"| {n} | " + " | ".join(_ev_cells(ev)) + " |")
    lines += ["", "## Source-cue probes: mean abs change in P(COVID) [95 % CI], flipped at 0.5 / changed", "",
              "| model | " + " | ".join(PROBES) + " |", "|---|" + "---|" * len(PROBES)]
    for n, r in results.items():
        lines.append(f"| {n} | " + " | ".join(
            f"{q['mean_abs_change']:.3f} [{q['ci95'][0]:.3f}, {q['ci95'][1]:.3f}], {q['flipped']}/{q['images_changed']}"
            for q in (r["probes"][p] for p in PROBES)) + " |")
    lines += ["", "## NY-SBU DICOM lung slices (all COVID-19 patients); [Wilson over slices] {patients resampled}", "",
              "| model | n | mean P | sensitivity 0.5 | sensitivity stored |", "|---|---|---|---|---|"]
    for n, r in results.items():
        s = r["ny_sbu_lungs"]
        cells = []
        for key in ("0.5", "stored"):
            b = s.get(f"sensitivity_{key}")
            cells.append("-" if b is None else f"{b['value']:.3f} [{b['wilson95'][0]:.3f}, {b['wilson95'][1]:.3f}] "
                                                 f"{{{b['patient95'][0]:.3f}, {b['patient95'][1]:.3f}}}")
        lines.append(f"| {n} | {s['n']} ({s['patients']} patients) | {s['mean_p']:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "## COVID-CT-MD labelled slices, infected vs not infected (3 patients); [patients resampled] (slices resampled)", "",
              "| model | AUC | sensitivity 0.5 | specificity 0.5 | sensitivity stored | specificity stored | mean P by patient and label |",
              "|---|---|---|---|---|---|---|"]
    for n, r in results.items():
        md = r["covid_ct_md"]
        a = md["0.5"]["auc"]
        st = md.get("stored", md["0.5"])
        lines.append(f"| {n} | {_c(a)} ({a['slice95'][0]:.3f}, {a['slice95'][1]:.3f}) | {_c(md['0.5']['recall'])} | "
                     f"{_c(md['0.5']['specificity'])} | {_c(st['recall'])} | {_c(st['specificity'])} | "
                     + "; ".join(f"{k} {v:.2f}" for k, v in md["mean_p"].items()) + " |")
    lines += ["", "## Masking notes", "", "```", json.dumps(data_notes, indent=1), "```",
              "", "## Selection rule (committed in the docstring before scoring)", "", "```", json.dumps(rule, indent=1), "```"]
    return "\n".join(lines) + "\n"


def _ev_cells(ev: dict) -> list[str]:
    def cell(point: str, metric: str) -> str:
        block = ev["operating_points"][point]
        v, ci = block["metrics"][metric], block["ci95"][metric]
        return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"

    points = list(ev["operating_points"])
    auc = cell(points[0], "auc")
    out = [auc, cell(points[0], "accuracy"), cell(points[0], "recall"), cell(points[0], "specificity")]
    out += [cell(points[-1], "recall"), cell(points[-1], "specificity")] if len(points) > 1 else ["-", "-"]
    cal = ev.get("calibration", {})
    out += [_cal(cal, "ece"), _cal(cal, "brier")]
    return out


def _cal(cal: dict, key: str) -> str:
    """ECE or Brier as stored (at the checkpoint's own temperature) with its interval."""
    if key not in cal.get("metrics", {}):
        return "-"
    ci = cal.get("ci95", {}).get(key, [float("nan")] * 2)
    return f"{cal['metrics'][key]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="NAME=PATH[:masked]")
    ap.add_argument("--lung-checkpoint", default="runs/ct_lungs_unet_lite0/model_last")
    ap.add_argument("--masked-table", default="/tmp/ct_masked/covid-ct-masked.csv")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="reports/ct_masked")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = {}
    for item in args.model:
        name, _, spec = item.partition("=")
        path, _, how = spec.partition(":")
        models[name] = (path, how == "masked")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    data = load_data(args.data_root, args.masked_table, args.lung_checkpoint, any(m for _, m in models.values()), log)
    notes = {"hu_masks_empty_kept_whole": data.get("hu_empty"),
             "probe_slices_without_lung_kept_whole": {k: v[2] for k, v in data.get("masked_probes", {}).items()}}
    summary = Path(args.masked_table).with_suffix(".json")
    if summary.is_file():
        s = json.loads(summary.read_text())
        notes["covid_ct_masked_copies"] = {k: s[k] for k in ("images", "kept_whole", "mean_lung_fraction")}
    results = {}
    for name, (path, masked) in models.items():
        log(f"scoring {name} ({path}, {'lung-masked' if masked else 'raw'} input) ...")
        results[name] = score_model(name, path, masked, data, args.data_root, args.masked_table, args.n_boot, out)
    rule = verdict(results)
    (out / "results.json").write_text(json.dumps(json_safe({"models": results, "notes": notes, "rule": rule}), indent=2))
    (out / "results.md").write_text(markdown(results, notes, rule))
    print(markdown(results, notes, rule))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
