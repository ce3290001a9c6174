"""``covidlens models build`` trains from a committed recipe into the store, writes a card from the
measured figures, and reuses an installed model unless --force."""

from __future__ import annotations

import json

import pytest

from covidlens.cli import main

TINY = ["model.name=unet_seg", "model.pretrained=false", "model.kwargs={base_channels: 8}", "model.input_size=64",
        "optim.epochs=1", "optim.batch_size=4", "data.limit_per_class=8", "data.val_slices=4", "trainer.accelerator=cpu"]


def test_every_recipe_reads(data_root):
    from covidlens.store.build import read_recipe
    from covidlens.store.store import NAMES

    for name in NAMES:
        recipe = read_recipe(name)
        assert recipe.intended_use and recipe.failure_modes and recipe.score
        assert recipe.config.is_file() if recipe.trainer == "lightning" else recipe.config is None


def test_build_writes_a_measured_card_and_reuses_it(store, data_root, capsys):
    args = ["models", "build", "ct-lesions", "--data-root", str(data_root)] + [f"--set={o}" for o in TINY]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ct-lesions: training from ct-lesions.yaml (demo:" in out and "installed in" in out
    folder = store / "ct-lesions"
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "card.md", "model.json", "model.safetensors"]
    card = json.loads((folder / "card.json").read_text())
    assert card["architecture"] == "unet_seg" and card["recipe"]["variant"] == "demo"
    assert card["training"]["minutes"] >= 0 and card["training"]["cores"] and card["training"]["torch"]
    test = card["internal_test"]
    assert test["n"] == 48 and test["source"] == "medseg-infnet / test"
    dice = test["metrics"]["mean dice/infection"]
    assert 0 <= dice["low"] <= dice["value"] <= dice["high"] <= 1
    assert card["intended_use"] and card["failure_modes"] and card["not_scored"] and "medical device" in card["caution"]
    (outside,) = card["outside"]  # the recipe's COVID-CT-MD volumes through the screen road
    assert outside["n"] == 3 and outside["unit"] == "scans"
    for subject in ("P001", "cap001"):
        auc = outside["metrics"][f"infected-slice AUC, {subject}"]
        assert 0 <= auc["low"] <= auc["value"] <= auc["high"] <= 1
    assert any(k.startswith("lesion volume mL, normal001 (CT-") for k in outside["metrics"])
    markdown = (folder / "card.md").read_text()
    assert "## Internal test" in markdown and "mean dice/infection" in markdown and "## Known failure modes" in markdown

    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    assert "already installed" in capsys.readouterr().out
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert main(["models", "card", "ct-lesions"]) == 0
    assert "# ct-lesions" in capsys.readouterr().out


def test_build_refuses_what_it_cannot_build(store, capsys):
    assert main(["models", "build"]) == 2
    assert "name one model to build, or pass --all" in capsys.readouterr().err
    assert main(["models", "build", "modality", "--set", "epochs=many"]) == 2
    assert "modality setting epochs must be a number" in capsys.readouterr().err
    assert main(["models", "build", "modality", "--set", "optim.epochs=1"]) == 2
    assert "the modality recipe takes key=value with a key among" in capsys.readouterr().err


def test_a_classifier_card_shows_calibration_and_its_outside_set(store, data_root, capsys):
    """The ct-classifier recipe's card: ECE and Brier raw and calibrated on the test split, and the
    COVID-CT-MD slices scored as the recipe's outside set (infected slices as COVID)."""
    tiny = ["model.name=simple_cnn", "model.pretrained=false", "model.kwargs={widths: [8, 16]}", "model.input_size=64",
            "optim.epochs=1", "optim.batch_size=8", "data.limit_per_class=8", "trainer.accelerator=cpu"]
    args = ["models", "build", "ct-classifier", "--data-root", str(data_root)] + [f"--set={o}" for o in tiny]
    assert main(args) == 0
    assert "ct-classifier: scoring outside on covid-ct-md / test" in capsys.readouterr().out
    card = json.loads((store / "ct-classifier" / "card.json").read_text())
    calibration = card["calibration"]
    assert calibration["source"] == "covid-ct / test" and "val split of covid-ct" in calibration["note"]
    names = list(calibration["metrics"])
    assert names[0] == "ECE, raw (T = 1)" and names[1].startswith("ECE, calibrated (T = ") and len(names) == 4
    assert all(0 <= m["value"] <= 2 for m in calibration["metrics"].values())
    (outside,) = card["outside"]
    assert outside["source"] == "covid-ct-md / test" and outside["n"] == 470 and "normal001" in outside["note"]
    assert "AUC" in outside["metrics"] and "ECE, raw (T = 1)" in outside["metrics"]
    markdown = (store / "ct-classifier" / "card.md").read_text()
    assert "## Calibration of P(positive class)" in markdown and "## Outside sources" in markdown
