"""A radiograph whose Grad-CAM is zero everywhere (nothing raised the COVID-19 score, as for a confident
Normal) is screened, with a note, instead of failing on a NaN share of heat inside the lungs."""

from __future__ import annotations

import numpy as np
from PIL import Image

import covidlens
from tests.screening.files import read_result, read_rows


def test_an_empty_heat_map_is_noted_not_a_failure(cxr_models, data_root, tmp_path, monkeypatch):
    from covidlens.screening import road
    from covidlens.segmentation import lungs as lung_module

    def centre_lungs(checkpoint, images, batch_size=16):
        masks = []
        for image in images:
            mask = np.zeros(np.asarray(image).shape[:2], dtype=bool)
            mask[mask.shape[0] // 4 : -mask.shape[0] // 4, mask.shape[1] // 4 : -mask.shape[1] // 4] = True
            masks.append(mask)
        return masks

    monkeypatch.setattr(lung_module, "lung_masks", centre_lungs)
    monkeypatch.setattr(road, "_heat_maps", lambda ckpt, grey, indices: {i: np.zeros(grey.shape[1:]) for i in indices})
    xray = next((data_root / "cxr" / "covid19-radiography" / "Normal").glob("*.jpg"))
    Image.open(xray).convert("L").save(tmp_path / "normal.png")
    lungs, classifier = cxr_models

    covidlens.screen([tmp_path / "normal.png"], tmp_path / "out", cxr_lungs=lungs, cxr=classifier, workers=0,
                     backend="torch")
    (row,) = read_rows(tmp_path / "out").values()
    assert row["status"] == "screened" and row["error"] == ""
    record = read_result(tmp_path / "out", row["name"])
    assert "heat_in_lungs" not in record["measures"]
    assert any("heat map is empty" in note for note in record["notes"])
