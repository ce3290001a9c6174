"""``covidlens models build modality`` trains the modality CNN with the package's trainer
(covidlens.modality.train) into the store, with a generated card; the store verifies its weights."""

from __future__ import annotations

import json
import shutil

import pytest

from covidlens.cli import main

TINY = ["train_per_set=3", "eval_per_set=3", "negatives=3", "negatives_eval=2", "epochs=1", "steps=2",
        "batch_size=6"]


@pytest.fixture(scope="module")
def built(data_root, tmp_path_factory):
    """A tiny modality build in its own store (seconds), and what it printed."""
    home = tmp_path_factory.mktemp("modality-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COVIDLENS_HOME", str(home))
        lines: list[str] = []
        from covidlens.store.build import build

        folder = build("modality", "demo", extra=TINY + [f"data.root={data_root}"], n_boot=200, log=lines.append)
    return home / "models", folder, lines


def test_a_modality_build_writes_a_measured_card(built):
    models, folder, lines = built
    assert folder == models / "modality"
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "card.md", "model.json", "model.safetensors"]
    assert any(line.startswith("epoch 1/1 ") for line in lines)  # one line per epoch
    assert lines[0].startswith("modality: training from modality.yaml (demo:") and "installed in" in lines[-1]
    card = json.loads((folder / "card.json").read_text())
    assert card["architecture"].startswith("modality_cnn") and card["classes"] == ["ct", "cxr", "other"]
    assert card["recipe"]["settings"]["epochs"] == 1 and card["recipe"]["variant"] == "demo"
    assert card["training"]["cores"] and card["training"]["minutes"] >= 0 and card["training"]["best epoch"] == 1
    assert card["data"]["real training images per set"]["covid-ct"] == 3
    metrics = card["internal_test"]["metrics"]
    assert "ct: covid-ct (3)" in metrics and "other: noise16 (2)" in metrics and len(metrics) >= 12
    for figure in metrics.values():
        assert 0 <= figure["low"] <= figure["value"] <= figure["high"] <= 1
    assert card["intended_use"] and len(card["failure_modes"]) >= 3 and "medical device" in card["caution"]
    markdown = (folder / "card.md").read_text()
    assert "# modality" in markdown and "## Internal test" in markdown and "## Known failure modes" in markdown


def test_the_store_lists_loads_and_packs_the_built_modality_model(built, monkeypatch, tmp_path, capsys):
    from covidlens.modality.check import ModalityNet, read_modality_net
    from covidlens.store.store import verify_model

    models, folder, _ = built
    monkeypatch.setenv("COVIDLENS_HOME", str(models.parent))
    assert isinstance(read_modality_net(folder / "model.safetensors"), ModalityNet)
    verify_model("modality", folder)
    assert main(["models", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("modality "))
    assert row.split()[1] == "yes" and "modality_cnn" in row and str(folder / "card.md") in row
    assert main(["models", "card", "modality"]) == 0
    assert capsys.readouterr().out.startswith("# modality")
    assert main(["models", "pack", "modality", "--out", str(tmp_path / "packed")]) == 0
    assert (tmp_path / "packed" / "modality.tar.gz").is_file()


def test_the_store_refuses_a_modality_folder_with_other_weights(built, tmp_path):
    from covidlens.errors import CovidlensError
    from covidlens.store.store import verify_model

    _, folder, _ = built
    other = tmp_path / "modality"
    shutil.copytree(folder, other)
    from safetensors.torch import load_file, save_file

    state = load_file(str(other / "model.safetensors"))
    state["head.weight"] = state["head.weight"][:2]
    save_file(state, str(other / "model.safetensors"))
    with pytest.raises(CovidlensError, match="does not hold the modality CNN's weights"):
        verify_model("modality", other)
    (other / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CovidlensError, match="is not a readable safetensors file"):
        verify_model("modality", other)
