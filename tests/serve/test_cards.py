"""The server links the card of each store model it holds: GET /v1/models/{name}/card serves the card it
read at start-up, the model list and the study result point at it, and any other name is one sentence."""

from __future__ import annotations

import shutil

import pytest

from covidlens.serve.pipeline import ServedModels
from tests.serve.conftest import CT_PNG

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture
def store_models(checkpoints, tmp_path, monkeypatch) -> ServedModels:
    """The tiny CT classifier and lesion model installed in a fresh store with cards, the CT classifier
    without one; served from the store's folders."""
    from covidlens.store import model_dir, write_card

    monkeypatch.setenv("COVIDLENS_HOME", str(tmp_path / "home"))
    for role, name in (("lesion", "ct-lesions"), ("ct", "ct-classifier")):
        shutil.copytree(checkpoints[role], model_dir(name))
    write_card(model_dir("ct-lesions"), {"name": "ct-lesions", "summary": "a tiny <b>test</b> lesion model"})
    return ServedModels.load(ct=model_dir("ct-classifier"), lesion=model_dir("ct-lesions"))


def test_the_card_of_a_served_store_model_is_served_and_linked(store_models, client_for, data_root):
    client = client_for(store_models)
    response = client.get("/v1/models/ct-lesions/card")
    assert response.status_code == 200 and response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text.startswith("# ct-lesions\n") and "a tiny <b>test</b> lesion model" in response.text
    assert response.headers["x-content-type-options"] == "nosniff" and "sandbox" in response.headers["content-security-policy"]

    listed = {m["id"]: m["card"] for m in client.get("/v1/models").json()["models"]}
    assert listed == {"ct": None, "lesion": "/v1/models/ct-lesions/card"}

    path = data_root / CT_PNG
    study = client.post("/v1/screen", files={"file": (path.name, path.read_bytes())}).json()
    assert {m["role"]: m["card"] for m in study["models"]} == {"lesion": "/v1/models/ct-lesions/card",
                                                               "ct_classifier": None}
    segment = client.post("/v1/segment", files={"file": (path.name, path.read_bytes())}).json()
    assert segment["model"]["card"] == "/v1/models/ct-lesions/card"


@pytest.mark.parametrize("name", ["ct-classifier", "modality", "cxr-lungs", "..", "..%2F..%2Fetc%2Fpasswd",
                                  "ct-lesions%00", "card.md"])
def test_no_other_name_reaches_a_card(name, store_models, client_for):
    client = client_for(store_models)
    response = client.get(f"/v1/models/{name}/card")
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert response.json()["error"]["code"] in ("no_card", "not_found")
    if name in ("ct-classifier", "modality", "cxr-lungs"):
        assert message == (f"This server holds no store model {name!r} with a card; the cards here: ct-lesions.")


def test_models_outside_the_store_have_no_card(ct_models, client_for):
    client = client_for(ct_models)
    assert all(m["card"] is None for m in client.get("/v1/models").json()["models"])
    response = client.get("/v1/models/ct-lesions/card")
    assert response.status_code == 404 and "none (its models are not store models with cards)" in response.text


def test_cards_are_open_to_the_pages_links_when_a_token_guards_the_api(store_models, client_for):
    client = client_for(store_models, token="s3cret")
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models/ct-lesions/card").status_code == 200
    assert client.get("/v1/models/ct-classifier/card").status_code == 401  # only the held cards' paths are open
