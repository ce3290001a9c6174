import json
import subprocess
import sys

import pytest

from covidlens.cli import main


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("efficientnet_lite0", "simple_cnn", "vgg", "resnet50", "densenet121", "mobilenet_v2"):
        assert name in out


def test_data_info_counts(data_root, capsys):
    assert main(["data", "info", "covid-ct", "--data-root", str(data_root)]) == 0
    assert "test  NonCOVID=105  COVID=98" in capsys.readouterr().out


def test_predict_writes_table_csv_and_json(tiny_run, covid_ct, tmp_path, capsys):
    out_csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    code = main(["predict", "--checkpoint", str(tiny_run / "model"), str(covid_ct / "CT_COVID" / "2020.01.24.919183-p27-132.png"),
                 str(covid_ct / "CT_NonCOVID" / "102.png"), "--csv", str(out_csv), "--json", str(out_json),
                 "--operating-point", "sensitivity"])
    assert code == 0
    assert "P(COVID)" in capsys.readouterr().out
    rows = json.loads(out_json.read_text())
    assert len(rows) == 2 and all(0 <= r["probability"] <= 1 for r in rows)
    assert out_csv.read_text().splitlines()[0] == ("path,label,probability,threshold,error,refused,modality,"
                                                   "study_slices,study_lesions,study_severity,p_NonCOVID,p_COVID")


def test_predict_on_a_volume_gives_one_study_row_through_the_screen_road(tiny_run, data_root, tmp_path, capsys):
    from covidlens.data.io import read_scan
    from covidlens.screening import ScreenModels, screen_scan

    volume = data_root / "ct" / "covid-ct-md" / "volumes" / "normal001.nii.gz"
    out_json = tmp_path / "p.json"
    assert main(["predict", "--checkpoint", str(tiny_run / "model"), str(volume), "--json", str(out_json)]) == 0
    [row] = json.loads(out_json.read_text())
    assert "study of 154 slices" in capsys.readouterr().out and row["study_slices"] == 154
    ckpt = __import__("covidlens").load_checkpoint(tiny_run / "model")
    road = screen_scan(read_scan(volume), ScreenModels(ct_classifier=ckpt), explain=False)
    assert row["probability"] == pytest.approx(road.verdict.covid19_score, abs=1e-6)


def test_evaluate_writes_a_report(tiny_run, data_root, tmp_path, capsys):
    code = main(["evaluate", "--checkpoint", str(tiny_run / "model"), "--data-root", str(data_root), "--split", "val",
                 "--bootstrap", "50", "--out", str(tmp_path / "rep")])
    assert code == 0
    assert "sensitivity_0.95" in capsys.readouterr().out
    for name in ("metrics.json", "metrics.md", "roc.png", "predictions.csv", "confusion_threshold_0.5.png"):
        assert (tmp_path / "rep" / name).is_file()


def test_predict_text_file_named_png_fails_cleanly(tiny_run, tmp_path, capsys):
    fake = tmp_path / "scan.png"
    fake.write_text("not an image")
    assert main(["predict", "--checkpoint", str(tiny_run / "model"), str(fake)]) == 1
    captured = capsys.readouterr()
    assert "not an image covidlens can read" in captured.out and "Traceback" not in captured.err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["predict", "--checkpoint", "{run}", "{tmp}/missing.png"], "does not exist"),
        (["predict", "--checkpoint", "{tmp}/nowhere", "x.png"], "checkpoint .* does not exist"),
        (["evaluate", "--checkpoint", "{run}", "--data-root", "{tmp}/empty"], "is not at .*COVIDLENS_DATA"),
        (["train", "--data-root", "{tmp}/empty", "--name", "x", "--out-dir", "{tmp}/runs"], "is not at .*COVIDLENS_DATA"),
        (["train", "--config", "{tmp}/no.yaml"], "config file .* does not exist"),
        (["data", "download", "nothing"], "unknown data set .nothing."),
    ],
)
def test_bad_input_gives_one_sentence_and_exit_2(argv, message, tiny_run, tmp_path, capsys):
    argv = [a.format(run=tiny_run / "model", tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("covidlens: error:") and len(err.splitlines()) == 1
    assert __import__("re").search(message, err)


def test_console_script_exits_non_zero_without_traceback(tmp_path):
    fake = tmp_path / "scan.png"
    fake.write_text("not an image")
    proc = subprocess.run(
        [sys.executable, "-m", "covidlens.cli", "predict", "--checkpoint", str(tmp_path / "none"), str(fake)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "does not exist" in proc.stderr


def test_evaluate_on_a_users_folder_without_validation_split(tiny_run, covid_ct, tmp_path, capsys):
    for cls, source, names in (("covid", "CT_COVID", ["2020.01.24.919183-p27-132.png", "2020.01.24.919183-p27-133.png"]),
                               ("normal", "CT_NonCOVID", ["102.png", "11%0.jpg"])):
        (tmp_path / "mine" / cls).mkdir(parents=True)
        for name in names:
            (tmp_path / "mine" / cls / name).write_bytes((covid_ct / source / name).read_bytes())
    args = ["evaluate", "--checkpoint", str(tiny_run / "model"), "--data", str(tmp_path / "mine"), "--tta",
            "--bootstrap", "20"]  # TTA unlike training: the stored threshold no longer applies
    assert main(args) == 2  # "normal" is not the model's "NonCOVID" until the user says so
    assert "--class-map normal=NonCOVID" in capsys.readouterr().err
    code = main(args + ["--class-map", "normal=NonCOVID"])
    assert code == 0
    out = capsys.readouterr().out
    assert "4 images (2 NonCOVID, 2 COVID)" in out and "threshold_0.5" in out and "sensitivity_" not in out


def test_train_flags_are_taken_literally_not_as_yaml(data_root, tmp_path):
    from covidlens.cli import build_parser
    from covidlens.training.config import load_config

    args = build_parser().parse_args(["train", "--name", "2020.10", "--data-root", "yes"])
    config = load_config(None, [], {"name": args.name, "data.root": args.data_root})
    assert config.name == "2020.10" and config.data.root == "yes"


def test_unwritable_output_is_one_sentence(tiny_run, covid_ct, tmp_path, capsys):
    code = main(["predict", "--checkpoint", str(tiny_run / "model"), str(covid_ct / "CT_NonCOVID" / "102.png"),
                 "--csv", str(tmp_path / "missing" / "x.csv")])
    assert code == 2 and "folder does not exist" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    code = main(["explain", "--checkpoint", str(tiny_run / "model"), "--out", str(tmp_path / "afile"),
                 str(covid_ct / "CT_NonCOVID" / "102.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("covidlens: error:") and len(err.splitlines()) == 1


def _all_parsers(parser, prefix="covidlens"):
    import argparse

    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, f"{prefix} {name}")


def test_every_option_of_every_subcommand_has_help_text():
    from covidlens.cli import build_parser

    names = [where for where, _ in _all_parsers(build_parser())]
    assert {"covidlens train", "covidlens predict", "covidlens data list", "covidlens data download"} <= set(names)
    missing = [
        f"{where} {action.option_strings or action.dest}"
        for where, parser in _all_parsers(build_parser())
        for action in parser._actions
        if action.dest != "help" and not action.help and not action.__class__.__name__.startswith("_SubParsers")
    ]
    assert not missing, missing
