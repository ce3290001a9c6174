"""K classes end to end: a 3-class model trained for two epochs on a small real subset of
cxr/sutd-3class (pediatric viral and bacterial pneumonia, not COVID-19), then evaluated, used for
prediction and explained, through the same commands as the binary models."""

import json

import numpy as np
import pytest

from covidlens.checkpoint import load_checkpoint
from covidlens.cli import main
from covidlens.explain import explain_image
from covidlens.data.io import read_image
from covidlens.inference import predict
from covidlens.training.config import load_config
from covidlens.training.fit import train


@pytest.fixture(scope="module")
def three_class_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs3")
    config = load_config(None, [
        "name=sutd3", f"trainer.out_dir={out}", f"data.root={data_root}", "data.dataset=sutd-3class",
        "data.limit_per_class=8", "model.input_size=64", "optim.epochs=2", "optim.batch_size=8", "optim.lr=1e-3",
        "trainer.accelerator=cpu",
    ])
    return train(config, progress=False)


def _val_images(data_root):
    """One validation image of each class."""
    base = data_root / "cxr" / "sutd-3class" / "val"
    return [sorted((base / d).iterdir())[0] for d in ("normal", "infected/covid", "infected/non-covid")]


def test_three_class_checkpoint_has_three_outputs_and_no_implicit_positive(three_class_run):
    info = load_checkpoint(three_class_run / "model").info
    assert len(info.classes) == 3 and info.num_outputs == 3 and info.modality == "cxr"
    assert info.positive_class is None or info.positive_class in info.classes


def test_evaluate_reports_per_class_metrics_confusion_and_roc(three_class_run, data_root, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["evaluate", "--checkpoint", str(three_class_run / "model"), "--data", "sutd-3class",
                 "--data-root", str(data_root), "--split", "val", "--bootstrap", "50", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "macro average" in printed and "AUC (one vs rest)" in printed
    result = json.loads((out / "metrics.json").read_text())
    classes = result["classes"]
    metrics, ci = result["multiclass"]["metrics"], result["multiclass"]["ci95"]
    for name in classes:
        for key in ("precision", "recall", "f1", "auc"):
            assert f"{key}/{name}" in metrics and f"{key}/{name}" in ci
    matrix = np.array(result["multiclass"]["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == result["n_images"] == 25
    assert matrix.sum(1).tolist() == [result["class_counts"][c] for c in classes]
    assert "patient" in result["bootstrap_resamples_what"]
    for name in ("metrics.md", "roc.png", "confusion_argmax.png", "predictions.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0


def test_predict_gives_three_probabilities_and_the_likeliest_label(three_class_run, data_root):
    rows = predict(three_class_run / "model", _val_images(data_root))
    info = load_checkpoint(three_class_run / "model").info
    for row in rows:
        assert not row.error and set(row.probabilities) == set(info.classes)
        assert sum(row.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        if info.positive_class is None:
            assert row.label == max(row.probabilities, key=row.probabilities.get)


def test_predict_cli_over_a_folder_with_a_broken_file_writes_good_rows_and_fails(three_class_run, data_root, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, image in enumerate(_val_images(data_root)):  # the class folders reuse file names
        (folder / f"{i}_{image.name}").write_bytes(image.read_bytes())
    (folder / "broken.png").write_text("not an image")
    out = tmp_path / "rows.json"
    code = main(["predict", "--checkpoint", str(three_class_run / "model"), str(folder), "--json", str(out)])
    assert code == 1
    assert "1 of 4 files could not be read" in capsys.readouterr().err
    rows = json.loads(out.read_text())
    assert len(rows) == 4 and sum(1 for r in rows if r["error"]) == 1
    assert all(r["probability"] is not None for r in rows if not r["error"])


def test_explain_each_class_of_a_three_class_model(three_class_run, data_root):
    ckpt = load_checkpoint(three_class_run / "model")
    image = read_image(_val_images(data_root)[1])
    maps = []
    for name in ckpt.info.classes:
        e = explain_image(ckpt, image, "gradcam", target_class=name)
        assert e.explained_class == name and e.heat.shape == (image.height, image.width)
        assert 0.0 <= e.heat.min() and e.heat.max() <= 1.0
        maps.append(e.heat)
    assert not np.allclose(maps[0], maps[1]) or not np.allclose(maps[1], maps[2])
