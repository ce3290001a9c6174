"""The JSON the API answers with, version 1.

Every response model carries ``api_version = "1"`` and its class name ends in ``V1``: a change that
breaks a client adds ``V2`` models under ``/v2`` and leaves these as they are. Images travel inside
the JSON as base64 PNG so that one response holds everything a page or a script needs to show or
archive a result.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

API_VERSION = "1"

#: Said in every result, in the words a clinician reads on the page.
CAUTION = (
    "This is a screening aid for research, not a diagnosis: covidlens is not a medical device, its models "
    "were trained on public research images, and a qualified clinician must read the scan."
)


class ErrorDetailV1(BaseModel):
    code: str = Field(description="a stable machine-readable name of the problem, e.g. 'bad_upload'")
    message: str = Field(description="one sentence saying what is wrong and what to do")


class ErrorResponseV1(BaseModel):
    api_version: Literal["1"] = API_VERSION
    error: ErrorDetailV1


class InputV1(BaseModel):
    files: int = Field(description="number of files uploaded (several for the slices of one DICOM series)")
    bytes: int = Field(description="total size of the upload")
    format: str = Field(description="what the file was read as: png, jpeg, dicom, dicom-series, nifti, ...")
    shape: list[int] = Field(description="pixels as (rows, columns) or (slices, rows, columns)")
    units: Literal["HU", "raw"] = Field(description="HU for CT in Hounsfield units, raw otherwise")
    spacing_mm: list[float] | None = Field(description="pixel spacing in mm, as the file records it; null if it does not")


class ModalityV1(BaseModel):
    detected: Literal["ct", "cxr", "other", "unknown"] = Field(
        description="what the upload is: as the file states it (the DICOM Modality tag, Hounsfield units) or, for "
        "one image that states nothing, as covidlens's modality check finds it ('other': neither); 'unknown' for a "
        "volume that states nothing"
    )
    used: Literal["ct", "cxr"] = Field(description="the modality whose model read the upload")
    source: Literal["dicom-tag", "hounsfield-units", "modality-check", "request", "only-model"] = Field(
        description="where 'used' came from: the file, the modality check, the request's 'modality' parameter "
        "(which overrides the check), or the server having models of one modality only"
    )
    statement: str = Field(description="the same in one plain sentence, for the page")


class ModelRefV1(BaseModel):
    id: str = Field(description="the server's name for the model: 'ct', 'cxr' or 'lesion'")
    architecture: str
    modality: Literal["ct", "cxr"]
    dataset: str
    card: str | None = Field(None, description="where this model's card is (GET /v1/models/{name}/card) when it is a "
                             "store model with a card; null otherwise")


class SliceScoreV1(BaseModel):
    index: int
    probabilities: dict[str, float]
    decision: str


class PredictResponseV1(BaseModel):
    api_version: Literal["1"] = API_VERSION
    input: InputV1
    modality: ModalityV1
    model: ModelRefV1
    classes: list[str]
    probabilities: dict[str, float] = Field(
        description="every class probability of the image; for a volume, the study score as P(positive class) and "
        "its complement for each other class, as covidlens predict writes them"
    )
    decision: str = Field(description="the class decided at the operating point")
    positive_class: str | None = Field(description="the class whose probability is the score, e.g. COVID")
    score: float | None = Field(
        description="P(positive class); for a volume the CT classifier's study score of covidlens screen (a high "
        "percentile over the lung slices); null for a model without a positive class"
    )
    threshold: float | None = Field(description="the decision threshold on P(positive class)")
    operating_point: Literal["default", "sensitivity"]
    operating_point_statement: str
    slice_index: int | None = Field(
        description="for a volume, the lung slice with the highest P(positive class), the one explain shows (the "
        "decision is on the study score, not on this slice); null for one image"
    )
    slices: list[SliceScoreV1] = Field(default_factory=list, description="for a volume, the result of every lung slice")
    notes: list[str] = Field(default_factory=list)
    caution: str = CAUTION


class ExplanationV1(BaseModel):
    method: Literal["gradcam", "gradcam++", "cam"]
    explained_class: str
    probability: float = Field(description="P(explained class)")
    layer: str
    overlay_png: str = Field(
        description="base64 PNG: the image with the heat map laid over it (jet colours, red = strongest)"
    )


class ExplainResponseV1(PredictResponseV1):
    explanation: ExplanationV1


class SegmentResponseV1(BaseModel):
    api_version: Literal["1"] = API_VERSION
    input: InputV1
    modality: ModalityV1
    model: ModelRefV1
    fractions: dict[str, float] = Field(description="share of the slice's pixels given to each class")
    lesion_area: float = Field(description="pixels of any lesion class, in area_units")
    area_units: Literal["mm2", "pixels"]
    overlay_png: str = Field(description="base64 PNG: the slice with lesion classes tinted (red first class, blue second)")
    notes: list[str] = Field(default_factory=list)
    caution: str = CAUTION


class SliceMeasureV1(BaseModel):
    index: int
    lesion_area: float
    lung_area: float
    percent_involved: float | None


class OverlayV1(BaseModel):
    slice_index: int
    png: str = Field(description="base64 PNG: the slice in the lung window, lesion red, lung outline green")


class QuantifyResponseV1(BaseModel):
    api_version: Literal["1"] = API_VERSION
    input: InputV1
    modality: ModalityV1
    model: ModelRefV1
    area_units: Literal["mm2", "pixels"]
    volume_units: Literal["mL", "voxels"] | None = Field(description="null for a single slice")
    lesion_area: float
    lung_area: float
    lesion_volume: float | None
    lung_volume: float | None
    percent_involved: float | None = Field(description="percent of the lung covered by lesion; null when no lung was found")
    severity_class: str | None = Field(description="MosMedData class CT-0..CT-4 from percent_involved")
    n_slices: int
    n_lung_slices: int
    lung_method: str
    slices: list[SliceMeasureV1]
    overlays: list[OverlayV1]
    notes: list[str] = Field(default_factory=list)
    caution: str = CAUTION


class StudyVerdictV1(BaseModel):
    lesions: Literal["yes", "no", "not assessed", "not measured"] = Field(
        description="pneumonia-pattern lesions (CT); 'not measured' for a radiograph, which has no lesion model"
    )
    severity: str | None = Field(description="MosMedData class CT-0..CT-4 of a CT volume; null otherwise")
    covid19_score: float | None = Field(
        description="P(COVID-19) of the modality's classifier (a CT volume: its study score); on CT a second line of "
        "evidence, never the verdict; null without a classifier"
    )
    decision: str = Field(description="the decision at the operating point, in words")
    operating_point: Literal["default", "sensitivity"]
    rule: list[str] = Field(description="why: the rule applied and its numbers, one sentence each")


class StudyModelV1(BaseModel):
    role: Literal["lesion", "ct_classifier", "cxr_lungs", "cxr_classifier"]
    id: str = Field(description="the model's id in GET /v1/models")
    architecture: str
    dataset: str
    engine: Literal["torch", "onnxruntime"]
    card: str | None = Field(None, description="where this model's card is (GET /v1/models/{name}/card) when it is a "
                             "store model with a card; null otherwise")


class KeySliceV1(BaseModel):
    index: int = Field(description="the slice's index in the volume (0 for one image)")
    lesion_png: str = Field(
        description="base64 PNG: the slice with lesions tinted red and the lung (a picture: the body) outlined green"
    )
    heat_png: str | None = Field(
        description="base64 PNG: the classifier's Grad-CAM heat map over the slice (jet colours, red strongest); "
        "null where none was made"
    )
    lesion_area: float | None = Field(description="lesion inside the lung on this slice, in area_units; null without one")
    p_covid: float | None = Field(description="the CT classifier's P(COVID) of this slice; null without one")


class SliceStripV1(BaseModel):
    index: int
    lesion_area: float | None = Field(description="lesion inside the lung, in area_units; null without a lesion model")
    p_covid: float | None = Field(description="the CT classifier's P(COVID); null on slices without lung or without a classifier")


class ScreenResponseV1(BaseModel):
    """One study screened by the library's road (covidlens.screening.screen_scan), as covidlens screen does."""

    api_version: Literal["1"] = API_VERSION
    input: InputV1
    modality: Literal["ct", "cxr"]
    modality_statement: str = Field(description="how the modality was told, in one sentence")
    kind: Literal["volume", "slice", "picture", "radiograph"] = Field(
        description="a CT volume, one CT slice in HU, one 8-bit CT picture (PNG/JPEG) or a chest radiograph"
    )
    verdict: StudyVerdictV1
    measures: dict[str, float | int | str | None] = Field(
        description="the study's measures as covidlens screen records them: lesion and lung volume (mL) or area (mm²), "
        "percent involved, slice counts, the classifier's study rule, ..."
    )
    area_units: Literal["mm2", "pixels"] = Field(description="units of the slices' lesion_area")
    key_slices: list[KeySliceV1] = Field(description="the slices a reader should see first (most lesion), with overlays")
    slices: list[SliceStripV1] = Field(
        default_factory=list, description="for a volume, every slice's lesion area and P(COVID): the slice strip"
    )
    missing: list[str] = Field(default_factory=list, description="stages not run for want of a model, and what that loses")
    notes: list[str] = Field(default_factory=list)
    models: list[StudyModelV1] = Field(description="the models of this modality the study went through")
    timings: dict[str, float] = Field(description="seconds per stage (lungs, lesions, classifier)")
    caution: str = CAUTION


class ModelInfoV1(BaseModel):
    id: str
    role: Literal["classifier", "lesion-segmenter", "lung-segmenter"]
    architecture: str
    task: Literal["classification", "segmentation"]
    modality: Literal["ct", "cxr"]
    classes: list[str]
    positive_class: str | None
    input_size: int
    threshold: float
    sensitivity_threshold: float | None
    target_sensitivity: float | None
    dataset: str
    card: str | None = Field(None, description="where this model's card is (GET /v1/models/{name}/card) when it is a "
                             "store model with a card; null otherwise")


class ModelsResponseV1(BaseModel):
    api_version: Literal["1"] = API_VERSION
    models: list[ModelInfoV1]
    limits: dict[str, float] = Field(description="upload limits: max_upload_bytes, max_files, max_pixels, min_side")
    caution: str = CAUTION


class HealthV1(BaseModel):
    api_version: Literal["1"] = API_VERSION
    status: Literal["ok", "ready", "not-ready"]
    detail: str = ""
