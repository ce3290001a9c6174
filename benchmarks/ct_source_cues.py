"""Benchmark (issue 11): does a COVID-CT classifier look at the lungs, or at the source of the image?

    python benchmarks/ct_source_cues.py --model demo=runs/ct/demo/model \\
        --model body=runs/ct/ct_body_lite0/model \\
        --model body-3seeds=runs/ct/ct_body_lite0/model,runs/ct/ct_body_lite0-s1/model,runs/ct/ct_body_lite0-s2/model \\
        [--lesion-checkpoint runs/medseg_lite0/model] --out reports/ct_source_cues

A model is one checkpoint or several (their mean probability: seeds averaged, not chosen among). With
``--lesion-checkpoint`` two more candidates are scored: ``lesion-burden`` (a logistic regression on the
lesion model's share of the body and its top lesion probability, fitted on the COVID-CT training split)
and, for each model, ``<model>+lesion`` (the mean of the two probabilities). Every candidate's
operating points come from the COVID-CT validation split only: 0.5, and the highest threshold that
reaches 95 % sensitivity there.

Scored for every candidate, all on real images:

1. COVID-CT official test split (203 images): accuracy, precision, recall, specificity, F1, ROC AUC,
   95 % intervals resampling patients (COVID) and source figures (NonCOVID).
2. Source-cue probes on that split, each a change a model that reads the lungs should shrug off:
   ``jpeg`` (every image re-encoded as JPEG at a quality drawn from 75-95 per image), ``border``
   (everything outside the body blacked out, size kept: margins, letters, captions, the table;
   covidlens.data.body), ``marks`` (arrows, circles and letters drawn in colour, anywhere, painted over
   with the nearest unmarked pixels; only images that have them change), ``resize`` (each image resized to the other class's median
   training size). Mean |change in P(COVID)| with a bootstrap interval, the mean signed change per
   class, and the share of decisions that flip at 0.5.
3. External COVID-19 positives no classifier trained on: the 48 MedSeg test slices (radiologist lesion
   masks, turned to the usual view) and the NY-SBU DICOM slices (real HU through the lung window; the
   12 that show lungs, and all 20): mean P(COVID), sensitivity at both operating points (Wilson
   intervals). The pointing game on the MedSeg masks (Grad-CAM maximum inside the mask dilated by
   5 px, against the dilated mask's share of the image).
4. COVID-CT-MD, slice by slice through the lung window: the radiologist-labelled infected slices of
   the COVID-19 scan (P001) against every slice of the normal scan: AUC, sensitivity, specificity
   (intervals over slices: two patients, a sanity check); where the pneumonia scan's (cap001) slices fall.

Writes ``results.json``, ``results.md`` and ``body_crops.png`` (what the ``body`` step keeps of the
first test images of each class) under ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from covidlens.checkpoint import Checkpoint, load_checkpoint
from covidlens.data.body import body_mask, crop_to_body
from covidlens.data.datamodule import read_mask
from covidlens.data.datasets import load_dataset
from covidlens.evaluation.evaluate import resampling_groups
from covidlens.evaluation.metrics import binary_metrics, bootstrap_ci, json_safe
from covidlens.evaluation.operating_points import choose_for_sensitivity
from covidlens.explain.measure import mean_ci, pointing_hit, wilson_interval
from covidlens.inference import image_probabilities
from covidlens.modality.check import colour_mask

PROBES = ("jpeg", "border", "marks", "resize")
HEADLINE = ("accuracy", "precision", "recall", "specificity", "f1", "auc")


@dataclass
class Candidate:
    """Anything that gives P(COVID) for grey slices, with operating points chosen on validation."""

    name: str
    score: Callable[[list[Image.Image]], np.ndarray]
    what: str
    explain: Callable[[Image.Image], np.ndarray] | None = None
    thresholds: dict[str, float] = field(default_factory=dict)


# --- candidates ----------------------------------------------------------------------------------


def remembered(score: Callable[[list[Image.Image]], np.ndarray]) -> Callable[[list[Image.Image]], np.ndarray]:
    """``score`` computed once per image object: fused candidates ask again for the same images."""
    memo: dict[int, float] = {}
    kept: list[Image.Image] = []  # holds the images, so that their ids are not reused

    def cached(images):
        todo = [im for im in images if id(im) not in memo]
        if todo:
            memo.update(zip(map(id, todo), score(todo)))
            kept.extend(todo)
        return np.array([memo[id(im)] for im in images])

    return cached


def classifier(name: str, paths: list[str]) -> Candidate:
    ckpts = [load_checkpoint(p) for p in paths]
    info = ckpts[0].info
    for c in ckpts[1:]:
        if c.info.classes != info.classes or c.info.positive_class != info.positive_class:
            raise SystemExit(f"{name}: checkpoints disagree on classes ({info.classes} against {c.info.classes}).")

    def score(images):
        return np.mean([image_probabilities(c, images, tta=c.info.tta)[:, c.info.positive_index] for c in ckpts], axis=0)

    def explain(image):
        from covidlens.explain.cam import explain_image

        return np.mean([explain_image(c, image, "gradcam", target_class=c.info.positive_class).heat for c in ckpts], axis=0)

    score = remembered(score)
    regions = sorted({c.info.preprocessing.get("region", "whole") for c in ckpts})
    what = (f"{len(ckpts)} x {info.model} {info.input_size} px, region {'/'.join(regions)}"
            + (", mean of the seeds" if len(ckpts) > 1 else ""))
    return Candidate(name, score, what, explain)


def lesion_burden(lesion_ckpt: Checkpoint, train: list[Image.Image], y_train: np.ndarray) -> Candidate:
    """Logistic regression on (log lesion share of the body, top-1 % lesion probability), fitted on train."""
    from sklearn.linear_model import LogisticRegression

    from covidlens.measure.evidence import lesion_evidence

    def features(images):
        ev = lesion_evidence(lesion_ckpt, images)
        return np.array([[np.log10(e.lesion_share + 1e-4), e.top_mean] for e in ev])

    model = LogisticRegression(C=1.0).fit(features(train), y_train)

    @remembered
    def score(images):
        return model.predict_proba(features(images))[:, 1]

    def explain(image):
        from covidlens.measure.evidence import lesion_maps

        return lesion_maps(lesion_ckpt, [image])[0][0]

    coef = model.coef_[0]
    what = (f"logistic regression on the lesion model's output ({coef[0]:+.2f} x log10 lesion share "
            f"{coef[1]:+.2f} x top-1 % lesion probability {model.intercept_[0]:+.2f}), fitted on COVID-CT train")
    return Candidate("lesion-burden", score, what, explain)


def fused(a: Candidate, b: Candidate) -> Candidate:
    def score(images):
        return (a.score(images) + b.score(images)) / 2

    return Candidate(f"{a.name}+lesion", score, f"mean of {a.name} and lesion-burden", a.explain)


# --- probes --------------------------------------------------------------------------------------


def probe_jpeg(image: Image.Image, key: str) -> Image.Image:
    quality = 75 + int(hashlib.sha256(key.encode()).hexdigest(), 16) % 21
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def probe_border(image: Image.Image) -> Image.Image:
    grey = np.asarray(image)
    return Image.fromarray(np.where(body_mask(grey), grey, 0).astype(np.uint8))


def annotation_mask(path: Path, grey: np.ndarray) -> np.ndarray:
    """Coloured marks (arrows, circles, letters drawn in colour), grown by 2 px to take their antialiased rim.

    Grey text and letters outside the body are the ``border`` probe's; grey arrows drawn inside the
    body are not found (no rule told them from vessels on these figures)."""
    with Image.open(path) as picture:
        if picture.mode in ("L", "I;16", "I", "F", "1") or picture.size != (grey.shape[1], grey.shape[0]):
            return np.zeros(grey.shape, bool)
        marks = colour_mask(np.asarray(picture.convert("RGB")))
    return ndi.binary_dilation(marks, iterations=2) if marks.any() else marks


def probe_marks(image: Image.Image, path: Path) -> tuple[Image.Image, bool]:
    grey = np.asarray(image)
    marks = annotation_mask(path, grey)
    if not marks.any():
        return image, False
    # Every marked pixel takes the value of the nearest unmarked one.
    _, (rows, cols) = ndi.distance_transform_edt(marks, return_indices=True)
    return Image.fromarray(grey[rows, cols].astype(np.uint8)), True


def median_sizes(samples) -> dict[int, tuple[int, int]]:
    sizes: dict[int, list[tuple[int, int]]] = {}
    for s in samples:
        with Image.open(s.path) as picture:
            sizes.setdefault(s.label, []).append(picture.size)
    return {label: tuple(int(v) for v in np.median(np.array(v), axis=0)) for label, v in sizes.items()}


def probed_images(samples, images, train_sizes) -> dict[str, tuple[list[Image.Image], np.ndarray]]:
    """Each probe's images and which images it changed."""
    other = {0: train_sizes[1], 1: train_sizes[0]}
    out = {"jpeg": ([probe_jpeg(im, str(s.path)) for s, im in zip(samples, images)], np.ones(len(images), bool)),
           "border": ([probe_border(im) for im in images], np.ones(len(images), bool)),
           "resize": ([im.resize(other[s.label], Image.Resampling.BILINEAR) for s, im in zip(samples, images)],
                      np.ones(len(images), bool))}
    marked = [probe_marks(im, s.path) for s, im in zip(samples, images)]
    out["marks"] = ([m for m, _ in marked], np.array([changed for _, changed in marked]))
    return out


# --- scoring -------------------------------------------------------------------------------------


def at(y, p, threshold) -> dict:
    m = binary_metrics(y, p, threshold)
    return {k: m[k] for k in HEADLINE}


def rate(hits: int, n: int) -> dict:
    lo, hi = (max(0.0, v) for v in wilson_interval(hits, n))
    return {"value": hits / n if n else float("nan"), "ci95": [lo, hi], "n": n}


def score_candidate(cand: Candidate, data: dict, n_boot: int, pointing: bool) -> dict:
    started = time.time()
    val_p = cand.score(data["val_images"])
    cand.thresholds = {"0.5": 0.5, "sens95_val": choose_for_sensitivity(data["val_y"], val_p, 0.95)}
    p = cand.score(data["test_images"])
    y, groups = data["test_y"], data["test_groups"]
    result = {"what": cand.what, "thresholds": cand.thresholds, "covid_ct_test": {}}
    for key, t in cand.thresholds.items():
        ci = bootstrap_ci(y, p, t, n_boot=n_boot, groups=groups)
        result["covid_ct_test"][key] = {"metrics": at(y, p, t), "ci95": {k: list(ci[k]) for k in HEADLINE}}
    result["val_auc"] = binary_metrics(data["val_y"], val_p, 0.5)["auc"]

    probes = {}
    for name, (images, changed) in data["probes"].items():
        q = cand.score(images)
        delta = (q - p)[changed]
        flips = ((q >= 0.5) != (p >= 0.5))[changed]
        mean, lo, hi = mean_ci(np.abs(delta), n_boot) if len(delta) else (float("nan"),) * 3
        probes[name] = {"images_changed": int(changed.sum()), "mean_abs_change": mean, "ci95": [lo, hi],
                        "mean_change_covid": float(delta[y[changed] == 1].mean()) if (y[changed] == 1).any() else None,
                        "mean_change_noncovid": float(delta[y[changed] == 0].mean()) if (y[changed] == 0).any() else None,
                        "flipped": int(flips.sum()), "flipped_share": float(flips.mean()) if len(flips) else float("nan")}
    result["probes"] = probes

    external = {}
    for name, images in data["external"].items():
        q = cand.score(images)
        external[name] = {"n": len(q), "mean_p": float(q.mean()),
                          **{f"sensitivity_{k}": rate(int((q >= t).sum()), len(q)) for k, t in cand.thresholds.items()}}
    result["external_positives"] = external

    if pointing and cand.explain is not None:
        hits, chances = [], []
        for image, mask in zip(data["external"]["medseg_test"], data["medseg_masks"]):
            hit, chance = pointing_hit(cand.explain(image), mask, 5)
            hits.append(hit)
            chances.append(chance)
        result["pointing_medseg"] = {**rate(int(sum(hits)), len(hits)), "chance": float(np.mean(chances))}

    md = {}
    q = cand.score(data["ctmd_images"])
    subjects, infected = data["ctmd_subjects"], data["ctmd_infected"]
    covid_inf = (subjects == "P001") & infected
    normal = subjects == "normal001"
    keep = covid_inf | normal
    yy, pp = covid_inf[keep].astype(int), q[keep]
    ci = bootstrap_ci(yy, pp, 0.5, n_boot=n_boot)
    md["p001_infected_vs_normal001"] = {"n_infected": int(yy.sum()), "n_normal": int((1 - yy).sum()),
                                        **{k: at(yy, pp, t) for k, t in cand.thresholds.items()},
                                        "ci95_at_0.5": {k: list(ci[k]) for k in ("auc", "recall", "specificity")}}
    for subject in ("P001", "cap001", "normal001"):
        rows = subjects == subject
        md[subject] = {"mean_p_all": float(q[rows].mean()),
                       "mean_p_infected": float(q[rows & infected].mean()) if (rows & infected).any() else None,
                       "called_covid_at_0.5": float((q[rows] >= 0.5).mean())}
    result["covid_ct_md"] = md
    result["seconds"] = time.time() - started
    return result


def load_data(root) -> dict:
    ct = load_dataset("covid-ct", root)
    positive = ct.positive_index
    test = [s for s in ct.split("test") if s.label >= 0]
    val = [s for s in ct.split("val") if s.label >= 0]
    train = [s for s in ct.split("train") if s.label >= 0]
    test_y = np.array([int(s.label == positive) for s in test])
    groups, _ = resampling_groups(ct, test, test_y)
    test_images = [s.image() for s in test]
    medseg = load_dataset("medseg-infnet", root).split("test")
    sbu = load_dataset("ny-sbu-dicom", root).samples
    md = load_dataset("covid-ct-md", root)
    train_sizes = median_sizes(train)
    print(f"probing {len(test)} test images ...", flush=True)
    return {
        "train_samples": train, "train_y": np.array([int(s.label == positive) for s in train]),
        "val_images": [s.image() for s in val], "val_y": np.array([int(s.label == positive) for s in val]),
        "test_samples": test, "test_images": test_images, "test_y": test_y, "test_groups": groups,
        "probes": probed_images(_binary(test, positive), test_images, _binary_sizes(train_sizes, positive)),
        "external": {"medseg_test": [s.image() for s in medseg],
                     "ny_sbu_lungs": [s.image() for s in sbu if s.meta.get("region") == "lungs"],
                     "ny_sbu_all": [s.image() for s in sbu]},
        "medseg_masks": [read_mask(s, 2).astype(bool) for s in medseg],
        "ctmd_images": [s.image() for s in md.samples],
        "ctmd_subjects": np.array([s.group for s in md.samples]),
        "ctmd_infected": np.array([s.label == md.positive_index for s in md.samples]),
    }


def _binary(samples, positive):
    """Samples relabelled 1 = COVID, 0 = not, for the probes' 'other class' sizes."""
    import dataclasses

    return [dataclasses.replace(s, label=int(s.label == positive)) for s in samples]


def _binary_sizes(sizes: dict[int, tuple[int, int]], positive: int) -> dict[int, tuple[int, int]]:
    return {1: sizes[positive], 0: next(v for k, v in sizes.items() if k != positive)}


def body_sheet(samples, images, path: Path, per_class: int = 8) -> None:
    """First test images of each class, each beside what the ``body`` step keeps of it."""
    chosen = [im for label in sorted({s.label for s in samples}, reverse=True)
              for im in [im for s, im in zip(samples, images) if s.label == label][:per_class]]
    tile = 150
    sheet = Image.new("L", (4 * tile, tile * ((len(chosen) + 1) // 2)), 255)
    for i, image in enumerate(chosen):
        for j, shown in enumerate((image, crop_to_body(image))):
            thumb = shown.copy()
            thumb.thumbnail((tile - 4, tile - 4))
            sheet.paste(thumb, ((2 * (i % 2) + j) * tile + 2, (i // 2) * tile + 2))
    sheet.save(path)


# --- report --------------------------------------------------------------------------------------


def _ci(value, interval) -> str:
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def markdown(results: dict) -> str:
    lines = ["# CT classifiers against source cues and outside positives (benchmarks/ct_source_cues.py)", ""]
    lines += ["| candidate | what |", "|---|---|"] + [f"| {n} | {r['what']} |" for n, r in results.items()]
    lines += ["", "## COVID-CT official test split (203 images), threshold 0.5; intervals resample patients / source figures", "",
              "| candidate | val AUC | " + " | ".join(HEADLINE) + " |", "|---|---|" + "---|" * len(HEADLINE)]
    for n, r in results.items():
        t = r["covid_ct_test"]["0.5"]
        lines.append(f"| {n} | {r['val_auc']:.3f} | " + " | ".join(_ci(t["metrics"][k], t["ci95"][k]) for k in HEADLINE) + " |")
    lines += ["", "At the validation-chosen 95 %-sensitivity threshold:", "",
              "| candidate | threshold | sensitivity | specificity | accuracy | F1 |", "|---|---|---|---|---|---|"]
    for n, r in results.items():
        t = r["covid_ct_test"]["sens95_val"]
        lines.append(f"| {n} | {r['thresholds']['sens95_val']:.3f} | " + " | ".join(
            _ci(t["metrics"][k], t["ci95"][k]) for k in ("recall", "specificity", "accuracy", "f1")) + " |")
    lines += ["", "## Source-cue probes on the COVID-CT test split: mean |change in P(COVID)| [95 % CI], flipped decisions at 0.5", "",
              "| candidate | " + " | ".join(PROBES) + " |", "|---|" + "---|" * len(PROBES)]
    for n, r in results.items():
        cells = []
        for probe in PROBES:
            q = r["probes"][probe]
            cells.append(f"{_ci(q['mean_abs_change'], q['ci95'])}, {q['flipped']}/{q['images_changed']} flipped "
                         f"({q['flipped_share']:.1%}); COVID {q['mean_change_covid'] if q['mean_change_covid'] is not None else float('nan'):+.3f}, "
                         f"non-COVID {q['mean_change_noncovid'] if q['mean_change_noncovid'] is not None else float('nan'):+.3f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "## External COVID-19 positives (no classifier trained on them)", "",
              "| candidate | MedSeg test: mean P | sensitivity at 0.5 | at val 95 % threshold | pointing game (chance) | "
              "NY-SBU lung slices: mean P | sensitivity at 0.5 | at val threshold | NY-SBU all 20: mean P | sensitivity at 0.5 |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for n, r in results.items():
        e = r["external_positives"]
        pg = r.get("pointing_medseg")
        point = f"{_ci(pg['value'], pg['ci95'])} ({pg['chance']:.3f})" if pg else "-"

        def sens(block, key):
            return _ci(block[key]["value"], block[key]["ci95"]) + f" (n={block[key]['n']})"

        m, s, a = e["medseg_test"], e["ny_sbu_lungs"], e["ny_sbu_all"]
        lines.append(f"| {n} | {m['mean_p']:.3f} | {sens(m, 'sensitivity_0.5')} | {sens(m, 'sensitivity_sens95_val')} | {point} | "
                     f"{s['mean_p']:.3f} | {sens(s, 'sensitivity_0.5')} | {sens(s, 'sensitivity_sens95_val')} | "
                     f"{a['mean_p']:.3f} | {sens(a, 'sensitivity_0.5')} |")
    lines += ["", "## COVID-CT-MD slices through the lung window (three patients: a sanity check)", "",
              "| candidate | P001 infected vs normal001: AUC | sensitivity at 0.5 | specificity at 0.5 | at val threshold: sens / spec | "
              "mean P: P001 infected / cap001 infected / normal001 | called COVID at 0.5: P001 / cap001 / normal001 |",
              "|---|---|---|---|---|---|---|"]
    for n, r in results.items():
        md = r["covid_ct_md"]
        b = md["p001_infected_vs_normal001"]
        ci = b["ci95_at_0.5"]
        lines.append(f"| {n} | {_ci(b['0.5']['auc'], ci['auc'])} | {_ci(b['0.5']['recall'], ci['recall'])} | "
                     f"{_ci(b['0.5']['specificity'], ci['specificity'])} | {b['sens95_val']['recall']:.3f} / {b['sens95_val']['specificity']:.3f} | "
                     f"{md['P001']['mean_p_infected']:.3f} / {md['cap001']['mean_p_infected']:.3f} / {md['normal001']['mean_p_all']:.3f} | "
                     f"{md['P001']['called_covid_at_0.5']:.2f} / {md['cap001']['called_covid_at_0.5']:.2f} / {md['normal001']['called_covid_at_0.5']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=CKPT[,CKPT...]",
                        help="a candidate: one checkpoint, or several averaged (repeatable)")
    parser.add_argument("--lesion-checkpoint", help="MedSeg lesion model: adds lesion-burden and <model>+lesion")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--no-pointing", action="store_true", help="skip the Grad-CAM pointing game")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    candidates = []
    for item in args.model:
        if "=" not in item:
            parser.error(f"--model {item!r} must look like NAME=CKPT[,CKPT...]")
        name, paths = item.split("=", 1)
        candidates.append(classifier(name, paths.split(",")))
    data = load_data(args.data_root)
    body_sheet(data["test_samples"], data["test_images"], args.out / "body_crops.png")
    if args.lesion_checkpoint:
        from covidlens.measure.evidence import lesion_model

        burden = lesion_burden(lesion_model(args.lesion_checkpoint), [s.image() for s in data["train_samples"]], data["train_y"])
        candidates += [burden] + [fused(c, burden) for c in list(candidates)]
    results = {}
    for cand in candidates:
        print(f"scoring {cand.name} ({cand.what}) ...", flush=True)
        results[cand.name] = score_candidate(cand, data, args.bootstrap, not args.no_pointing)
        (args.out / "results.json").write_text(json.dumps(json_safe(results), indent=2) + "\n")
        (args.out / "results.md").write_text(markdown(results))
        print(markdown({cand.name: results[cand.name]}), flush=True)
    print(f"report: {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
