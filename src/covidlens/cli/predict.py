"""``covidlens predict``: class probabilities and a decision for image files or folders."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from contextlib import ExitStack
from dataclasses import asdict

from covidlens.cli.common import batch_status, check_output_folder, checkpoint_or_store
from covidlens.evaluation.operating_points import NAMES as OPERATING_POINTS
from covidlens.evaluation.operating_points import classifier_point


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="class probabilities and decision for image files or folders")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    p.add_argument("--checkpoint",
                   help="checkpoint folder (model.safetensors + model.json) or an exported .onnx file "
                        "(default: the store's ct-classifier)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"],
                   help="engine: torch (eager PyTorch) or onnxruntime (default: torch for a folder, onnxruntime "
                        "for an .onnx file; a folder run on onnxruntime is exported in memory first)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs (default cpu)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes decoding and resizing images (default: one per spare core, at most 4; 0: none)")
    p.add_argument("--threshold", type=float, help="decision threshold on P(positive class)")
    p.add_argument("--operating-point", choices=OPERATING_POINTS, default="default",
                   help="'default': the model's own threshold; 'sensitivity': the threshold chosen on validation for "
                        "the target sensitivity (the web service's operating_point takes the same names)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test-time augmentation (default: as trained)")
    p.add_argument("--no-modality-check", dest="check_modality", action="store_false",
                   help="give a verdict for every image, even one that does not look like the model's modality "
                        "(CT or chest X-ray); by default such images are refused with the reason")
    p.add_argument("--lesion-checkpoint",
                   help="a CT lesion segmentation checkpoint (covidlens segment train): each row also says whether it "
                        "found lesions and how much of the body they cover, the evidence beside P(COVID)")
    p.add_argument("--csv", help="also write the table as CSV here")
    p.add_argument("--json", help="also write the rows as JSON here")
    p.set_defaults(run=run)


LESION_COLUMNS = ["lesions_found", "lesion_share", "lesion_pixels", "lesion_mm2"]
#: A volume's row (the screen road): its slice count and the lesion verdict when a lesion model was given.
STUDY_COLUMNS = ["study_slices", "study_lesions", "study_severity"]


def _record(row, classes: list[str], with_lesions: bool) -> dict:
    record = asdict(row)
    probabilities = record.pop("probabilities")
    lesions = record.pop("lesions")
    study = record.pop("study") or {}
    record |= {"study_slices": study.get("slices"), "study_lesions": study.get("lesions"),
               "study_severity": study.get("severity")}
    if isinstance(record["probability"], float) and math.isnan(record["probability"]):
        record["probability"] = None
    if with_lesions:
        record |= {"lesions_found": row.lesions.found if row.lesions else None,
                   **{k: (lesions or {}).get(k) for k in LESION_COLUMNS[1:]}}
    return record | {f"p_{name}": probabilities.get(name) for name in classes}


def _lesion_words(lesions) -> str:
    if lesions is None:
        return ""
    area = f", {lesions.lesion_mm2:.0f} mm²" if lesions.lesion_mm2 is not None else ""
    found = "lesions" if lesions.found else "no lesions (below 0.5 %):"
    return f"  {found} {lesions.lesion_share:.1%} of the body{area}"


def _study_words(study) -> str:
    from covidlens.screening.road import CLASSIFIER_PERCENTILE

    if not study:
        return ""
    lesions = f"; pneumonia-pattern lesions: {study['lesions']}" if study["lesions"] != "not assessed" or study["severity"] else ""
    severity = f" ({study['severity']})" if study.get("severity") else ""
    return (f"  [study of {study['slices']} slices: the {CLASSIFIER_PERCENTILE}th percentile of the lung slices' scores"
            f"{lesions}{severity}; covidlens screen gives the study report]")


def run(args) -> int:
    from covidlens.inference import iter_predictions
    from covidlens.runtime import open_model

    check_output_folder(args.csv, args.json)
    model = open_model(checkpoint_or_store(args.checkpoint, "ct-classifier"), args.backend, device=args.device)
    info = model.info
    threshold = args.threshold
    if threshold is None and args.operating_point != "default":
        threshold = classifier_point(info, args.operating_point).threshold
    score = f"P({info.positive_class})" if info.positive_class else "P(label)"
    lesion = None
    if args.lesion_checkpoint:
        from covidlens.measure.evidence import lesion_model

        lesion = lesion_model(args.lesion_checkpoint)
    print(f"{'image':<60}  {score:>10}  decision" + ("  lesion model" if lesion else ""))
    total = failed = refused = 0
    with ExitStack() as files:
        # Rows go to the files as they come, so memory stays flat over any number of images.
        table = json_out = None
        if args.csv:
            table = csv.DictWriter(files.enter_context(open(args.csv, "w", newline="")),
                                   fieldnames=["path", "label", "probability", "threshold", "error", "refused",
                                               "modality", *(LESION_COLUMNS if lesion else []), *STUDY_COLUMNS,
                                               *[f"p_{c}" for c in info.classes]])
            table.writeheader()
        if args.json:
            json_out = files.enter_context(open(args.json, "w"))
            json_out.write("[")
        for row in iter_predictions(model, args.paths, threshold=threshold, tta=args.tta, batch_size=args.batch_size,
                                    num_workers=args.workers, check_modality=args.check_modality,
                                    lesion_checkpoint=lesion):
            shown = row.path if len(row.path) <= 60 else "..." + row.path[-57:]
            if row.refused:
                print(f"{shown:<60}  {'-':>10}  refused: {row.error}", flush=True)
            elif row.error:
                print(f"{shown:<60}  {'-':>10}  error: {row.error}", flush=True)
            else:
                print(f"{shown:<60}  {row.probability:10.3f}  {row.label}{_lesion_words(row.lesions)}{_study_words(row.study)}",
                      flush=True)
            record = _record(row, info.classes, lesion is not None)
            if table:
                table.writerow(record)
            if json_out:
                json_out.write((",\n  " if total else "\n  ") + json.dumps(record))
            total += 1
            failed += bool(row.error) and not row.refused
            refused += row.refused
        if json_out:
            json_out.write("\n]\n")
    if refused:
        print(f"covidlens: {refused} of {total} images were refused by the modality check (the model is a "
              f"{info.modality.upper()} model); --no-modality-check gives them a verdict anyway.", file=sys.stderr)
    return max(batch_status(failed, total), int(bool(refused)))
