"""Benchmark: the screen road at study level on every real study here (issue 21).

    python benchmarks/screen_studies.py --data-root ../shared/data --out reports/screen_studies \
        --lesion-checkpoint RUN/model [--ct-checkpoint RUN/model] \
        [--cxr-lung-checkpoint RUN/model --cxr-checkpoint RUN/model]
    python benchmarks/screen_studies.py --data-root ../shared/data --lesion-checkpoint RUN/model --fit-floors

Every study goes through ``covidlens.screen`` (the same road as the CLI) into ``--out``/studies, then:

- COVID-CT-MD P001 (COVID-19), cap001 (community-acquired pneumonia), normal001: the scan verdict,
  severity, lesion mL and percent of lung, and the slice-level AUC of the per-slice lesion area against
  the radiologists' infected-slice labels (``labels.csv``); the P001 DICOM series (40 original files)
  the same way through ``series_labels.csv``.
- NY-SBU: each of the 20 DICOM slices is one study (10 COVID-19 patients). The 12 slices that show the
  lungs (the data README lists the 8 that do not) are counted per slice and per patient (a patient is
  found when one of its lung slices is "yes"); the 8 others should be "not assessed" or "no".
- covid-chestxray (CXR): the frontal X-rays (PA, AP, AP Supine) of COVID-19 patients and of the other
  pneumonias of the same collection, without any image within the near-duplicate distance of a
  COVID-19 Radiography image (the CXR classifier's training set overlaps this collection). Per patient:
  the highest score of its images, the decision at the classifier's operating point; AUC COVID-19 vs
  other pneumonia with a 95 % interval resampling patients.

``--fit-floors`` instead measures the lesion share of the body on COVID-CT's *validation* split and
prints the two picture floors of :data:`covidlens.screening.verdict.PICTURE_FLOORS` (fitted before
any study above is scored; run it first). With ``--picture-lungs CKPT`` it also measures the lesion
share of the lungs that the learned CT lung model (:mod:`covidlens.segmentation.ct_lungs`) finds, to
see whether a lung denominator separates the pictures better than the body. Writes ``results.md`` and ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

NY_SBU_NOT_LUNG = {"A027284/axial/19000925-116", "A027284/axial/19001231-131", "A058062/axial/19001231-084",
                   "A058062/axial/19010108-078", "A062055/axial/19001127-136", "A062055/axial/19001228-131",
                   "A067967/axial/19001006-028", "A067967/axial/19001231-270"}
CXR_VIEWS = {"PA", "AP", "AP Supine"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("reports/screen_studies"))
    p.add_argument("--lesion-checkpoint", required=True)
    p.add_argument("--ct-checkpoint")
    p.add_argument("--cxr-lung-checkpoint")
    p.add_argument("--cxr-checkpoint")
    p.add_argument("--operating-point", default="default")
    p.add_argument("--fit-floors", action="store_true", help="only fit the 8-bit picture floors on COVID-CT validation")
    p.add_argument("--picture-lungs", type=Path, help="with --fit-floors: also the lesion share of the learned CT lung model's lungs")
    p.add_argument("--bootstrap", type=int, default=2000)
    args = p.parse_args(argv)
    if args.fit_floors:
        return fit_floors(args)
    from covidlens.screening import ScreenModels, screen

    models = ScreenModels.load(args.lesion_checkpoint, args.ct_checkpoint, args.cxr_lung_checkpoint, args.cxr_checkpoint)
    root = args.data_root
    md = root / "ct" / "covid-ct-md"
    ct_inputs = [md / "volumes" / f"{s}.nii.gz" for s in ("P001", "cap001", "normal001")] + [md / "dicom-series" / "P001"]
    nysbu = sorted((root / "ct" / "ny-sbu-dicom").rglob("*.dcm"))
    cxr_images, cxr_meta, dropped = ([], {}, 0)
    if models.cxr_classifier is not None:
        cxr_images, cxr_meta, dropped = cxr_studies(root)
    studies = args.out / "studies"
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    run = screen(ct_inputs + nysbu + cxr_images, studies, models, operating_point=args.operating_point,
                 on_result=lambda r: print(f"{r['key']}: {r.get('decision') or r['error']}", flush=True))
    minutes = (time.time() - started) / 60
    records = {r["key"]: json.loads((studies / r["name"] / "result.json").read_text()) for r in run.rows}
    report = {"minutes": round(minutes, 1), "operating_point": args.operating_point, "models": models.describe(),
              "ct_md": ct_md_rows(records, md), "ny_sbu": ny_sbu_rows(records, root), "timings": timing_rows(records)}
    if cxr_images:
        report["cxr"] = cxr_rows(records, cxr_meta, dropped, args.bootstrap)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def slice_auc(scores, labels) -> float | None:
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    return None if labels.min() == labels.max() else float(roc_auc_score(labels, scores))


def ct_md_rows(records: dict, md: Path) -> list[dict]:
    labels = defaultdict(dict)
    with (md / "labels.csv").open() as handle:
        for row in csv.DictReader(handle):
            labels[row["subject"]][int(row["slice"])] = int(row["infected"])
    series = {}
    with (md / "dicom-series" / "P001" / "series_labels.csv").open() as handle:
        for row in csv.DictReader(handle):
            series[row["file"]] = int(row["infected"])
    truth = {"P001": "COVID-19", "cap001": "community-acquired pneumonia", "normal001": "normal"}
    rows = []
    for record in records.values():
        path = Path(record["study"]["path"])
        series_input = path == md / "dicom-series" / "P001"
        if not series_input and not (path.parent == md / "volumes"):
            continue
        subject = path.name.split(".")[0]
        row = {"study": "P001 DICOM series (40 files)" if series_input else path.name, "truth": truth[subject],
               "status": record["status"]}
        if record["status"] == "screened":
            v, m = record["verdict"], record["measures"]
            area = [s.get("lesion_mm2", s.get("lesion_px", 0)) for s in record["slices"]]
            if series_input:  # slice k of the volume is the k-th file head to feet
                from covidlens.data.io import read_scan

                files = read_scan(md / "dicom-series" / "P001").files
                y = [series[f.name] for f in files]
            else:
                y = [labels[subject][k] for k in range(len(area))]
            row |= {"lesions": v["lesions"], "severity": v["severity"], "lesion_ml": m.get("lesion_volume_ml"),
                    "lung_ml": m.get("lung_volume_ml"), "percent": m.get("percent_involved"),
                    "covid19_score": v["covid19_score"], "slices": len(area), "infected": int(sum(y)),
                    "slice_auc": slice_auc(area, y),
                    "classifier_slice_auc": slice_auc([s.get("p_covid") or 0.0 for s in record["slices"]], y)
                    if any("p_covid" in s for s in record["slices"]) else None}
        rows.append(row)
    return rows


def ny_sbu_rows(records: dict, root: Path) -> dict:
    base = root / "ct" / "ny-sbu-dicom"
    slices, patients = [], defaultdict(list)
    for record in records.values():
        path = Path(record["study"]["path"])
        if base not in path.parents:
            continue
        name = path.relative_to(base).as_posix().removesuffix(".dcm")
        lung = name not in NY_SBU_NOT_LUNG
        v = record.get("verdict", {})
        row = {"slice": name, "lung_slice": lung, "lesions": v.get("lesions"),
               "area_mm2": record.get("measures", {}).get("lesion_area_mm2"), "covid19_score": v.get("covid19_score"),
               "status": record["status"], "error": record.get("error", "")}
        slices.append(row)
        if lung:
            patients[name.split("/")[0]].append(row["lesions"] == "yes")
    lung_rows = [s for s in slices if s["lung_slice"]]
    return {"slices": sorted(slices, key=lambda s: s["slice"]),
            "lung_slices_yes": sum(s["lesions"] == "yes" for s in lung_rows), "lung_slices": len(lung_rows),
            "non_lung_yes": sum(s["lesions"] == "yes" for s in slices if not s["lung_slice"]),
            "non_lung": sum(not s["lung_slice"] for s in slices),
            "patients_found": sum(any(v) for v in patients.values()), "patients": len(patients)}


def cxr_studies(root: Path) -> tuple[list[Path], dict, int]:
    """Frontal covid-chestxray X-rays of COVID-19 and other-pneumonia patients, near-duplicates of the
    radiography set removed; meta by file path: (patient, is_covid)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cxr_table1 import cross_source_positives

    from covidlens.data.datasets import load_dataset

    ext = load_dataset("covid-chestxray", root)
    rad = load_dataset("covid19-radiography", root)
    wanted = [s for s in ext.samples if s.meta.get("view") in CXR_VIEWS and s.meta.get("finding") != "No Finding"
              and s.meta.get("finding") != "todo"]
    kept, dropped = cross_source_positives(wanted, rad.samples, root / "cxr" / "covid-chestxray",
                                           root / "cxr" / "covid19-radiography")
    meta = {str(s.path): (s.meta["patientid"], "COVID-19" in s.meta["finding"]) for s in kept}
    return [s.path for s in kept], meta, dropped


def cxr_rows(records: dict, meta: dict, dropped: int, n_boot: int) -> dict:
    patients = defaultdict(lambda: {"scores": [], "calls": [], "covid": False})
    for record in records.values():
        path = record["study"]["path"]
        if path not in meta or record["status"] != "screened":
            continue
        patient, covid = meta[path]
        entry = patients[patient]
        entry["covid"] = covid
        score = record["verdict"]["covid19_score"]
        if score is not None:
            entry["scores"].append(score)
            entry["calls"].append(record["verdict"]["decision"].startswith("COVID"))
    ids = [p for p, e in patients.items() if e["scores"]]
    y = np.array([patients[p]["covid"] for p in ids], dtype=int)
    s = np.array([max(patients[p]["scores"]) for p in ids])
    call = np.array([any(patients[p]["calls"]) for p in ids])
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(ids), len(ids))
        auc = slice_auc(s[pick], y[pick])
        if auc is not None:
            draws.append(auc)
    return {"images": sum(len(patients[p]["scores"]) for p in ids), "near_duplicates_dropped": dropped,
            "covid_patients": int(y.sum()), "other_patients": int((1 - y).sum()),
            "sensitivity": float(call[y == 1].mean()) if y.sum() else None,
            "other_called_covid": float(call[y == 0].mean()) if (1 - y).sum() else None,
            "auc": slice_auc(s, y), "auc_ci": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
            if draws else None}


def timing_rows(records: dict) -> list[dict]:
    out = []
    for key, record in records.items():
        if record.get("kind") == "volume":
            out.append({"study": key, "slices": record["measures"]["slices"], **record["timings"]})
    return out


def fit_floors(args) -> int:
    """The lesion share of the body on COVID-CT validation pictures, and the floors it gives."""
    from covidlens.data.datasets import load_dataset
    from covidlens.measure.evidence import lesion_maps
    from covidlens.screening.verdict import fit_picture_floors

    table = load_dataset("covid-ct", args.data_root)
    val = [s for s in table.samples if s.split == "val"]
    positive = table.classes.index(table.positive_class)
    shares, lung_shares, labels = [], [], []
    if args.picture_lungs:
        from covidlens.checkpoint import load_checkpoint
        from covidlens.segmentation.ct_lungs import ct_lung_mask

        lung_model = load_checkpoint(args.picture_lungs)
    for i, sample in enumerate(val):
        image = sample.image()
        prob, body = lesion_maps(args.lesion_checkpoint, [image])[0]
        shares.append(float(((prob >= 0.5) & body).sum()) / max(int(body.sum()), 1))
        if args.picture_lungs:
            lung = ct_lung_mask(lung_model, image)
            lung_shares.append(float(((prob >= 0.5) & lung).sum()) / max(int(lung.sum()), 1))
        labels.append(int(sample.label == positive))
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(val)} validation pictures", flush=True)
    floors = fit_picture_floors(np.array(shares), np.array(labels))
    y, s = np.array(labels), np.array(shares)
    print(f"COVID-CT validation: {len(val)} pictures ({y.sum()} COVID); lesion-share AUC {slice_auc(s, y):.3f}")
    if lung_shares:
        print(f"lesion share of the learned lungs instead of the body: AUC {slice_auc(np.array(lung_shares), y):.3f}")
    for name, floor in floors.items():
        print(f"{name}: floor {floor:.4f}  sensitivity {(s[y == 1] >= floor).mean():.3f}  "
              f"specificity {(s[y == 0] < floor).mean():.3f}")
    return 0


def _f(value, digits=3) -> str:
    return "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def markdown(report: dict) -> str:
    lines = [f"Operating point: {report['operating_point']}; {report['minutes']} min for every study.", "",
             "| study | truth | verdict: lesions | severity | lesion mL | lung mL | % of lung | CT classifier score | "
             "slices (infected) | slice AUC, lesion area | slice AUC, classifier |", "|" + "---|" * 11]
    for r in report["ct_md"]:
        if r["status"] != "screened":
            lines.append(f"| {r['study']} | {r['truth']} | failed | | | | | | | | |")
            continue
        lines.append(f"| {r['study']} | {r['truth']} | {r['lesions']} | {r['severity']} | {_f(r['lesion_ml'], 1)} | "
                     f"{_f(r['lung_ml'], 0)} | {_f(r['percent'], 2)} | {_f(r['covid19_score'])} | {r['slices']} "
                     f"({r['infected']}) | {_f(r['slice_auc'])} | {_f(r['classifier_slice_auc'])} |")
    n = report["ny_sbu"]
    lines += ["", f"NY-SBU (10 COVID-19 patients, single DICOM slices): lesions 'yes' on {n['lung_slices_yes']} of "
              f"{n['lung_slices']} lung slices; {n['patients_found']} of {n['patients']} patients found (a lung slice "
              f"'yes'); {n['non_lung_yes']} of {n['non_lung']} slices without lungs called 'yes'.", "",
              "| slice | shows lungs | lesions | lesion mm² | CT classifier score |", "|---|---|---|---|---|"]
    for s in n["slices"]:
        lines.append(f"| {s['slice']} | {'yes' if s['lung_slice'] else 'no'} | {s['lesions'] or s['error']} | "
                     f"{_f(s['area_mm2'], 0)} | {_f(s['covid19_score'])} |")
    if "cxr" in report:
        c = report["cxr"]
        ci = c["auc_ci"] or [None, None]
        lines += ["", f"covid-chestxray (CXR, frontal views, {c['images']} images after dropping {c['near_duplicates_dropped']} "
                  f"near-duplicates of COVID-19 Radiography): {c['covid_patients']} COVID-19 and {c['other_patients']} "
                  f"other-pneumonia patients; COVID-19 patients called COVID-19: {_f(c['sensitivity'])}; other-pneumonia "
                  f"patients called COVID-19: {_f(c['other_called_covid'])}; AUC COVID-19 vs other pneumonia "
                  f"{_f(c['auc'])} [{_f(ci[0])}, {_f(ci[1])}] (patients resampled)."]
    if report["timings"]:
        lines += ["", "| volume | slices | " + " | ".join(k for k in report["timings"][0] if k not in ("study", "slices")) + " |",
                  "|" + "---|" * (len(report["timings"][0])) ]
        for t in report["timings"]:
            lines.append(f"| {t['study']} | {t['slices']} | " + " | ".join(f"{v:.1f} s" for k, v in t.items()
                                                                          if k not in ("study", "slices")) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
