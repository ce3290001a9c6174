"""``covidlens segment``: evaluate and predict on real MedSeg slices write their files; bad input is
one sentence with exit 2, a batch with unreadable files exits 1."""

import json

import pytest

from covidlens.cli import main


def test_segment_evaluate_writes_a_report_with_overlays(seg_run, data_root, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["segment", "evaluate", "--checkpoint", str(seg_run / "model"), "--data", "medseg-infnet",
                 "--data-root", str(data_root), "--split", "test", "--out", str(out), "--limit", "4",
                 "--bootstrap", "50"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "4 slices" in printed and "mean over slices" in printed
    result = json.loads((out / "metrics.json").read_text())
    assert result["n_slices"] == 4 and 0.0 <= result["metrics"]["mean_dice/infection"] <= 1.0
    assert len(result["ci95"]["mean_dice/infection"]) == 2
    assert len(list((out / "overlays").glob("*.png"))) == 4
    assert (out / "index.html").read_text().count("<img") == 4
    assert len((out / "per_slice.csv").read_text().splitlines()) == 5
    assert "Headline, mean Dice over slices" in (out / "metrics.md").read_text()


def test_segment_predict_writes_files_and_exits_1_on_a_bad_file(seg_run, data_root, tmp_path, capsys):
    image = data_root / "ct" / "medseg-infnet" / "test" / "images" / "18.jpg"
    bad = tmp_path / "fake.png"
    bad.write_text("text")
    out = tmp_path / "pred"
    code = main(["segment", "predict", "--checkpoint", str(seg_run / "model"), str(image), str(bad), "--out", str(out)])
    assert code == 1
    assert "1 of 2 files could not be read" in capsys.readouterr().err
    assert len(list((out / "masks").glob("*.png"))) == 1 and (out / "index.html").is_file()
    assert main(["segment", "predict", "--checkpoint", str(seg_run / "model"), str(image), "--out", str(out / "ok")]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["segment", "evaluate", "--checkpoint", "/nonexistent/model"], "does not exist"),
        (["segment", "evaluate", "--checkpoint", "RUN", "--data", "medseg-infnet-multiclass"], "same mask classes"),
        (["segment", "train", "--config", "configs/medseg_unet.yaml", "--data", "covid-ct"], "is a classification set"),
        (["segment", "train", "--config", "configs/medseg_unet.yaml", "--model", "efficientnet_lite0"],
         "segmentation model"),
        (["segment", "predict", "--checkpoint", "RUN", "/nonexistent.png", "--out", "OUT"], "does not exist"),
    ],
)
def test_bad_input_gives_one_sentence_and_exit_2(argv, message, seg_run, data_root, tmp_path, capsys):
    argv = [str(seg_run / "model") if a == "RUN" else str(tmp_path / "o") if a == "OUT" else a for a in argv]
    if argv[1] != "predict":
        argv += ["--data-root", str(data_root)]
    if argv[1] == "train":
        argv += ["--out-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not any(tmp_path.iterdir())
