"""The JSON API on real images: what each endpoint answers, how modality is told, and one clear
sentence with the right status for every bad input of issue 12, after which the server keeps serving."""

from __future__ import annotations

import base64
import io
import json
import struct
import tempfile
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import CT_DICOM, CT_PNG, CXR_JPEG, SERIES

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _png(rgb_or_grey: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb_or_grey).save(buffer, format="PNG")
    return buffer.getvalue()


def _decoded(base64_png: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(base64_png)))
    assert image.format == "PNG"
    return image


@pytest.fixture()
def ct_client(client_for, ct_models):
    return client_for(ct_models)


def test_predict_a_ct_png_is_recognised_by_the_modality_check(ct_client, real):
    response = ct_client.post("/v1/predict", files={"file": ("slice.png", real(CT_PNG), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["api_version"] == "1"
    assert body["modality"] == {**body["modality"], "detected": "ct", "used": "ct", "source": "modality-check"}
    assert body["modality"]["statement"].startswith("Recognised as CT by the modality check")
    assert set(body["probabilities"]) == {"NonCOVID", "COVID"}
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-5
    assert body["score"] == body["probabilities"]["COVID"]
    assert body["decision"] == ("COVID" if body["score"] >= 0.5 else "NonCOVID")
    assert body["input"]["format"] == "png" and body["input"]["files"] == 1
    assert "not a diagnosis" in body["caution"]


def test_a_ct_dicom_is_recognised_by_its_modality_tag(ct_client, real):
    body = ct_client.post("/v1/predict", files={"file": ("x.dcm", real(CT_DICOM))}).json()
    assert body["modality"]["detected"] == "ct" and body["modality"]["source"] == "dicom-tag"
    assert body["input"]["units"] == "HU" and body["input"]["spacing_mm"][0] == pytest.approx(0.826, abs=1e-3)


def test_sensitivity_operating_point_uses_the_validation_threshold(ct_client, real):
    body = ct_client.post("/v1/predict?operating_point=sensitivity", files={"file": real(CT_PNG)}).json()
    assert body["threshold"] == 0.25 and "95% sensitivity" in body["operating_point_statement"]


def test_explain_returns_the_prediction_and_an_overlay_of_the_images_size(ct_client, real):
    body = ct_client.post("/v1/explain?method=gradcam%2B%2B", files={"file": real(CT_PNG)}).json()
    assert body["explanation"]["method"] == "gradcam++"
    assert body["explanation"]["explained_class"] == body["decision"]
    overlay = _decoded(body["explanation"]["overlay_png"])
    assert (overlay.height, overlay.width) == tuple(body["input"]["shape"]) and overlay.mode == "RGB"


def test_segment_and_quantify_a_ct_dicom_slice(ct_client, real):
    segment = ct_client.post("/v1/segment", files={"file": real(CT_DICOM)}).json()
    assert segment["area_units"] == "mm2" and set(segment["fractions"]) == {"background", "infection"}
    assert _decoded(segment["overlay_png"]).size == (512, 512)
    quantify = ct_client.post("/v1/quantify", files={"file": real(CT_DICOM)}).json()
    assert quantify["area_units"] == "mm2" and quantify["volume_units"] is None
    assert quantify["lung_area"] > 10_000  # mm²: this slice shows both lungs
    assert quantify["lung_method"] == "segment_lungs_hu" and quantify["n_slices"] == 1
    assert quantify["overlays"] and _decoded(quantify["overlays"][0]["png"]).size == (512, 512)


def test_a_dicom_series_is_one_volume(ct_client, data_root):
    import pydicom

    by_position = sorted((data_root / SERIES).glob("*.dcm"),
                         key=lambda f: -float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    files = by_position[10:14]  # four neighbouring slices, sent in shuffled order
    files = [files[2], files[0], files[3], files[1]]
    parts = [("file", (f"s{i}.dcm", f.read_bytes(), "application/dicom")) for i, f in enumerate(files)]
    predict = ct_client.post("/v1/predict", files=parts).json()
    assert predict["input"]["files"] == 4 and predict["input"]["format"] == "dicom-series"
    assert predict["slice_index"] in range(4)  # the slice explain shows; the score is the study's (test_screen)
    assert "study score" in predict["notes"][0] and "/v1/screen" in predict["notes"][0]
    quantify = ct_client.post("/v1/quantify", files=parts).json()
    assert quantify["volume_units"] == "mL" and quantify["n_slices"] == 4


def test_a_hu_nifti_volume_is_recognised_as_ct(ct_client, tmp_path):
    import nibabel

    volume = np.full((64, 64, 3), -1000, dtype=np.int16)
    volume[16:48, 16:48] = 40
    nibabel.save(nibabel.Nifti1Image(volume, np.diag([1.5, 1.5, 2.0, 1.0])), tmp_path / "v.nii.gz")
    body = ct_client.post("/v1/predict", files={"file": (tmp_path / "v.nii.gz").read_bytes()}).json()
    assert body["modality"]["source"] == "hounsfield-units" and body["input"]["shape"] == [3, 64, 64]


def test_a_server_with_ct_and_cxr_models(client_for, all_models, real):
    client = client_for(all_models)
    ct = client.post("/v1/predict", files={"file": real(CT_PNG)}).json()  # a PNG goes to the model it looks like
    assert ct["modality"]["source"] == "modality-check" and ct["model"]["id"] == "ct"
    routed = client.post("/v1/predict", files={"file": real(CXR_JPEG)}).json()
    assert routed["modality"]["used"] == "cxr" and routed["model"]["id"] == "cxr"
    cxr = client.post("/v1/predict?modality=cxr", files={"file": real(CXR_JPEG)}).json()
    assert cxr["modality"]["used"] == "cxr" and cxr["modality"]["source"] == "request"
    assert "as the request said" in cxr["modality"]["statement"]
    assert cxr["classes"] == ["Normal", "COVID"] and cxr["model"]["id"] == "cxr"
    overruled = client.post("/v1/predict?modality=ct", files={"file": real(CXR_JPEG)}).json()
    assert overruled["modality"] == {**overruled["modality"], "detected": "cxr", "used": "ct", "source": "request"}
    assert "because the request said so" in overruled["modality"]["statement"]
    conflict = client.post("/v1/predict?modality=cxr", files={"file": real(CT_DICOM)})
    assert conflict.status_code == 422
    assert "the upload is CT, from the DICOM Modality tag (CT)" in conflict.json()["error"]["message"]


def test_models_health_and_schema(ct_client):
    listed = ct_client.get("/v1/models").json()
    assert [m["id"] for m in listed["models"]] == ["ct", "lesion"]
    assert listed["models"][0]["sensitivity_threshold"] == 0.25
    assert listed["limits"]["max_files"] == 1000
    assert ct_client.get("/healthz").json()["status"] == "ok"
    assert ct_client.get("/readyz").json()["status"] == "ready"
    schema = ct_client.get("/openapi.json").json()
    paths = {"/v1/predict", "/v1/explain", "/v1/segment", "/v1/quantify", "/v1/models", "/healthz", "/readyz"}
    assert paths <= set(schema["paths"])
    models = {"PredictResponseV1", "ExplainResponseV1", "SegmentResponseV1", "QuantifyResponseV1", "ErrorResponseV1"}
    assert models <= set(schema["components"]["schemas"])
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]


def test_the_page_and_its_assets_come_from_the_app(ct_client):
    page = ct_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "not a diagnosis" in page.text and 'for="file-input"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/app.css"):
        assert ct_client.get(asset).status_code == 200
    for text in (page.text, ct_client.get("/static/app.js").text, ct_client.get("/static/app.css").text):
        assert "http://" not in text.replace("http://127.0.0.1", "") and "https://" not in text


def test_no_lesion_model_gives_404_with_the_flag_to_use(client_for, checkpoints, real):
    from covidlens.serve.pipeline import ServedModels

    client = client_for(ServedModels.load(ct=checkpoints["ct"]))
    response = client.post("/v1/quantify", files={"file": real(CT_DICOM)})
    assert response.status_code == 404 and "--lesion-checkpoint" in response.json()["error"]["message"]


def test_uploads_leave_no_file_and_the_log_no_name(ct_client, real, tmp_path, monkeypatch, caplog):
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    caplog.set_level("INFO", logger="covidlens.serve")
    for content in (real(CT_PNG), b"not an image"):
        ct_client.post("/v1/quantify", files={"file": ("patient-jane-doe.png", content, "image/png")})
    assert list(private.iterdir()) == []
    assert "patient-jane-doe" not in caplog.text
    assert f"1 file(s), {len(real(CT_PNG))} bytes, image" in caplog.text


# --- bad input ------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png() -> bytes:
    """A valid PNG header declaring 9000 x 9000 pixels (81 M), with almost no data behind it."""
    header = struct.pack(">IIBBBBB", 9000, 9000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 9001))
            + _chunk(b"IEND", b""))


def _dicom(modality: str, pixels: np.ndarray | None) -> bytes:
    from pydicom.dataset import FileMetaDataset
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1" if modality == "DX" else "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = pixels.astype(np.uint8).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _nifti_4d() -> bytes:
    import nibabel

    image = nibabel.Nifti1Image(np.zeros((8, 8, 4, 2), dtype=np.int16), np.eye(4))
    return image.to_bytes()


def _cxr_dicom(real) -> bytes:
    return _dicom("DX", np.asarray(Image.open(io.BytesIO(real(CXR_JPEG))).convert("L")))


def _many_parts(count: int) -> tuple[bytes, str]:
    boundary = "covidlensboundary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nx\r\n'
    return (part * count + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


BAD_UPLOADS = {
    # name: (make bytes from real(), status, words of the message)
    "empty upload": (lambda real: b"", 422, "The uploaded file is empty (0 bytes)"),
    "text file": (lambda real: b"patient notes, not a scan\n" * 20, 422,
                  "The upload is not an image covidlens can read (expected PNG, JPEG"),
    "truncated PNG": (lambda real: real(CT_PNG)[:4000], 422, "The upload is damaged or truncated and cannot be decoded"),
    "1x1 image": (lambda real: _png(np.zeros((1, 1), np.uint8)), 422,
                  "The upload is 1x1 pixels; covidlens needs at least 32 pixels on each side"),
    "decompression bomb": (lambda real: _bomb_png(), 422,
                           "The upload has 9000x9000 pixels, more than covidlens accepts (67108864 pixels)"),
    "DICOM without pixel data": (lambda real: _dicom("CT", None), 422, "is a DICOM file with no pixel data"),
    "4-D NIfTI": (lambda real: _nifti_4d(), 422, "holds a 4-D NIfTI image (8x8x4x2); covidlens reads 3-D volumes"),
    "chest X-ray to a CT-only server": (_cxr_dicom, 422,
                                        "The upload is a chest X-ray, from the DICOM Modality tag (DX), but this "
                                        "server screens CT only"),
}


@pytest.fixture(scope="module")
def small_limit_client(ct_models):
    from fastapi.testclient import TestClient

    from covidlens.serve import ServeConfig, create_app
    from covidlens.serve.uploads import UploadLimits

    with TestClient(create_app(ServeConfig(limits=UploadLimits(max_bytes=1 << 20)), ct_models)) as client:
        yield client


def _still_serving(client, real) -> None:
    good = client.post("/v1/predict", files={"file": ("ok.png", real(CT_PNG), "image/png")})
    assert good.status_code == 200, good.text


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_upload_gets_one_sentence_and_the_server_keeps_serving(name, small_limit_client, real):
    make, status, words = BAD_UPLOADS[name]
    response = small_limit_client.post("/v1/predict", files={"file": ("scan", make(real), "application/octet-stream")})
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert words in message
    assert "covidlens-upload-" not in message and "/tmp" not in message  # private paths never leave
    assert message.endswith(".") and message.count(". ") == 0, message
    _still_serving(small_limit_client, real)


BAD_REQUESTS = {
    "file over the size limit": (dict(files={"file": ("big.png", bytes(3 << 20))}), 413,
                                 "The upload is larger than this server accepts (1048576 bytes)"),
    "unknown model name": (dict(url="/v1/predict?model=resnet9000", files={"file": b"x"}), 400,
                           "Unknown model 'resnet9000'; the models for this endpoint here are: ct"),
    "unknown lesion model name": (dict(url="/v1/quantify?model=ct", files={"file": b"x"}), 400,
                                  "Unknown model 'ct'; the models for this endpoint here are: lesion"),
    "malformed JSON body": (dict(content=b'{"file": "scan.png",', headers={"content-type": "application/json"}), 400,
                            "The request body is not valid JSON"),
    "JSON instead of an upload": (dict(json={"file": "scan.png"}), 415,
                                  "This endpoint takes the scan as multipart/form-data in the field 'file'"),
    "thousands of parts": (dict(many_parts=3000), 413, "The request has more than 1000 parts"),
    "wrong field name": (dict(files={"image": b"x"}), 400, "The request has a field named 'image'; send the scan in"),
    "no body": (dict(data={}, files={}), 415, "multipart/form-data in the field 'file'"),
    "multipart without a file": (dict(content=b"--b--\r\n", headers={"content-type": "multipart/form-data; boundary=b"}),
                                 400, "The request holds no file; send the scan in the multipart field 'file'"),
    "unknown explain method": (dict(url="/v1/explain?method=saliency", files={"file": b"x"}), 400,
                               "The parameter 'method' is invalid"),
    "several files that are not a series": (dict(files=[("file", b"one"), ("file", b"two")]), 422,
                                            "Several files were sent but file 1 is not DICOM"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_gets_one_sentence_and_the_server_keeps_serving(name, small_limit_client, real):
    kwargs, status, words = BAD_REQUESTS[name]
    kwargs = dict(kwargs)
    url = kwargs.pop("url", "/v1/predict")
    if "many_parts" in kwargs:
        body, content_type = _many_parts(kwargs.pop("many_parts"))
        kwargs = {"content": body, "headers": {"content-type": content_type}}
    response = small_limit_client.post(url, **kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]
    _still_serving(small_limit_client, real)


def test_a_chunked_upload_is_cut_off_at_the_size_limit(small_limit_client, real):
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    body = iter([head] + [bytes(256 << 10)] * 8)  # 2 MiB with no Content-Length: counted as it arrives
    response = small_limit_client.post("/v1/predict", content=body,
                                       headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413
    assert "larger than this server accepts (1048576 bytes)" in response.json()["error"]["message"]
    _still_serving(small_limit_client, real)


def test_error_bodies_follow_the_error_model(small_limit_client):
    body = small_limit_client.post("/v1/predict", files={"file": b""}).json()
    assert set(body) == {"api_version", "error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == "empty_file"
    assert json.loads(json.dumps(body)) == body


def test_a_radiograph_or_noise_sent_to_the_ct_model_gets_a_sentence_not_a_verdict(ct_client, real):
    """The modality check (covidlens.modality) runs before any verdict; the server keeps serving."""
    cxr = ct_client.post("/v1/predict", files={"file": ("chest.jpg", real(CXR_JPEG), "image/jpeg")})
    assert cxr.status_code == 422, cxr.text
    assert cxr.json()["error"]["code"] == "wrong_modality"
    assert "looks like a chest X-ray" in cxr.json()["error"]["message"]
    noise = np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8)
    refused = ct_client.post("/v1/explain", files={"file": ("noise.png", _png(noise), "image/png")})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "not_a_chest_image"
    assert "does not look like a chest CT slice" in refused.json()["error"]["message"]
    assert ct_client.post("/v1/predict", files={"file": ("slice.png", real(CT_PNG), "image/png")}).status_code == 200
