"""``covidlens models build cxr-classifier``: the store's lung model masks the radiographs first, the
classifier trains on the masked copies and its checkpoint and card say so; without cxr-lungs installed
the build is refused with one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from covidlens.cli import main

TINY_SEG = ["model.name=unet_seg", "model.pretrained=false", "model.kwargs={base_channels: 8}", "model.input_size=64",
            "optim.epochs=1", "optim.batch_size=4", "data.limit_per_class=8", "trainer.accelerator=cpu"]


def _radiography_table(data_root: Path, path: Path) -> Path:
    """A handful of real covid19-radiography images: 4 train, 2 val, 2 test per class (the recipe takes 3 train)."""
    folder = data_root / "cxr" / "covid19-radiography"
    rows = ["path,label,split,patient_id"]
    for label in ("COVID", "Normal"):
        images = sorted((folder / label).glob("*.jpg"))[:8]
        for image, split in zip(images, ["train"] * 4 + ["val"] * 2 + ["test"] * 2):
            rows.append(f"{image},{label},{split},{image.stem}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_cxr_classifier_needs_the_lung_model(store, data_root, capsys):
    assert main(["models", "build", "cxr-classifier", "--data-root", str(data_root)]) == 2
    err = capsys.readouterr().err
    assert "cxr-lungs" in err and "covidlens models build cxr-lungs" in err and "Traceback" not in err


def test_cxr_classifier_trains_on_lung_masked_copies(store, data_root, tmp_path, capsys):
    from covidlens.checkpoint import load_checkpoint
    from covidlens.store.build import build

    build("cxr-lungs", extra=TINY_SEG + [f"data.root={data_root}"], n_boot=20)
    table = _radiography_table(data_root, tmp_path / "radiography.csv")
    recipes = tmp_path / "configs" / "store"
    recipes.mkdir(parents=True)
    committed = yaml.safe_load((Path(__file__).parents[2] / "configs" / "store" / "cxr-classifier.yaml").read_text())
    committed["config"] = str(Path(__file__).parents[2] / "configs" / "cxr_table1.yaml")
    committed["recipes"]["demo"] = [f"data.dataset={table}", "data.limit_per_class=3", "model.input_size=64", "optim.epochs=1",
                                    "optim.batch_size=4", "trainer.accelerator=cpu"]
    (recipes / "cxr-classifier.yaml").write_text(yaml.safe_dump(committed))

    folder = build("cxr-classifier", recipe_dir=recipes, n_boot=20)
    out = capsys.readouterr().out
    assert "lung-masked copies of 14" in out and "installed in" in out  # 3 train, 2 val, 2 test per class
    ckpt = load_checkpoint(folder)
    assert ckpt.info.preprocessing["lungs"] == "masked"
    assert (ckpt.info.task, ckpt.info.modality, list(ckpt.info.classes)) == ("classification", "cxr", ["Normal", "COVID"])
    derived = list((store.parent / "derived").glob("lungs-*/tables/*-masked.csv"))
    assert len(derived) == 1
    masked = [line.split(",")[0] for line in derived[0].read_text().splitlines()[1:]]
    assert len(masked) == 14 and all(Path(p).is_file() and Path(p).suffix == ".png" for p in masked)
    card = json.loads((folder / "card.json").read_text())
    assert "masked by the store's cxr-lungs" in card["data"]["lungs"]
    assert card["internal_test"]["n"] == 4 and "lung-masked / test" in card["internal_test"]["source"]
    assert "## Internal test" in (folder / "card.md").read_text()

    stamps = [Path(p).stat().st_mtime_ns for p in masked]
    build("cxr-classifier", recipe_dir=recipes, force=True, n_boot=20)
    assert [Path(p).stat().st_mtime_ns for p in masked] == stamps  # derived copies are reused
