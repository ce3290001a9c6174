"""One study, screened: the modality, the evidence of each stage, and the verdict.

:func:`screen_scan` is the road every front end takes (``covidlens screen``, ``covidlens predict`` on a
volume, the Python API and ``/v1/screen``). It runs in stages and times each:

- **CT** (a volume, a DICOM slice in HU or an 8-bit picture): lungs (the classical HU mask; none for an
  8-bit picture), lesions slice by slice inside the lungs (the MedSeg lesion model on each slice's lung
  box, :func:`covidlens.measure.quantify.lesion_masks`), lesion and lung volume, percent involved and
  severity, then the CT classifier's P(COVID) on every lung slice as the second line of evidence;
- **CXR**: lungs (the CXR lung model), the classifier on the input it was trained on (raw or
  lung-masked, from its checkpoint), and the share of its Grad-CAM heat inside the lungs.

The verdict comes from :mod:`covidlens.screening.verdict`. A stage whose model is absent is skipped and
named in ``missing``; nothing falls back quietly.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from covidlens.checkpoint import Checkpoint, load_checkpoint
from covidlens.data.intensity import LUNG_WINDOW, to_uint8, window
from covidlens.data.scan import Scan
from covidlens.errors import CovidlensError
from covidlens.evaluation.operating_points import check_name, classifier_point
from covidlens.screening import verdict as rule

#: Key slices shown with overlays in a report.
KEY_SLICES = 4
#: The CT classifier's study score is this percentile of its lung slices' P(COVID): a high one, so that
#: a few affected slices count, but not the single highest, which one odd slice decides.
CLASSIFIER_PERCENTILE = 90


@dataclass
class ScreenModels:
    """The checkpoints a screen uses, by role; any may be absent, and the result then says so."""

    lesion: Checkpoint | None = None
    ct_classifier: Checkpoint | None = None
    cxr_lungs: Checkpoint | None = None
    cxr_classifier: Checkpoint | None = None
    #: Engines for the classifiers (ONNX Runtime sessions) by role; PyTorch when absent.
    engines: dict = field(default_factory=dict)

    @classmethod
    def load(cls, lesion=None, ct=None, cxr_lungs=None, cxr=None, backend: str | None = None) -> "ScreenModels":
        """Load and check each checkpoint for its role; ``backend`` None is ONNX Runtime where it is
        installed (the faster engine for the lesion model and the classifiers; Grad-CAM and the CXR lung
        model run PyTorch), else PyTorch."""
        models = cls(
            lesion=_role(lesion, "segmentation", "ct", "--lesion-checkpoint", "a CT lesion segmentation model"),
            ct_classifier=_role(ct, "classification", "ct", "--ct-checkpoint", "a CT classifier"),
            cxr_lungs=_role(cxr_lungs, "segmentation", "cxr", "--cxr-lung-checkpoint", "a chest X-ray lung model"),
            cxr_classifier=_role(cxr, "classification", "cxr", "--cxr-checkpoint", "a chest X-ray classifier"),
        )
        if not any(models.roles().values()):
            raise CovidlensError("no model given: pass a lesion model (--lesion-checkpoint) and/or classifiers "
                                 "(--ct-checkpoint, --cxr-checkpoint, --cxr-lung-checkpoint).")
        if models.cxr_lungs is not None and list(models.cxr_lungs.info.classes) != ["background", "lung"]:
            raise CovidlensError(f"{models.cxr_lungs.path} segments {', '.join(models.cxr_lungs.info.classes)}; "
                                 "--cxr-lung-checkpoint needs a background, lung model.")
        backend = backend or default_backend()
        if backend == "onnxruntime":
            from covidlens.runtime import open_model

            for role in ("lesion", "ct_classifier", "cxr_classifier"):
                ckpt = getattr(models, role)
                if ckpt is not None:
                    models.engines[role] = open_model(ckpt, "onnxruntime")
        return models

    def roles(self) -> dict[str, Checkpoint | None]:
        return {"lesion": self.lesion, "ct_classifier": self.ct_classifier, "cxr_lungs": self.cxr_lungs,
                "cxr_classifier": self.cxr_classifier}

    def describe(self) -> dict[str, dict]:
        return {role: {"path": str(c.path), "architecture": c.info.model, "dataset": c.info.dataset,
                       "engine": "onnxruntime" if role in self.engines else "torch"}
                for role, c in self.roles().items() if c is not None}


def default_backend() -> str:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnxruntime"


def _role(path, task: str, modality: str, flag: str, words: str) -> Checkpoint | None:
    if path is None:
        return None
    ckpt = path if isinstance(path, Checkpoint) else load_checkpoint(path)
    if ckpt.info.task != task or ckpt.info.modality != modality:
        raise CovidlensError(f"{ckpt.path} is a {ckpt.info.modality.upper()} {ckpt.info.task} model, but {flag} "
                             f"needs {words}.")
    return ckpt


@dataclass
class Verdict:
    #: "yes", "no", "not assessed" (CT), or "not measured" (a radiograph: no lesion model exists for CXR).
    lesions: str
    #: CT-0..CT-4 for a CT volume, else None.
    severity: str | None
    #: P(COVID-19) of the modality's classifier (a CT volume: its study score), None without one.
    covid19_score: float | None
    #: The decision at the operating point, in words.
    decision: str
    operating_point: str
    #: Why: the rule and its numbers, one sentence each.
    rule: list[str] = field(default_factory=list)


@dataclass
class StudyEvidence:
    """Everything measured on one study; arrays stay out of ``result.json`` (see :meth:`record`)."""

    modality: str
    modality_statement: str
    kind: str  # "volume", "slice" (CT in HU), "picture" (8-bit CT) or "radiograph"
    verdict: Verdict
    measures: dict = field(default_factory=dict)
    slices: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    # Arrays for the outputs: (D, H, W) 8-bit display, lesion and lung masks; heat maps by slice index.
    grey: np.ndarray | None = None
    lesion: np.ndarray | None = None
    lung: np.ndarray | None = None
    heat: dict = field(default_factory=dict)
    key_slices: list[int] = field(default_factory=list)

    def record(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("grey", "lesion", "lung", "heat")}


class Clock:
    """Seconds per stage, added up (a stage may run in pieces)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def stage(self, name: str):
        clock = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                clock.seconds[name] = clock.seconds.get(name, 0.0) + time.perf_counter() - self.start

        return _Stage()


def screen_scan(scan: Scan, models: ScreenModels, operating_point: str = "default", modality: str | None = None,
                clock: Clock | None = None, explain: bool = True) -> StudyEvidence:
    """Screen one study already read by :func:`~covidlens.data.io.read_scan`. ``modality`` ('ct' or
    'cxr') overrides what the file and the modality check say, and the result states it; ``explain``
    False skips the heat maps of the key slices. Bad input raises :class:`CovidlensError` with one sentence."""
    check_name(operating_point)
    clock = clock or Clock()
    kind, statement = study_modality(scan, modality)
    with torch.inference_mode():
        if kind == "ct":
            evidence = _screen_ct(scan, models, operating_point, statement, clock, explain)
        else:
            evidence = _screen_cxr(scan, models, operating_point, statement, clock, explain)
    evidence.timings = {k: round(v, 3) for k, v in clock.seconds.items()}
    return evidence


def study_modality(scan: Scan, override: str | None = None) -> tuple[str, str]:
    """('ct' | 'cxr', the sentence that says how it was told); one sentence refusing anything else."""
    from covidlens.modality import check_scan
    from covidlens.modality.tags import modality_from_header

    header = modality_from_header(scan.modality)
    if override is not None:
        if override not in ("ct", "cxr"):
            raise CovidlensError(f"modality must be ct or cxr, not {override!r}.")
        return override, f"Read as {'CT' if override == 'ct' else 'chest X-ray'} because the request said so."
    if header == "ct" or (header is None and scan.units == "HU"):
        how = f"the DICOM Modality tag ({scan.modality})" if header == "ct" else "its Hounsfield units"
        return "ct", f"CT, from {how}."
    if header == "cxr":
        if scan.ndim != 2:
            raise CovidlensError(f"{scan.path} is a {scan.ndim}-D X-ray ({scan.modality}) series; a chest X-ray is one image.")
        return "cxr", f"Chest X-ray, from the DICOM Modality tag ({scan.modality})."
    if header == "other":
        raise CovidlensError(f"{scan.path} is a DICOM image of modality {scan.modality}; covidlens screens CT and "
                             "chest X-ray only.")
    if scan.ndim != 2:
        raise CovidlensError(f"{scan.path} is a volume that states no modality and is not in Hounsfield units; "
                             "covidlens screens CT volumes in HU.")
    check = check_scan(scan)
    if check.kind == "other":
        raise CovidlensError(f"{scan.path} does not look like a chest CT slice or a chest X-ray ({check.reason}), so "
                             "it gets no verdict.")
    return check.kind, f"{'A CT slice' if check.kind == 'ct' else 'A chest X-ray'}, by the modality check ({check.reason})."


# --- CT ------------------------------------------------------------------------------------------


def _screen_ct(scan: Scan, models: ScreenModels, point: str, statement: str, clock: Clock, explain: bool) -> StudyEvidence:
    from covidlens.measure.lungs import segment_lungs_hu
    from covidlens.measure.quantify import lesion_masks

    hu = scan.units == "HU"
    volume = scan.ndim == 3
    pixels = scan.pixels if volume else scan.pixels[None]
    spacing = scan.spacing
    missing, notes = [], []
    grey = window(pixels, *LUNG_WINDOW) if hu else to_uint8(scan).reshape(pixels.shape)
    kind = "volume" if volume else ("slice" if hu else "picture")
    if kind == "picture":
        return _screen_picture(scan, models, point, statement, clock, grey, explain)
    with clock.stage("lungs"):
        lung = segment_lungs_hu(pixels if volume else pixels[0], spacing)
        lung = lung if volume else lung[None]
    lesion = None
    if models.lesion is None:
        missing.append("No lesion model: no lesions, volumes or severity, classifier score only.")
    else:
        with clock.stage("lesions"):
            lesion = lesion_masks(models.lesion, grey, lung, engine=models.engines.get("lesion")) & lung
    pixel_mm2 = spacing[-2] * spacing[-1] if spacing is not None else None
    lung_px = lung.reshape(len(lung), -1).sum(axis=1)
    lesion_px = lesion.reshape(len(lesion), -1).sum(axis=1) if lesion is not None else None
    scores = _ct_classifier(models, grey, lung_px, clock, missing)
    slices = []
    for k in range(len(lung)):
        row = {"index": k, "lung_px": int(lung_px[k])}
        if lesion_px is not None:
            row["lesion_px"] = int(lesion_px[k])
            if pixel_mm2 is not None:
                row["lesion_mm2"] = round(float(lesion_px[k]) * pixel_mm2, 2)
            row["percent_of_slice_lung"] = round(100.0 * lesion_px[k] / lung_px[k], 3) if lung_px[k] else None
        if scores is not None:
            row["p_covid"] = None if np.isnan(scores[k]) else round(float(scores[k]), 4)
        slices.append(row)
    measures = _ct_measures(lung_px, lesion_px, spacing, volume)
    if not volume and lesion_px is not None:
        call = rule.ct_slice_call(measures.get("lesion_area_mm2"), float(lung_px[0]), point)
    elif lesion_px is not None:
        call = rule.ct_volume_call(measures.get("lesion_volume_ml"), measures.get("percent_involved"), point)
    else:
        call = rule.LesionCall("not assessed", None, "No lesion model, so no lesion burden was judged.")
    study_score = None
    if scores is not None and np.isfinite(scores).any():
        study_score = float(np.nanpercentile(scores, CLASSIFIER_PERCENTILE)) if volume else float(scores[0])
        measures["classifier_rule"] = (f"the {CLASSIFIER_PERCENTILE}th percentile of P(COVID) over the lung slices"
                                       if volume else "P(COVID) of the slice")
    verdict = _ct_verdict(call, study_score, models, point)
    key = _key_slices(lesion_px, lung_px)
    evidence = StudyEvidence("ct", statement, kind, verdict, measures, slices, missing, notes,
                             grey=grey, lesion=lesion, lung=lung, key_slices=key)
    if models.ct_classifier is not None and explain:
        with clock.stage("classifier"):
            evidence.heat = _heat_maps(models.ct_classifier, grey, key)
    if kind == "slice" and lung_px[0] == 0:
        notes.append("This slice shows no lung (an abdomen or neck slice?), so it is not assessed.")
    return evidence


def _ct_measures(lung_px, lesion_px, spacing, volume: bool) -> dict:
    lung_total = float(lung_px.sum())
    out: dict = {"lung_slices": int((lung_px > 0).sum()), "slices": int(len(lung_px))}
    if lesion_px is not None:
        lesion_total = float(lesion_px.sum())
        out["percent_involved"] = round(100.0 * lesion_total / lung_total, 4) if lung_total else None
        out["lesion_slices"] = int((lesion_px > 0).sum())
    if spacing is None:
        out["units"] = "voxels"
        out["lung_voxels"] = int(lung_total)
        if lesion_px is not None:
            out["lesion_voxels"] = int(lesion_px.sum())
        return out
    if volume:
        voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
        out["lung_volume_ml"] = round(lung_total * voxel_ml, 2)
        if lesion_px is not None:
            out["lesion_volume_ml"] = round(float(lesion_px.sum()) * voxel_ml, 2)
    else:
        pixel = spacing[-2] * spacing[-1]
        out["lung_area_mm2"] = round(lung_total * pixel, 1)
        if lesion_px is not None:
            out["lesion_area_mm2"] = round(float(lesion_px.sum()) * pixel, 1)
    return out


def _ct_classifier(models: ScreenModels, grey: np.ndarray, lung_px: np.ndarray, clock: Clock, missing: list) -> np.ndarray | None:
    """P(COVID) per slice (NaN on slices without lung), or None without a CT classifier."""
    from covidlens.inference import image_probabilities

    ckpt = models.ct_classifier
    if ckpt is None:
        missing.append("No CT classifier: no COVID-19 score, the lesion evidence only.")
        return None
    if ckpt.info.positive_index is None:
        missing.append(f"The CT classifier ({ckpt.info.model}) names no positive class, so it gives no COVID-19 score.")
        return None
    with clock.stage("classifier"):
        scored = np.flatnonzero(lung_px > 0) if (lung_px > 0).any() else np.arange(len(grey))
        probs = image_probabilities(ckpt, [Image.fromarray(grey[k], mode="L") for k in scored], 16, ckpt.info.tta,
                                    engine=models.engines.get("ct_classifier"))
        scores = np.full(len(grey), np.nan)
        scores[scored] = probs[:, ckpt.info.positive_index]
    return scores


def _ct_verdict(call: rule.LesionCall, score: float | None, models: ScreenModels, point: str) -> Verdict:
    lines = [call.rule]
    if call.lesions == "yes":
        decision = "pneumonia-pattern lesions: refer for reading"
    elif call.lesions == "no":
        decision = "no pneumonia-pattern lesions"
    else:
        decision = "no decision: the lesions could not be assessed"
    if score is not None:
        info = models.ct_classifier.info
        cut = classifier_point(info, point if point != "sensitivity" or info.sensitivity_threshold is not None else "default")
        lines.append(f"Second line, not the verdict: the CT classifier's P(COVID) is {score:.3f} ({cut.statement} "
                     "It was trained on COVID-CT figure crops and does not transfer to real scans: docs/results.md section 9.)")
    if call.lesions == "yes":
        lines.append(rule.CT_DIFFERENTIAL)
    return Verdict(call.lesions, call.severity, score, decision, point, lines)


def _screen_picture(scan, models: ScreenModels, point: str, statement: str, clock: Clock, grey: np.ndarray,
                    explain: bool) -> StudyEvidence:
    """One 8-bit CT picture: lesion share of the body (no HU, so no lung mask and no volume)."""
    from covidlens.measure.evidence import lesion_maps

    missing, notes = [], ["An 8-bit picture carries no Hounsfield units: no lung mask, no volume, no severity class."]
    image = Image.fromarray(grey[0], mode="L")
    lesion = body = None
    call = rule.LesionCall("not assessed", None, "No lesion model, so no lesion burden was judged.")
    measures: dict = {"slices": 1}
    if models.lesion is None:
        missing.append("No lesion model: no lesions, classifier score only.")
    else:
        with clock.stage("lesions"):
            prob, body = lesion_maps(models.lesion, [image])[0]
            lesion = (prob >= 0.5) & body
        share = float(lesion.sum()) / max(int(body.sum()), 1)
        measures.update(lesion_share_of_body=round(share, 5), lesion_px=int(lesion.sum()), body_px=int(body.sum()))
        call = rule.picture_call(share, point)
    scores = _ct_classifier(models, grey, np.ones(1), clock, missing)
    score = None if scores is None else float(scores[0])
    verdict = _ct_verdict(call, score, models, point)
    evidence = StudyEvidence("ct", statement, "picture", verdict, measures, [], missing, notes, grey=grey,
                             lesion=None if lesion is None else lesion[None], lung=None if body is None else body[None],
                             key_slices=[0])
    if models.ct_classifier is not None and explain:
        with clock.stage("classifier"):
            evidence.heat = _heat_maps(models.ct_classifier, grey, [0])
    return evidence


def _key_slices(lesion_px, lung_px) -> list[int]:
    """The slices a reader should see first: most lesion, at least a tenth of the scan apart (so that
    four neighbours of one lesion do not hide the rest), else the slice with the most lung."""
    if lesion_px is None or not lesion_px.any():
        return [int(np.argmax(lung_px))] if lung_px.any() else [len(lung_px) // 2]
    gap = max(1, len(lesion_px) // 10)
    chosen: list[int] = []
    for k in (int(k) for k in np.argsort(-lesion_px, kind="stable") if lesion_px[k] > 0):
        if all(abs(k - c) >= gap for c in chosen):
            chosen.append(k)
        if len(chosen) == KEY_SLICES:
            break
    return sorted(chosen)


def _heat_maps(ckpt: Checkpoint, grey: np.ndarray, indices: list[int]) -> dict[int, np.ndarray]:
    from covidlens.explain import explain_image

    with torch.inference_mode(False), torch.enable_grad():
        return {k: explain_image(ckpt, Image.fromarray(grey[k], mode="L"), "gradcam",
                                 target_class=ckpt.info.positive_class).heat for k in indices}


# --- CXR -----------------------------------------------------------------------------------------


def _screen_cxr(scan: Scan, models: ScreenModels, point: str, statement: str, clock: Clock, explain: bool) -> StudyEvidence:
    from covidlens.explain.measure import energy_in_mask
    from covidlens.inference import image_probabilities
    from covidlens.segmentation.lungs import apply_lungs, lung_masks

    if scan.ndim != 2:
        raise CovidlensError(f"{scan.path} is a volume, but a chest X-ray is one image; send the radiograph on its own.")
    grey = to_uint8(scan)
    missing, notes, measures = [], [], {}
    lung = None
    if models.cxr_lungs is None:
        missing.append("No chest X-ray lung model: no lung mask, and no check that the heat map lies on the lungs.")
    else:
        with clock.stage("lungs"):
            lung = lung_masks(models.cxr_lungs, [Image.fromarray(grey, mode="L")])[0]
        measures["lung_fraction"] = round(float(lung.mean()), 4)
    ckpt = models.cxr_classifier
    score, lines, decision, heat = None, [], "no decision: no chest X-ray classifier", None
    if ckpt is None:
        missing.append("No chest X-ray classifier: no COVID-19 score and no decision.")
    else:
        wanted = ckpt.info.preprocessing.get("lungs", "raw")
        seen = grey
        if wanted != "raw":
            if lung is None or not lung.any():
                missing.append(f"The classifier was trained on {wanted} lungs, but no lung mask was found, so it gives no verdict.")
                ckpt = None
            else:
                seen = apply_lungs(grey, lung, wanted)
        if ckpt is not None:
            with clock.stage("classifier"):
                probs = image_probabilities(ckpt, [Image.fromarray(seen, mode="L")], 1, ckpt.info.tta,
                                            engine=models.engines.get("cxr_classifier"))[0]
            cut = classifier_point(ckpt.info, point if point != "sensitivity" or ckpt.info.sensitivity_threshold is not None else "default")
            if cut.name != point:
                notes.append("This classifier has no validation-chosen sensitivity threshold; its default is used.")
            pos = ckpt.info.positive_index
            score = float(probs[pos]) if pos is not None else None
            from covidlens.inference import decide

            label = decide(probs, ckpt.info, cut.threshold)
            decision = f"{label} ({ckpt.info.positive_class} score {score:.3f})" if score is not None else label
            lines.append(cut.statement)
            if not explain:
                pass
            elif wanted == "cropped":
                notes.append("The classifier saw the lungs' bounding box, so its heat map is not compared with the lung mask.")
            else:
                with clock.stage("classifier"):
                    heat = _heat_maps(ckpt, seen[None], [0])[0]
                if lung is not None and lung.any():
                    inside, covered = energy_in_mask(heat, lung)
                    if inside == inside:
                        measures["heat_in_lungs"] = round(inside, 4)
                        lines.append(f"{inside:.0%} of the heat map lies inside the lungs, which cover {covered:.0%} of the image.")
                    else:  # Grad-CAM of the positive class is zero everywhere: nothing raised the score
                        notes.append("The heat map is empty (no region raised the COVID-19 score), so its share "
                                     "inside the lungs is not measured.")
    verdict = Verdict("not measured", None, score, decision, point, lines)
    return StudyEvidence("cxr", statement, "radiograph", verdict, measures, [], missing, notes, grey=grey[None],
                         lung=None if lung is None else lung[None], heat={} if heat is None else {0: heat}, key_slices=[0])
