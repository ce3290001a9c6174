"""/v1/screen on real uploads: the same study result as the library's screen_scan on the same files
read by read_scan (the road of covidlens screen), one sentence for what it cannot screen, and
/v1/predict on a volume scored by the same road."""

from __future__ import annotations

import base64
import io
import shutil
from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from covidlens.data.io import read_scan
from covidlens.screening import screen_scan
from tests.serve.conftest import CT_DICOM, CT_PNG, CXR_JPEG, series_slices

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

#: Contiguous slices of P001 sent as one series: enough for a volume, few enough to stay fast.
SERIES_SLICES = slice(10, 18)


@pytest.fixture(scope="module")
def client(screen_models):
    from fastapi.testclient import TestClient

    from covidlens.serve import ServeConfig, create_app

    with TestClient(create_app(ServeConfig(), screen_models), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def series(data_root, tmp_path_factory):
    """Eight neighbouring P001 slices, copied into a folder of their own."""
    folder = tmp_path_factory.mktemp("p001-part")
    for f in series_slices(data_root, SERIES_SLICES):
        shutil.copy(f, folder / f.name)
    return folder


def _parts(folder) -> list:
    files = sorted(folder.glob("*.dcm"))
    files = files[1::2] + files[::2]  # sent out of order: the server orders the slices itself
    return [("file", (f.name, f.read_bytes(), "application/dicom")) for f in files]


def _png(base64_png: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(base64_png)))
    assert image.format == "PNG" and image.mode == "RGB"
    return image


def _expected(path, models, **options):
    return screen_scan(read_scan(path), models.screen_models(), **options)


def test_a_dicom_series_gets_the_study_result_of_screen_scan(client, series, screen_models):
    response = client.post("/v1/screen", files=_parts(series))
    assert response.status_code == 200, response.text
    body = response.json()
    expected = _expected(series, screen_models)
    assert body["verdict"] == asdict(expected.verdict)
    assert body["measures"] == expected.measures and body["kind"] == "volume" == expected.kind
    assert body["modality"] == "ct" and body["modality_statement"] == "CT, from the DICOM Modality tag (CT)."
    assert body["input"] == {**body["input"], "files": 8, "format": "dicom-series", "shape": [8, 512, 512]}
    assert body["verdict"]["severity"] in ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")
    assert body["verdict"]["covid19_score"] is not None and body["missing"] == []
    assert [m["role"] for m in body["models"]] == ["lesion", "ct_classifier"]
    assert set(body["timings"]) >= {"lungs", "lesions", "classifier"}

    assert [k["index"] for k in body["key_slices"]] == expected.key_slices
    for key in body["key_slices"]:
        assert _png(key["lesion_png"]).size == (512, 512) and _png(key["heat_png"]).size == (512, 512)
    assert body["area_units"] == "mm2"
    strip = [(s["index"], s["lesion_area"], s["p_covid"]) for s in body["slices"]]
    assert strip == [(row["index"], row["lesion_mm2"], row["p_covid"]) for row in expected.slices]
    assert "not a diagnosis" in body["caution"]


@pytest.mark.parametrize("relative,kind,roles", [
    (CXR_JPEG, "radiograph", ["cxr_lungs", "cxr_classifier"]),
    (CT_PNG, "picture", ["lesion", "ct_classifier"]),
    (CT_DICOM, "slice", ["lesion", "ct_classifier"]),
])
def test_an_image_gets_the_study_result_of_screen_scan(relative, kind, roles, client, screen_models, data_root):
    path = data_root / relative
    body = client.post("/v1/screen", files={"file": (path.name, path.read_bytes())}).json()
    expected = _expected(path, screen_models)
    assert body["kind"] == kind == expected.kind
    assert body["verdict"] == asdict(expected.verdict) and body["measures"] == expected.measures
    assert body["modality_statement"] == expected.modality_statement
    assert [m["role"] for m in body["models"]] == roles and body["slices"] == []
    (key,) = body["key_slices"]
    assert key["index"] == 0 and key["heat_png"] is not None
    height, width = expected.grey.shape[1:]
    assert _png(key["lesion_png"]).size == _png(key["heat_png"]).size == (width, height)


def test_the_operating_point_and_modality_parameters_are_the_clis(client, screen_models, data_root):
    path = data_root / CXR_JPEG
    body = client.post("/v1/screen?operating_point=sensitivity&modality=ct", files={"file": path.read_bytes()}).json()
    expected = _expected(path, screen_models, operating_point="sensitivity", modality="ct")
    assert body["verdict"] == asdict(expected.verdict) and body["verdict"]["operating_point"] == "sensitivity"
    assert body["modality"] == "ct" and body["modality_statement"] == "Read as CT because the request said so."


def test_a_server_without_some_models_says_what_was_not_done(client_for, checkpoints, real):
    from covidlens.serve.pipeline import ServedModels

    client = client_for(ServedModels.load(ct=checkpoints["ct"]))
    ct = client.post("/v1/screen", files={"file": real(CT_DICOM)}).json()
    assert ct["verdict"]["lesions"] == "not assessed" and ct["verdict"]["covid19_score"] is not None
    assert ct["missing"][0].startswith("No lesion model")
    cxr = client.post("/v1/screen", files={"file": real(CXR_JPEG)}).json()
    assert cxr["verdict"]["decision"] == "no decision: no chest X-ray classifier" and cxr["models"] == []
    assert any(line.startswith("No chest X-ray classifier") for line in cxr["missing"])


def _noise_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD = {
    # name: (request keyword arguments, status, code, words of the message)
    "text file": (dict(files={"file": ("notes.png", b"patient notes, not a scan\n" * 20)}), 422, "unreadable_upload",
                  "The upload is not an image covidlens can read"),
    "neither CT nor X-ray": (dict(files={"file": ("noise.png", _noise_png())}), 422, "not_screened",
                             "The upload does not look like a chest CT slice or a chest X-ray"),
    "several files that are not a series": (dict(files=[("file", b"one"), ("file", b"two")]), 422, "not_a_series",
                                            "Several files were sent but file 1 is not DICOM"),
    "unknown operating point": (dict(url="/v1/screen?operating_point=lenient", files={"file": b"x"}), 400,
                                "bad_option", "The parameter 'operating_point' is invalid"),
    "unknown modality": (dict(url="/v1/screen?modality=mri", files={"file": b"x"}), 400, "bad_option",
                         "The parameter 'modality' is invalid"),
    "empty file": (dict(files={"file": b""}), 422, "empty_file", "The uploaded file is empty (0 bytes)"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_what_cannot_be_screened_gets_one_sentence(name, client, real):
    kwargs, status, code, words = BAD[name]
    kwargs = dict(kwargs)
    response = client.post(kwargs.pop("url", "/v1/screen"), **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"].startswith(words), error
    assert error["message"].endswith(".") and error["message"].count(". ") == 0
    assert "covidlens-upload-" not in error["message"] and "/tmp" not in error["message"]


def test_predict_on_a_volume_is_the_roads_study_score(client, series, screen_models):
    body = client.post("/v1/predict", files=_parts(series)).json()
    expected = _expected(series, screen_models)
    score = expected.verdict.covid19_score
    assert body["score"] == score and body["probabilities"]["COVID"] == score
    assert body["decision"] == ("COVID" if score >= body["threshold"] else "NonCOVID")
    assert len(body["slices"]) == 8 and body["slice_index"] in range(8)
    assert "90th percentile" in body["notes"][0] and "/v1/screen" in body["notes"][0]
    assert body["notes"][1].startswith(f"Lesion verdict of the study: {expected.verdict.decision}")
    assert not any("not validated" in note for note in body["notes"])


def test_the_server_lists_the_lung_model_and_each_worker_has_its_own(screen_models, client):
    listed = client.get("/v1/models").json()["models"]
    assert [(m["id"], m["role"]) for m in listed][-1] == ("cxr-lungs", "lung-segmenter")
    twin = screen_models.replicate()
    assert twin.cxr_lungs is not None and twin.cxr_lungs.model is not screen_models.cxr_lungs.model
    roles = twin.screen_models()
    assert roles.cxr_lungs is twin.cxr_lungs and roles.ct_classifier is twin.classifiers["ct"]
    schema = client.get("/openapi.json").json()
    assert "/v1/screen" in schema["paths"] and "ScreenResponseV1" in schema["components"]["schemas"]


def test_onnx_engines_reach_the_road(checkpoints):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from covidlens.serve.pipeline import ServedModels

    fast = ServedModels.load(ct=checkpoints["ct"], backend="onnxruntime")
    assert fast.screen_models().engines == {"ct_classifier": fast.runners["ct"]}
