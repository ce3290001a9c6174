"""Benchmark: ``covidlens quantify`` on the real 3-D scans of COVID-CT-MD and the NY-SBU DICOM slices.

    python benchmarks/quantify_scans.py --checkpoint RUN/model --out reports/quantify_scans [--data-root ../shared/data]

- Each COVID-CT-MD NIfTI volume (P001 COVID-19, cap001 community-acquired pneumonia, normal001 normal):
  lung volume (mL; about 3-7 L for a whole adult chest), lesion volume, percent of lung involved and
  severity class; the normal scan should be near 0 %.
- Slice-level detection of infected slices against the radiologists' labels (``labels.csv``): AUC of
  the lesion area, and sensitivity / specificity of "lesion area > THRESHOLD". The threshold is
  fixed in advance at :data:`THRESHOLD_MM2` (1 cm², a ground-glass focus of about 11 mm across in
  one slice; smaller predicted areas are taken as noise) and never tuned on these scans; change it
  with ``--threshold-mm2`` only with a value chosen elsewhere. P001 and cap001 are pooled (both are
  labelled); normal001 was never labelled (all 0), so only its false-positive rate is shown.
- The 40-file P001 DICOM series (full resolution) against the matching 40 slices of the volume.
- The 20 NY-SBU slices: lung area mm² per slice (the data README lists six abdomen-only slices, which
  should give an empty lung mask, and two lung bases), HU statistics of the segmented lung (aerated
  lung: mean about -700 to -850 HU), lesion overlays under ``--out``.
- The preprocessing check of :mod:`covidlens.measure.quantify`: grey-level and shape figures of the
  HU-path lung crops of the P001 series beside those of the MedSeg test slices the model learns from.

Writes ``quantify_scans.md`` and ``quantify_scans.json`` to ``--out`` (plus each run's quantify
folder) and prints the tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from covidlens.checkpoint import load_checkpoint
from covidlens.data.datasets import load_dataset
from covidlens.data.intensity import LUNG_WINDOW, window
from covidlens.data.io import read_scan
from covidlens.errors import CovidlensError
from covidlens.evaluation.metrics import json_safe
from covidlens.measure import segment_lungs_hu
from covidlens.measure.quantify import lung_crop_box, quantify_scan

REPO = Path(__file__).resolve().parents[1]
THRESHOLD_MM2 = 100.0
VOLUMES = ("P001", "cap001", "normal001")
ABDOMEN_ONLY = {
    "A027284/axial/19000925-116", "A027284/axial/19001231-131", "A058062/axial/19001231-084",
    "A058062/axial/19010108-078", "A062055/axial/19001127-136", "A062055/axial/19001228-131",
}
LUNG_BASES = {"A067967/axial/19001006-028", "A067967/axial/19001231-270"}


def _labels(data_root: Path) -> dict[str, np.ndarray]:
    rows: dict[str, list[tuple[int, int]]] = {}
    with (data_root / "ct" / "covid-ct-md" / "labels.csv").open() as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(row["subject"], []).append((int(row["slice"]), int(row["infected"])))
    return {s: np.array([v for _, v in sorted(r)]) for s, r in rows.items()}


def detection(infected: np.ndarray, area: np.ndarray, percent: np.ndarray, threshold: float) -> dict:
    """AUC of lesion area for infected slices, and sensitivity / specificity of area > threshold.

    Lesion area grows with the slice's lung area, and infected slices tend to be the mid-chest ones
    with the most lung, so the AUC of the percent of the slice's lung involved is given beside it.
    """
    called = area > threshold
    positives, negatives = int(infected.sum()), int((infected == 0).sum())
    both = 0 < positives < infected.size
    return {
        "slices": int(infected.size), "infected": positives,
        "auc": float(roc_auc_score(infected, area)) if both else None,
        "auc_percent": float(roc_auc_score(infected, percent)) if both else None,
        "sensitivity": float((called & (infected == 1)).sum() / positives) if positives else None,
        "specificity": float((~called & (infected == 0)).sum() / negatives) if negatives else None,
    }


def _percents(result) -> np.ndarray:
    """Percent of each slice's lung involved, 0 for slices without lung."""
    return np.array([s.percent_involved or 0.0 for s in result.slices])


def _scan_row(name: str, result) -> dict:
    return {"scan": name, "n_slices": result.n_slices, "lung_volume_ml": result.lung_volume,
            "lesion_volume_ml": result.lesion_volume, "percent_involved": result.percent_involved,
            "severity_class": result.severity_class, "spacing": result.spacing,
            "removed_outside_lung_ml": result.removed_lesion_volume}


def run_volumes(data_root: Path, ckpt, out: Path, threshold: float) -> dict:
    labels = _labels(data_root)
    (out / "covid-ct-md").mkdir(parents=True, exist_ok=True)
    scans, per_scan, pooled_y, pooled_area, pooled_percent = [], {}, [], [], []
    for name in VOLUMES:
        result = quantify_scan(data_root / "ct" / "covid-ct-md" / "volumes" / f"{name}.nii.gz", ckpt,
                               out / "covid-ct-md" / name, progress=False)
        scans.append(_scan_row(name, result))
        area = np.array([s.lesion_area for s in result.slices])
        percent = _percents(result)
        y = labels[name]
        if y.size != area.size:
            raise CovidlensError(f"labels.csv has {y.size} slices for {name} but the volume has {area.size}.")
        per_scan[name] = detection(y, area, percent, threshold)
        # The same call without the lung filter: lesion predicted in the lung box but outside the mask kept.
        unfiltered = area + np.array([s.removed_area for s in result.slices])
        per_scan[name]["without_lung_filter"] = detection(y, unfiltered, percent, threshold)
        if name != "normal001":
            pooled_y.append(y)
            pooled_area.append(area)
            pooled_percent.append(percent)
        print(f"{name}: lung {result.lung_volume:.0f} mL, lesion {result.lesion_volume:.0f} mL, "
              f"{result.percent_involved:.2f} % {result.severity_class}", flush=True)
    pooled = detection(np.concatenate(pooled_y), np.concatenate(pooled_area), np.concatenate(pooled_percent), threshold)
    return {"scans": scans, "detection_per_scan": per_scan, "detection_pooled_P001_cap001": pooled}


def run_series(data_root: Path, ckpt, out: Path, threshold: float) -> dict:
    folder = data_root / "ct" / "covid-ct-md" / "dicom-series" / "P001"
    with (folder / "series_labels.csv").open() as handle:
        rows = sorted((int(r["label_index"]), int(r["infected"])) for r in csv.DictReader(handle))
    start = rows[0][0]
    series = quantify_scan(folder, ckpt, out / "covid-ct-md" / "P001-series", progress=False)
    volume = quantify_scan(data_root / "ct" / "covid-ct-md" / "volumes" / "P001.nii.gz", ckpt,
                           slice_range=(start, start + len(rows)), progress=False)
    infected = np.array([v for _, v in rows])
    area_s = np.array([s.lesion_area for s in series.slices])
    area_v = np.array([s.lesion_area for s in volume.slices])
    return {
        "label_indices": [start, start + len(rows) - 1],
        "series": _scan_row("P001 DICOM series", series),
        "volume_slices": _scan_row(f"P001.nii.gz slices {start}-{start + len(rows) - 1}", volume),
        "lung_volume_ratio": series.lung_volume / volume.lung_volume if volume.lung_volume else None,
        "detection_series": detection(infected, area_s, _percents(series), threshold),
        "detection_volume_slices": detection(infected, area_v, _percents(volume), threshold),
    }


def run_ny_sbu(data_root: Path, ckpt, out: Path) -> list[dict]:
    folder = data_root / "ct" / "ny-sbu-dicom"
    (out / "ny-sbu").mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted(folder.rglob("*.dcm")):
        key = str(path.relative_to(folder).with_suffix(""))
        kind = "abdomen only" if key in ABDOMEN_ONLY else "lung base" if key in LUNG_BASES else "lungs"
        result = quantify_scan(path, ckpt, out / "ny-sbu" / key.replace("/", "_"), progress=False)
        scan = read_scan(path)
        lung = segment_lungs_hu(scan.pixels, scan.spacing)
        values = scan.pixels[lung]
        rows.append({
            "slice": key, "kind": kind, "lung_area_mm2": result.lung_area, "lesion_area_mm2": result.lesion_area,
            "percent_involved": result.percent_involved,
            "lung_hu_mean": float(values.mean()) if values.size else None,
            "lung_hu_median": float(np.median(values)) if values.size else None,
            "overlays": [str(Path(result.out_dir) / o) for o in result.overlays],
        })
    return rows


def check_preprocessing(data_root: Path) -> dict:
    """Figures that say whether the HU-path lung crops look like the MedSeg training crops."""
    def stats(grey: np.ndarray) -> tuple[float, float, float, float]:
        dark = grey < 100
        return (grey.shape[1] / grey.shape[0], float(dark.mean()),
                float(np.median(grey[dark])) if dark.any() else float("nan"), float((grey >= 175).mean()))

    medseg = []
    for sample in load_dataset("medseg-infnet", data_root).split("test")[:12]:
        medseg.append(stats(np.rot90(np.asarray(Image.open(sample.path).convert("L")), sample.rot90)))
    scan = read_scan(data_root / "ct" / "covid-ct-md" / "dicom-series" / "P001")
    lung = segment_lungs_hu(scan.pixels, scan.spacing)
    grey = window(scan.pixels, *LUNG_WINDOW)
    ours, lung_fill = [], []
    for k in range(0, scan.pixels.shape[0], 4):
        box = lung_crop_box(lung[k])
        if box is not None:
            ours.append(stats(grey[k][box]))
            lung_fill.append(float(lung[k][box].mean()))
    names = ("aspect_w_over_h", "dark_fraction", "median_dark_grey", "bright_fraction")

    def ranges(values):
        array = np.array(values)
        return {n: [float(np.nanmin(array[:, i])), float(np.nanmax(array[:, i]))] for i, n in enumerate(names)}

    return {"medseg_test_first12": ranges(medseg), "p001_series_hu_crops": ranges(ours) | {
        "lung_fraction_of_crop": [min(lung_fill), max(lung_fill)]}}


def _fmt(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    t = report["threshold_mm2"]
    lines = [f"# quantify on real CT ({report['checkpoint']})", "",
             f"Lesion model: `{report['model']}`. Slice-level call: lesion area > {t:g} mm² (fixed in advance, "
             "not tuned on these scans).", "",
             "## COVID-CT-MD volumes", "",
             "| scan | slices | lung mL | lesion mL | % involved | severity | removed by the lung mask, mL |",
             "|---|---|---|---|---|---|---|"]
    for r in report["volumes"]["scans"]:
        lines.append(f"| {r['scan']} | {r['n_slices']} | {_fmt(r['lung_volume_ml'], 0)} | {_fmt(r['lesion_volume_ml'])} "
                     f"| {_fmt(r['percent_involved'], 2)} | {r['severity_class']} | {_fmt(r.get('removed_outside_lung_ml'))} |")
    lines += ["", "| detection | slices | infected | AUC (area) | AUC (% of slice lung) | sensitivity | specificity |",
              "|---|---|---|---|---|---|---|"]
    det = dict(report["volumes"]["detection_per_scan"])
    det["P001 + cap001 pooled"] = report["volumes"]["detection_pooled_P001_cap001"]
    det["P001 DICOM series"] = report["series"]["detection_series"]
    det["P001.nii.gz, same 40 slices"] = report["series"]["detection_volume_slices"]
    for name, d in list(det.items()):
        if "without_lung_filter" in d:
            det[f"{name} without the lung filter"] = d["without_lung_filter"]
    for name, d in det.items():
        lines.append(f"| {name} | {d['slices']} | {d['infected']} | {_fmt(d['auc'], 3)} | {_fmt(d['auc_percent'], 3)} "
                     f"| {_fmt(d['sensitivity'], 3)} "
                     f"| {_fmt(d['specificity'], 3)} |")
    s = report["series"]
    lines += ["", f"P001 DICOM series (label slices {s['label_indices'][0]}-{s['label_indices'][1]}) against the same "
              f"slices of the volume: lung {_fmt(s['series']['lung_volume_ml'], 0)} mL vs "
              f"{_fmt(s['volume_slices']['lung_volume_ml'], 0)} mL (ratio {_fmt(s['lung_volume_ratio'], 3)}), "
              f"involved {_fmt(s['series']['percent_involved'], 2)} % vs {_fmt(s['volume_slices']['percent_involved'], 2)} %.",
              "", "## NY-SBU slices", "", "| slice | kind | lung mm² | lesion mm² | % involved | lung HU mean | lung HU median |",
              "|---|---|---|---|---|---|---|"]
    for r in report["ny_sbu"]:
        lines.append(f"| {r['slice']} | {r['kind']} | {_fmt(r['lung_area_mm2'], 0)} | {_fmt(r['lesion_area_mm2'], 0)} "
                     f"| {_fmt(r['percent_involved'], 2)} | {_fmt(r['lung_hu_mean'], 0)} | {_fmt(r['lung_hu_median'], 0)} |")
    p = report["preprocessing_check"]
    lines += ["", "## Preprocessing check (ranges over slices)", "", "| figure | MedSeg test (12) | P001 HU-path crops |",
              "|---|---|---|"]
    for key, (low, high) in p["p001_series_hu_crops"].items():
        med = p["medseg_test_first12"].get(key)
        lines.append(f"| {key} | {'n/a' if med is None else f'{med[0]:.2f}-{med[1]:.2f}'} | {low:.2f}-{high:.2f} |")
    lines += ["", f"Time: {report['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="lesion segmentation checkpoint folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for quantify_scans.md/.json and the runs")
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding ct/covid-ct-md and ct/ny-sbu-dicom")
    parser.add_argument("--threshold-mm2", type=float, default=THRESHOLD_MM2,
                        help=f"slice call: lesion area above this (default {THRESHOLD_MM2:g}, fixed in advance)")
    args = parser.parse_args(argv)
    try:
        started = time.time()
        ckpt = load_checkpoint(args.checkpoint)
        args.out.mkdir(parents=True, exist_ok=True)
        report = {
            "checkpoint": str(args.checkpoint), "model": ckpt.info.model, "threshold_mm2": args.threshold_mm2,
            "volumes": run_volumes(args.data_root, ckpt, args.out, args.threshold_mm2),
            "series": run_series(args.data_root, ckpt, args.out, args.threshold_mm2),
            "ny_sbu": run_ny_sbu(args.data_root, ckpt, args.out),
            "preprocessing_check": check_preprocessing(args.data_root),
        }
        report["seconds"] = time.time() - started
    except CovidlensError as exc:
        print(f"quantify_scans: error: {exc}", file=sys.stderr)
        return 2
    (args.out / "quantify_scans.json").write_text(json.dumps(json_safe(report), indent=2) + "\n")
    text = markdown(report)
    (args.out / "quantify_scans.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
