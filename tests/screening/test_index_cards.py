"""The screen index lists the models a run used and links each store model's card, copied into the output
folder so the link survives moving it; a model without a card says so."""

from __future__ import annotations

import re

from covidlens.screening import outputs
from covidlens.screening.archive import model_cards, write_table


class _Models:
    def __init__(self, described: dict[str, dict]):
        self.described = described

    def describe(self) -> dict[str, dict]:
        return self.described


def test_index_links_the_card_of_each_store_model(tmp_path):
    store_model = tmp_path / "store" / "ct-lesions"
    store_model.mkdir(parents=True)
    (store_model / "card.md").write_text("# ct-lesions\n\nmeasured figures\n")
    own = tmp_path / "runs" / "mine" / "model"
    own.mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    models = _Models({"lesion": {"path": str(store_model), "architecture": "unet_efficientnet_lite0"},
                      "ct_classifier": {"path": str(own), "architecture": "efficientnet_lite0"}})

    cards = model_cards(out, models)
    write_table(out, cards)
    page = (out / "index.html").read_text()
    links = re.findall(r"href='([^']+)'", page)
    assert links == ["cards/lesion.md"]
    assert (out / links[0]).read_text() == "# ct-lesions\n\nmeasured figures\n"
    assert "efficientnet_lite0" in page and "no model card (not a store model)" in page


def test_index_without_models_is_unchanged():
    rows = [{"key": "a.png", "name": "a", "status": "screened", "decision": "no", "lesions": "no"}]
    page = outputs.index_html(rows)
    assert "<h2>Models</h2>" not in page and re.findall(r"href='([^']+)'", page) == ["a/report.html"]
