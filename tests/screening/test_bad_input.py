"""Bad input among good: each bad study gets one sentence naming it, every other study is still
screened and written, and the run exits 1 with its summary on stderr. Errors of the command itself
(a wrong checkpoint for a role, a bad option) stop it at once with one line and exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import re

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image

from covidlens.cli import main
from covidlens.screening.studies import MAX_SERIES_FILES
from tests.screening.files import read_result, read_rows, write_ct_volume, write_radiograph_dicom

#: Study key -> words its one sentence must hold.
EXPECTED_FAILURES = {
    "axial": "holds 2 DICOM series",
    "ct-and-xray": "holds 2 DICOM series",
    "gap": "uneven slice steps",
    "sizes": "mixes slice sizes (512x512 and 512x256)",
    "empty": "is empty",
    "texts": "holds no DICOM, NIfTI or image files",
    "four-d.nii.gz": "holds a 4-D NIfTI image",
    "huge": f"holds {MAX_SERIES_FILES + 1} DICOM files",
    "fake.dcm": "is not a DICOM file",
    "broken.png": "is not an image covidlens can read",
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, lesion_model, p001_in_order, ny_sbu, data_root):
    inputs = tmp_path_factory.mktemp("inputs")
    good = [write_ct_volume(inputs / "good" / "chest.nii.gz"),
            ny_sbu / "A002304" / "axial" / "19001231-076.dcm",  # a real slice through the lungs
            ny_sbu / "A027284" / "axial" / "19000925-116.dcm"]  # a real abdomen slice: screened, not assessed

    def copies(name, files):
        folder = inputs / name
        folder.mkdir()
        for path in files:
            (folder / path.name).write_bytes(path.read_bytes())
        return folder

    good.append(copies("one-slice", good[1:2]))  # a folder of one DICOM file: a slice, not a 1-deep volume
    mixed = copies("ct-and-xray", p001_in_order[20:23])
    cxr = np.asarray(Image.open(next((data_root / "cxr" / "covid19-radiography" / "COVID").glob("*.jpg"))).convert("L"))
    write_radiograph_dicom(mixed / "xray.dcm", cxr)
    gap = copies("gap", p001_in_order[10:16])
    (gap / p001_in_order[12].name).unlink()
    sizes = copies("sizes", p001_in_order[0:4])
    odd = pydicom.dcmread(sizes / p001_in_order[2].name)
    odd.Rows = 256  # the header says so: refused before any pixel is decoded
    odd.save_as(sizes / p001_in_order[2].name)
    (inputs / "empty").mkdir()
    (inputs / "texts").mkdir()
    for name in ("a.txt", "readme.md"):
        (inputs / "texts" / name).write_text("not an image\n")
    nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8, 4, 2), np.int16), np.eye(4)), str(inputs / "four-d.nii.gz"))
    (inputs / "huge").mkdir()
    for k in range(MAX_SERIES_FILES + 1):
        (inputs / "huge" / f"{k:05d}.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 8)
    (inputs / "fake.dcm").write_text("a text file named .dcm\n")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)

    bad = [ny_sbu / "A027284" / "axial", mixed, gap, sizes, inputs / "empty", inputs / "texts",
           inputs / "four-d.nii.gz", inputs / "huge", inputs / "fake.dcm", inputs / "broken.png", inputs / "nowhere"]
    out = tmp_path_factory.mktemp("screened") / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["screen", *map(str, good[:1] + bad[:6] + good[1:] + bad[6:]), "--out", str(out),
                     "--lesion-checkpoint", str(lesion_model), "--workers", "1", "--backend", "torch"])
    return {"code": code, "out": out, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(),
            "nowhere": str(inputs / "nowhere")}


def test_the_run_exits_1_with_the_count_on_stderr(bad_run):
    total = len(EXPECTED_FAILURES) + 1 + 4
    assert bad_run["code"] == 1
    ours = [line for line in bad_run["stderr"].splitlines() if line.startswith("covidlens:")]
    assert ours == [f"covidlens: {total - 4} of {total} studies could not be screened; their rows carry the reason."]
    assert "Traceback" not in bad_run["stderr"]
    assert f"screened 4 of {total} studies" in bad_run["stdout"]


def test_each_bad_study_has_one_sentence_naming_it(bad_run):
    rows = read_rows(bad_run["out"])
    expected = EXPECTED_FAILURES | {bad_run["nowhere"]: "does not exist"}
    failed = {key: row["error"] for key, row in rows.items() if row["status"] == "failed"}
    assert set(failed) == set(expected)
    for key, error in failed.items():
        assert expected[key] in error, (key, error)
        assert key.split("/")[-1] in error and "\n" not in error and error.endswith("."), (key, error)
        assert "Traceback" not in error
        assert f"failed: {error}" in bad_run["stdout"]


def test_a_bad_study_leaves_a_result_that_says_why(bad_run):
    rows = read_rows(bad_run["out"])
    for key, row in rows.items():
        if row["status"] == "failed" and key != bad_run["nowhere"]:
            record = read_result(bad_run["out"], row["name"])
            assert (record["status"], record["error"]) == ("failed", row["error"])
            assert "Not screened" in (bad_run["out"] / row["name"] / "report.html").read_text()


def test_every_good_study_is_screened_and_written(bad_run):
    rows = read_rows(bad_run["out"])
    good = {key: row for key, row in rows.items() if row["status"] == "screened"}
    assert set(good) == {"chest.nii.gz", "19001231-076.dcm", "19000925-116.dcm", "one-slice"}
    for row in good.values():
        record = read_result(bad_run["out"], row["name"])
        assert record["status"] == "screened" and record["error"] == ""
        assert (bad_run["out"] / row["name"] / "report.html").is_file()
    assert good["19001231-076.dcm"]["kind"] == good["one-slice"]["kind"] == "slice"
    assert good["one-slice"]["decision"] == good["19001231-076.dcm"]["decision"]
    abdomen = read_result(bad_run["out"], good["19000925-116.dcm"]["name"])
    assert abdomen["verdict"]["lesions"] == "not assessed"
    assert any("no lung" in note for note in abdomen["notes"])
    links = set(re.findall(r"href='([^']+)'", (bad_run["out"] / "index.html").read_text()))
    assert links == {f"{row['name']}/report.html" for row in good.values()}
    ledger = [json.loads(line) for line in (bad_run["out"] / "screen-ledger.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in ledger) == sorted(rows)


# --- errors of the command: one line, exit 2, nothing written --------------------------------------


def _one_line_error(screen_cli, *args):
    code, out, err = screen_cli(*args)
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("covidlens: error: "), err
    return lines[0]


def test_a_checkpoint_of_the_wrong_role_stops_the_command(screen_cli, lesion_model, tmp_path):
    volume = write_ct_volume(tmp_path / "chest.nii.gz")
    out = tmp_path / "out"
    line = _one_line_error(screen_cli, volume, "--out", out, "--ct-checkpoint", lesion_model)
    assert "is a CT segmentation model, but --ct-checkpoint needs a CT classifier" in line
    line = _one_line_error(screen_cli, volume, "--out", out, "--lesion-checkpoint", lesion_model,
                           "--cxr-lung-checkpoint", lesion_model)
    assert "--cxr-lung-checkpoint needs a chest X-ray lung model" in line
    assert not out.exists()


def test_a_path_that_is_no_checkpoint_stops_the_command(screen_cli, tmp_path):
    volume = write_ct_volume(tmp_path / "chest.nii.gz")
    (tmp_path / "model").mkdir()
    line = _one_line_error(screen_cli, volume, "--out", tmp_path / "out", "--lesion-checkpoint", tmp_path / "model")
    assert str(tmp_path / "model") in line
    line = _one_line_error(screen_cli, volume, "--out", tmp_path / "out")
    assert "no model given" in line
    assert not (tmp_path / "out").exists()


def test_bad_options_stop_the_command(screen_cli, lesion_model, tmp_path):
    volume = write_ct_volume(tmp_path / "chest.nii.gz")
    model = ("--lesion-checkpoint", lesion_model, "--backend", "torch")
    assert "--shard 2/2" in _one_line_error(screen_cli, volume, "--out", tmp_path / "out", "--shard", "2/2", *model)
    assert "--shard takes K/N" in _one_line_error(screen_cli, volume, "--out", tmp_path / "out", "--shard", "1-2",
                                                  *model)
    assert "--workers" in _one_line_error(screen_cli, volume, "--out", tmp_path / "out", "--workers", "-1", *model)
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in _one_line_error(screen_cli, volume, "--out", tmp_path / "file", *model)
    assert not (tmp_path / "out").exists()
