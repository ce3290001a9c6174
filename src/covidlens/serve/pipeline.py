"""What a worker does with one upload: read it, hand it to the library, map the answer to the response.
The library functions are the CLI's (read_scan, screen_scan, image_probabilities and decide,
explain_image, segment_image, quantify_scan); the web service adds the request options, the API's
error codes, the upload handling and the JSON, nothing else.

/v1/screen is :func:`covidlens.screening.screen_scan`, the road of ``covidlens screen``: the same
modality statement, verdict and measures for the same study. /v1/predict on a volume takes the same
road and answers with its CT classifier study score.

Modality of the single-model endpoints (predict, explain, segment, quantify). It is taken from what
the file says (the DICOM Modality tag; Hounsfield units, which only CT has), else, for one image, from
covidlens's modality check, which the request's ``modality`` overrules, else from the request, else
from the server holding models of one modality only. The response says which, and says plainly when
the file itself did not tell.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from covidlens.checkpoint import Checkpoint
from covidlens.data.intensity import display_image, to_uint8
from covidlens.data.io import Scan
from covidlens.errors import CovidlensError
from covidlens.inference import decide, image_probabilities
from covidlens.modality import check_scan, header_tags, modality_from_header
from covidlens.screening.outputs import key_slice_pictures
from covidlens.screening.road import ScreenModels, StudyEvidence, screen_scan
from covidlens.serve import schemas
from covidlens.serve.errors import ApiError
from covidlens.store.store import card_of
from covidlens.serve.uploads import Upload, opened_scan, public_message
from covidlens.visualize import heat_overlay, mask_overlay, png_base64

MODALITY_WORDS = {"ct": "CT", "cxr": "chest X-ray"}
#: The id in GET /v1/models of the model in each role of the screen road.
ROLE_IDS = {"lesion": "lesion", "ct_classifier": "ct", "cxr_lungs": "cxr-lungs", "cxr_classifier": "cxr"}
#: The roles a study of each modality goes through.
STUDY_ROLES = {"ct": ("lesion", "ct_classifier"), "cxr": ("cxr_lungs", "cxr_classifier")}
#: Slices of a volume classified at once.
BATCH = 16
#: Overlays of the most affected slices returned by quantify.
QUANTIFY_OVERLAYS = 3


@dataclass
class Options:
    """What a request may choose, all from query parameters."""

    model: str | None = None
    modality: str | None = None
    operating_point: str = "default"
    method: str = "gradcam"
    target_class: str | None = None


@dataclass
class ServedModels:
    """The checkpoints a server holds, loaded once: classifiers by modality id, one lesion model and one
    chest X-ray lung model."""

    classifiers: dict[str, Checkpoint]
    lesion: Checkpoint | None = None
    #: Engines that score the classifiers instead of the checkpoint's PyTorch model (an
    #: :class:`~covidlens.runtime.OnnxModel` per classifier with ``--backend onnxruntime``); explain
    #: always runs PyTorch, which Grad-CAM needs. ONNX Runtime sessions may be shared between threads.
    runners: dict = field(default_factory=dict)
    #: The background/lung model that masks radiographs on /v1/screen.
    cxr_lungs: Checkpoint | None = None

    @classmethod
    def load(cls, ct: str | Path | None = None, cxr: str | Path | None = None, lesion: str | Path | None = None,
             backend: str = "torch", cxr_lungs: str | Path | None = None) -> "ServedModels":
        """Load and check each checkpoint for its role (the library's :meth:`ScreenModels.load`, as
        ``covidlens screen`` does); one sentence for the first that does not fit."""
        if ct is None and cxr is None:
            raise CovidlensError("give at least one classifier: --ct-checkpoint and/or --cxr-checkpoint.")
        loaded = ScreenModels.load(lesion=lesion, ct=ct, cxr_lungs=cxr_lungs, cxr=cxr, backend=backend)
        classifiers = {modality: ckpt for modality, ckpt in (("ct", loaded.ct_classifier), ("cxr", loaded.cxr_classifier))
                       if ckpt is not None}
        runners = {modality: loaded.engines[f"{modality}_classifier"] for modality in classifiers
                   if f"{modality}_classifier" in loaded.engines}
        return cls(classifiers, loaded.lesion, runners, loaded.cxr_lungs)

    def replicate(self) -> "ServedModels":
        """Copies of every model for another worker (Grad-CAM hooks must not cross requests)."""
        def twin(ckpt: Checkpoint | None) -> Checkpoint | None:
            return Checkpoint(copy.deepcopy(ckpt.model).eval(), ckpt.info, ckpt.path) if ckpt else None

        return ServedModels({k: twin(c) for k, c in self.classifiers.items()}, twin(self.lesion), dict(self.runners),
                            twin(self.cxr_lungs))

    def screen_models(self) -> ScreenModels:
        """The same models by the roles of the library's screen road."""
        return ScreenModels(lesion=self.lesion, ct_classifier=self.classifiers.get("ct"), cxr_lungs=self.cxr_lungs,
                            cxr_classifier=self.classifiers.get("cxr"),
                            engines={f"{modality}_classifier": runner for modality, runner in self.runners.items()})

    def _entries(self) -> list[tuple[str, Checkpoint, str]]:
        entries = [(mid, ckpt, "classifier") for mid, ckpt in self.classifiers.items()]
        if self.lesion:
            entries.append(("lesion", self.lesion, "lesion-segmenter"))
        if self.cxr_lungs:
            entries.append((ROLE_IDS["cxr_lungs"], self.cxr_lungs, "lung-segmenter"))
        return entries

    def ids(self) -> list[str]:
        return [mid for mid, _, _ in self._entries()]

    def cards(self) -> dict[str, Path]:
        """The card.md of each held model that is an installed store model with a card, by store name."""
        found = (card_of(ckpt.path) for _, ckpt, _ in self._entries())
        return dict(item for item in found if item is not None)

    def describe(self) -> list[schemas.ModelInfoV1]:
        return [
            schemas.ModelInfoV1(
                id=mid, role=role, architecture=c.info.model, task=c.info.task, modality=c.info.modality,
                classes=list(c.info.classes), positive_class=c.info.positive_class, input_size=c.info.input_size,
                threshold=c.info.threshold, sensitivity_threshold=c.info.sensitivity_threshold,
                target_sensitivity=c.info.target_sensitivity, dataset=c.info.dataset, card=card_url(c.path),
            )
            for mid, c, role in self._entries()
        ]


def card_url(folder) -> str | None:
    """The API path of a checkpoint's card when it is a store model with one (see GET /v1/models/{name}/card)."""
    found = card_of(folder)
    return f"/v1/models/{found[0]}/card" if found else None


# --- modality ------------------------------------------------------------------------------------


def detected_modality(scan: Scan) -> tuple[str, str]:
    """('ct' | 'cxr' | 'unknown', how it was told) from what the file itself states."""
    header = modality_from_header(scan.modality)
    if header == "ct":
        if scan.format == "nifti":
            return "ct", "hounsfield-units"
        return "ct", "dicom-tag"
    if header == "cxr":
        return "cxr", "dicom-tag"
    if header == "other":
        raise ApiError(
            422, "unsupported_modality",
            f"The upload is a DICOM image of modality {scan.modality.strip().upper()}; covidlens screens CT and "
            f"chest X-ray ({', '.join(header_tags('cxr'))}) only.",
        )
    if scan.units == "HU":
        return "ct", "hounsfield-units"
    return "unknown", ""


def _how(detected: str, source: str, scan: Scan) -> str:
    if source == "dicom-tag":
        return f"{MODALITY_WORDS[detected]}, from the DICOM Modality tag ({scan.modality})"
    return f"{MODALITY_WORDS[detected]}, from its Hounsfield units"


def resolve_modality(scan: Scan, available: list[str], options: Options, purpose: str) -> schemas.ModalityV1:
    """Which modality's model reads ``scan``: what the file states, else (one image) the modality check
    of :mod:`covidlens.modality`, which the request's ``modality`` overrides with a statement, else the
    request's, else the only one ``available``; 422 when they disagree, when the image is neither a
    chest CT slice nor a chest X-ray, or when no model of that modality is here."""
    detected, source = detected_modality(scan)
    requested = options.modality
    words = " and ".join(MODALITY_WORDS[m] for m in available)
    if detected != "unknown":
        if requested and requested != detected:
            raise ApiError(
                422, "modality_conflict",
                f"The request says {MODALITY_WORDS[requested]} but the upload is {_how(detected, source, scan)}; "
                "send it without the modality parameter or with the right one.",
            )
        if detected not in available:
            raise ApiError(
                422, "wrong_modality",
                f"The upload is a {_how(detected, source, scan)}, but this server {purpose} {words} only.",
            )
        return schemas.ModalityV1(detected=detected, used=detected, source=source,
                                  statement=f"Recognised as {_how(detected, source, scan)}.")
    if scan.ndim == 2:
        return _checked_modality(scan, available, requested, purpose, words)
    why = {"dicom-series": "this DICOM series has no Modality tag",
           "nifti": "this NIfTI volume is not in Hounsfield units"}.get(scan.format, "it states none")
    unknown = f"The file does not say its modality ({why})"
    if requested:
        if requested not in available:
            raise ApiError(422, "wrong_modality",
                           f"The request says {MODALITY_WORDS[requested]}, but this server {purpose} {words} only.")
        return schemas.ModalityV1(detected="unknown", used=requested, source="request",
                                  statement=f"{unknown}; read as {MODALITY_WORDS[requested]} because the request said so.")
    if len(available) == 1:
        used = available[0]
        return schemas.ModalityV1(detected="unknown", used=used, source="only-model",
                                  statement=f"{unknown}; read as {MODALITY_WORDS[used]}, the only modality this "
                                            f"server {purpose}.")
    raise ApiError(
        422, "modality_unknown",
        f"{unknown}, and this server {purpose} both CT and chest X-ray; choose one with modality=ct or modality=cxr.",
    )


def _checked_modality(scan: Scan, available: list[str], requested: str | None, purpose: str, words: str) -> schemas.ModalityV1:
    """One image whose file states no modality (PNG, JPEG, a DICOM without the tag): the modality check says."""
    check = check_scan(scan)
    looks = {"ct": "a chest CT slice", "cxr": "a chest X-ray", "other": "neither a chest CT slice nor a chest X-ray"}[check.kind]
    if requested:
        if requested not in available:
            raise ApiError(422, "wrong_modality",
                           f"The request says {MODALITY_WORDS[requested]}, but this server {purpose} {words} only.")
        agrees = "as the request said" if check.kind == requested else f"read as {MODALITY_WORDS[requested]} because the request said so"
        return schemas.ModalityV1(detected=check.kind, used=requested, source="request",
                                  statement=f"The modality check finds {looks} ({check.reason}); {agrees}.")
    if check.kind == "other":
        raise ApiError(422, "not_a_chest_image",
                       f"The upload does not look like a chest CT slice or a chest X-ray ({check.reason}), so covidlens "
                       "gives no verdict; if it is one, send it again with modality=ct or modality=cxr.")
    if check.kind not in available:
        raise ApiError(422, "wrong_modality",
                       f"The upload looks like {looks} ({check.reason}), but this server {purpose} {words} only; "
                       f"if it is {'a chest X-ray' if check.kind == 'ct' else 'a CT slice'}, send it with "
                       f"modality={'cxr' if check.kind == 'ct' else 'ct'}.")
    return schemas.ModalityV1(detected=check.kind, used=check.kind, source="modality-check",
                              statement=f"Recognised as {MODALITY_WORDS[check.kind]} by the modality check ({check.reason}).")


# --- jobs ----------------------------------------------------------------------------------------


def screen_job(models: ServedModels, upload: Upload, options: Options) -> schemas.ScreenResponseV1:
    """The study result of ``covidlens screen`` for one upload; the road's refusal is 422 with its sentence."""
    with opened_scan(upload) as (scan, path):
        try:
            evidence = screen_scan(scan, models.screen_models(), options.operating_point, options.modality)
        except CovidlensError as exc:
            raise ApiError(422, "not_screened", public_message(str(exc), path.parent)) from None
        return _screen_response(upload, scan, evidence, models.screen_models())



def predict_job(models: ServedModels, upload: Upload, options: Options) -> schemas.PredictResponseV1:
    with opened_scan(upload) as (scan, _):
        response, _ = _predict(models, upload, scan, options)
    return response


def explain_job(models: ServedModels, upload: Upload, options: Options) -> schemas.ExplainResponseV1:
    from covidlens.explain import explain_image

    with opened_scan(upload) as (scan, _):
        prediction, image = _predict(models, upload, scan, options)
        ckpt = models.classifiers[prediction.model.id]
        target = options.target_class or prediction.decision
        if target not in ckpt.info.classes:
            raise ApiError(400, "bad_option",
                           f"Unknown class {target!r}; this model's classes are {', '.join(ckpt.info.classes)}.")
        explanation = explain_image(ckpt, image, options.method, target_class=target)
    return schemas.ExplainResponseV1(
        **prediction.model_dump(),
        explanation=schemas.ExplanationV1(
            method=options.method, explained_class=explanation.explained_class,
            probability=explanation.probability, layer=explanation.layer,
            overlay_png=png_base64(heat_overlay(np.asarray(image), explanation.heat)),
        ),
    )


def segment_job(models: ServedModels, upload: Upload, options: Options) -> schemas.SegmentResponseV1:
    from covidlens.segmentation import segment_image

    ckpt = _lesion_model(models, options)
    with opened_scan(upload) as (scan, _):
        modality = resolve_modality(scan, ["ct"], options, "segments lesions on")
        if scan.ndim != 2:
            raise ApiError(422, "volume_not_accepted",
                           "The upload is a 3-D volume; segment takes one slice, so send the volume to /v1/quantify.")
        grey = display_image(scan)
        mask = segment_image(ckpt, grey).argmax(0)
        classes = ckpt.info.classes
        pixel = scan.spacing[0] * scan.spacing[1] if scan.spacing else 1.0
        return schemas.SegmentResponseV1(
            input=_input(upload, scan), modality=modality, model=_ref("lesion", ckpt),
            fractions={c: float((mask == k).mean()) for k, c in enumerate(classes)},
            lesion_area=float((mask > 0).sum()) * pixel, area_units="mm2" if scan.spacing else "pixels",
            overlay_png=png_base64(mask_overlay(np.asarray(grey), mask)),
            notes=["No lung mask is applied here; /v1/quantify keeps only lesion inside the lungs and gives the "
                   "percent of lung involved."],
        )


def quantify_job(models: ServedModels, upload: Upload, options: Options) -> schemas.QuantifyResponseV1:
    from covidlens.measure.quantify import quantify_scan

    ckpt = _lesion_model(models, options)
    with opened_scan(upload) as (scan, path):
        modality = resolve_modality(scan, ["ct"], options, "measures lesions on")
        root = path.parent
        result = quantify_scan(path, ckpt, root / "quantify", progress=False, max_overlays=QUANTIFY_OVERLAYS)
        overlays = [
            schemas.OverlayV1(slice_index=int(Path(name).stem.split("_")[-1]),
                              png=base64.b64encode((root / "quantify" / name).read_bytes()).decode("ascii"))
            for name in result.overlays
        ]
        return schemas.QuantifyResponseV1(
            input=_input(upload, scan), modality=modality, model=_ref("lesion", ckpt),
            area_units=result.area_units, volume_units=result.volume_units,
            lesion_area=result.lesion_area, lung_area=result.lung_area,
            lesion_volume=result.lesion_volume, lung_volume=result.lung_volume,
            percent_involved=result.percent_involved, severity_class=result.severity_class,
            n_slices=result.n_slices, n_lung_slices=result.n_lung_slices,
            lung_method=result.lung_method.split(":")[0],
            slices=[schemas.SliceMeasureV1(index=s.index, lesion_area=s.lesion_area, lung_area=s.lung_area,
                                           percent_involved=s.percent_involved) for s in result.slices],
            overlays=overlays, notes=[public_message(n, root) for n in result.notes],
        )


# --- pieces --------------------------------------------------------------------------------------


def predict_many(models: ServedModels, requests: list[tuple[Upload, Options]]) -> list:
    """:func:`predict_job` for several requests at once (the worker pool's batching): single images
    bound for the same classifier share one forward pass; volumes run on their own. One response or
    exception per request, in order, so one bad upload fails only its own request."""
    results: list = [None] * len(requests)
    shared: dict[str, list] = {}
    for i, (upload, options) in enumerate(requests):
        try:
            with opened_scan(upload) as (scan, _):
                if scan.ndim != 2:
                    results[i] = _predict(models, upload, scan, options)[0]
                    continue
                prepared = _prepare(models, upload, scan, options)
                shared.setdefault(prepared.modality.used, []).append((i, prepared))
        except Exception as exc:  # noqa: BLE001  (handed to that request's handler, which answers it)
            results[i] = exc
    for model_id, items in shared.items():
        ckpt = models.classifiers[model_id]
        try:
            probs = image_probabilities(ckpt, [prepared.image for _, prepared in items], BATCH, ckpt.info.tta,
                                        engine=models.runners.get(model_id))
            for (i, prepared), p in zip(items, probs):
                results[i] = _respond(prepared, p)
        except Exception as exc:  # noqa: BLE001
            for i, _ in items:
                results[i] = exc
    return results


@dataclass
class _Prepared:
    upload: Upload
    scan: Scan
    options: Options
    modality: schemas.ModalityV1
    ckpt: Checkpoint
    threshold: float | None
    statement: str
    #: The 8-bit image the classifier reads; None for a volume, which takes the screen road.
    image: Image.Image | None


def _prepare(models: ServedModels, upload: Upload, scan: Scan, options: Options) -> _Prepared:
    available = [options.model] if options.model is not None else list(models.classifiers)
    modality = resolve_modality(scan, available, options, "screens")
    ckpt = models.classifiers[modality.used]
    threshold, statement = _operating_point(ckpt, options.operating_point)
    if scan.ndim == 3 and modality.used == "cxr":
        raise ApiError(422, "volume_not_accepted",
                       "The upload is a 3-D volume, but a chest X-ray is one image; send the radiograph on its own.")
    image = Image.fromarray(to_uint8(scan), mode="L") if scan.ndim == 2 else None
    return _Prepared(upload, scan, options, modality, ckpt, threshold, statement, image)


def _predict(models: ServedModels, upload: Upload, scan: Scan, options: Options):
    """The prediction response and the 8-bit image explain shows (a volume: its lung slice of highest P(COVID))."""
    prepared = _prepare(models, upload, scan, options)
    if scan.ndim == 3:
        return _predict_volume(models, prepared)
    ckpt, engine = prepared.ckpt, models.runners.get(prepared.modality.used)
    probs = image_probabilities(ckpt, [prepared.image], BATCH, ckpt.info.tta, engine=engine)
    return _respond(prepared, probs[0]), prepared.image


def _respond(prepared: _Prepared, probs: np.ndarray, slice_index: int | None = None, slices=(), notes=()):
    info = prepared.ckpt.info
    pos = info.positive_index
    return schemas.PredictResponseV1(
        input=_input(prepared.upload, prepared.scan), modality=prepared.modality,
        model=_ref(prepared.modality.used, prepared.ckpt), classes=list(info.classes),
        probabilities=dict(zip(info.classes, map(float, probs))), decision=decide(probs, info, prepared.threshold),
        positive_class=info.positive_class, score=float(probs[pos]) if pos is not None else None,
        threshold=prepared.threshold, operating_point=prepared.options.operating_point,
        operating_point_statement=prepared.statement, slice_index=slice_index, slices=list(slices), notes=list(notes),
    )


def _predict_volume(models: ServedModels, prepared: _Prepared):
    """A volume through the screen road, as ``covidlens predict`` takes it: the CT classifier's study
    score decided at the operating point, each lung slice's score beside it, and the lesion verdict
    in the notes when the server has a lesion model."""
    info = prepared.ckpt.info
    evidence = screen_scan(prepared.scan, models.screen_models(), prepared.options.operating_point, "ct", explain=False)
    verdict = evidence.verdict
    if verdict.covid19_score is None:
        raise ApiError(422, "no_study_score", "This CT classifier names no positive class, so a volume gets no study "
                       "score from it; /v1/screen gives the study verdict.")

    def as_probabilities(score: float) -> np.ndarray:
        return np.array([score if i == info.positive_index else 1.0 - score for i in range(len(info.classes))])

    scored = [(row["index"], row["p_covid"]) for row in evidence.slices if row.get("p_covid") is not None]
    slices = [schemas.SliceScoreV1(index=k, probabilities=dict(zip(info.classes, map(float, as_probabilities(p)))),
                                   decision=decide(as_probabilities(p), info, prepared.threshold)) for k, p in scored]
    shown = max(scored, key=lambda kp: kp[1])[0] if scored else evidence.key_slices[0]
    notes = [f"A volume of {len(evidence.slices)} slices: the score is the CT classifier's study score, "
             f"{evidence.measures['classifier_rule']}, as covidlens screen computes it; on CT it is a second line of "
             "evidence, and the study verdict (lesions, severity, key slices) is at /v1/screen."]
    if models.lesion is not None:
        severity = f", severity {verdict.severity}" if verdict.severity else ""
        notes.append(f"Lesion verdict of the study: {verdict.decision} (lesions {verdict.lesions}{severity}); "
                     f"{verdict.rule[0][:1].lower()}{verdict.rule[0][1:]}")
    response = _respond(prepared, as_probabilities(verdict.covid19_score), shown, slices, notes)
    return response, Image.fromarray(evidence.grey[shown], mode="L")


def _screen_response(upload: Upload, scan: Scan, evidence: StudyEvidence, models: ScreenModels) -> schemas.ScreenResponseV1:
    """The road's evidence as the response: its record, the key slices drawn as ``covidlens screen``
    draws them, and for a volume the per-slice strip."""
    area = "lesion_mm2" if scan.spacing else "lesion_px"
    rows = {row["index"]: row for row in evidence.slices}
    key_slices = []
    for k in evidence.key_slices:
        lesions, heat = key_slice_pictures(evidence, k)
        row = rows.get(k, {})
        key_slices.append(schemas.KeySliceV1(
            index=k, lesion_png=png_base64(lesions), heat_png=png_base64(heat) if heat is not None else None,
            lesion_area=row.get(area), p_covid=row.get("p_covid"),
        ))
    strip = [schemas.SliceStripV1(index=row["index"], lesion_area=row.get(area), p_covid=row.get("p_covid"))
             for row in evidence.slices] if evidence.kind == "volume" else []
    used = models.describe()
    return schemas.ScreenResponseV1(
        input=_input(upload, scan), modality=evidence.modality, modality_statement=evidence.modality_statement,
        kind=evidence.kind, verdict=schemas.StudyVerdictV1(**vars(evidence.verdict)), measures=evidence.measures,
        area_units="mm2" if scan.spacing else "pixels", key_slices=key_slices, slices=strip,
        missing=evidence.missing, notes=evidence.notes, timings=evidence.timings,
        models=[schemas.StudyModelV1(role=role, id=ROLE_IDS[role], architecture=used[role]["architecture"],
                                     dataset=used[role]["dataset"], engine=used[role]["engine"],
                                     card=card_url(used[role]["path"]))
                for role in STUDY_ROLES[evidence.modality] if role in used],
    )


def _operating_point(ckpt: Checkpoint, name: str) -> tuple[float | None, str]:
    from covidlens.evaluation.operating_points import classifier_point

    try:
        point = classifier_point(ckpt.info, name)
    except CovidlensError:
        raise ApiError(422, "no_operating_point",
                       "This model has no validation-chosen sensitivity threshold; use operating_point=default.") from None
    return point.threshold, point.statement


def check_request(models: ServedModels, options: Options, needs: str | None) -> None:
    """Refuse, before the body is read, a model this server does not hold for the endpoint
    (``needs`` is 'classifier', 'lesion', or None for /v1/screen, which takes whatever the server holds)."""
    if needs is None:
        return
    if needs == "lesion" and models.lesion is None:
        raise ApiError(404, "no_lesion_model",
                       "This server has no lesion model; start it with --lesion-checkpoint to segment and quantify lesions.")
    ids = list(models.classifiers) if needs == "classifier" else ["lesion"]
    if options.model is not None and options.model not in ids:
        name = options.model
        shown = name if len(name) <= 40 and name.isprintable() else name[:40].encode("unicode_escape").decode()
        raise ApiError(400, "unknown_model",
                       f"Unknown model {shown!r}; the models for this endpoint here are: {', '.join(ids)} "
                       "(GET /v1/models lists them).")


def _lesion_model(models: ServedModels, options: Options) -> Checkpoint:
    check_request(models, options, "lesion")
    return models.lesion


def _input(upload: Upload, scan: Scan) -> schemas.InputV1:
    return schemas.InputV1(
        files=len(upload.files), bytes=upload.size, format=scan.format, shape=list(scan.pixels.shape),
        units=scan.units if scan.units in ("HU", "raw") else "raw",
        spacing_mm=[float(v) for v in scan.spacing] if scan.spacing else None,
    )


def _ref(model_id: str, ckpt: Checkpoint) -> schemas.ModelRefV1:
    return schemas.ModelRefV1(id=model_id, architecture=ckpt.info.model, modality=ckpt.info.modality,
                              dataset=ckpt.info.dataset, card=card_url(ckpt.path))
