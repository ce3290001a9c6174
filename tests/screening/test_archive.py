"""Screening an archive: nothing finished is overwritten or redone, a killed run resumes where it
stopped, and shards into one folder add up to one unsharded run.
PyTorch runs the lesion model here: ONNX Runtime, the default, would export it again at every start
(seconds each); test_outputs runs the default engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import covidlens
from covidlens.screening import find_studies
from tests.screening.files import ledger_rows, read_rows, write_ct_volume

#: What two runs of the same study must agree on (not the seconds it took).
SAME = ["key", "name", "status", "modality", "kind", "decision", "lesions", "severity", "covid19_score",
        "operating_point", "lesion_volume_ml", "lung_volume_ml", "percent_involved", "error"]


def _studies(folder, count, shape=(12, 80, 80)):
    for k in range(count):
        write_ct_volume(folder / f"patient-{k:02d}" / "chest.nii.gz", seed=k, shape=(shape[0] + k % 3, *shape[1:]))
    return folder


def _state(out):
    """Each study folder's result.json as (inode, mtime in ns): changed when rewritten."""
    return {p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*/result.json")}


def _one_row_each(out, keys):
    rows = ledger_rows(out)
    assert sorted(r["key"] for r in rows) == sorted(keys)


def test_a_second_run_keeps_every_finished_study(screen_cli, lesion_model, tmp_path):
    studies, out = _studies(tmp_path / "studies", 3), tmp_path / "out"
    model = ("--lesion-checkpoint", lesion_model, "--workers", "0", "--backend", "torch")
    assert screen_cli(studies, "--out", out, *model)[0] == 0
    before = _state(out)
    assert len(before) == 3

    code, stdout, _ = screen_cli(studies, "--out", out, *model)
    assert code == 0 and "3 already done by an earlier run" in stdout
    assert _state(out) == before
    _one_row_each(out, read_rows(out))

    (out / "screen-ledger.jsonl").unlink()  # finished folders whose ledger lines were lost: recognised, kept
    code, stdout, _ = screen_cli(studies, "--out", out, *model)
    assert code == 0 and "3 already done by an earlier run" in stdout
    assert _state(out) == before
    _one_row_each(out, read_rows(out))

    code, stdout, _ = screen_cli(studies, "--out", out, *model, "--overwrite")
    assert code == 0 and "already done" not in stdout
    after = _state(out)
    assert set(after) == set(before) and all(after[name] != before[name] for name in before)
    assert all(row["status"] == "screened" for row in read_rows(out).values())


def test_a_folder_that_is_not_a_result_is_left_alone(screen_cli, lesion_model, tmp_path):
    studies, out = _studies(tmp_path / "studies", 3), tmp_path / "out"
    taken = find_studies([studies])[1]
    (out / taken.name).mkdir(parents=True)
    (out / taken.name / "notes.txt").write_text("someone's own work\n")
    model = ("--lesion-checkpoint", lesion_model, "--workers", "0", "--backend", "torch")

    code, _, stderr = screen_cli(studies, "--out", out, *model)
    assert code == 1 and "1 of 3 studies could not be screened" in stderr
    rows = read_rows(out)
    assert rows[taken.key]["status"] == "failed"
    error = rows[taken.key]["error"]
    assert str(out / taken.name) in error and "is not this study's screen result" in error and error.endswith(".")
    assert [p.name for p in (out / taken.name).iterdir()] == ["notes.txt"]
    assert sum(row["status"] == "screened" for row in rows.values()) == 2

    code, _, _ = screen_cli(studies, "--out", out, *model, "--overwrite")
    assert code == 0 and read_rows(out)[taken.key]["status"] == "screened"


def test_two_shards_add_up_to_one_unsharded_run(screen_cli, lesion_model, tmp_path):
    studies = _studies(tmp_path / "studies", 6)
    model = ("--lesion-checkpoint", lesion_model, "--backend", "torch")
    assert screen_cli(studies, "--out", tmp_path / "whole", *model, "--workers", "0")[0] == 0
    whole = read_rows(tmp_path / "whole")

    sharded = tmp_path / "sharded"
    code, first, _ = screen_cli(studies, "--out", sharded, *model, "--workers", "0", "--shard", "0/2")
    assert code == 0
    code, second, _ = screen_cli(studies, "--out", sharded, *model, "--workers", "1", "--shard", "1/2")
    assert code == 0
    assert sorted(p.name for p in sharded.glob("screen-ledger*")) == ["screen-ledger-0-of-2.jsonl",
                                                                       "screen-ledger-1-of-2.jsonl"]
    ledgers = [sharded / f"screen-ledger-{k}-of-2.jsonl" for k in (0, 1)]
    shard_keys = [[json.loads(line)["key"] for line in ledger.read_text().splitlines()] for ledger in ledgers]
    assert all(shard_keys) and not set(shard_keys[0]) & set(shard_keys[1])
    assert f"screened {len(shard_keys[1])} of {len(shard_keys[1])} studies" in second

    together = read_rows(sharded)
    assert set(together) == set(whole) and len(whole) == 6
    for key in whole:
        assert {c: together[key][c] for c in SAME} == {c: whole[key][c] for c in SAME}


def test_a_ledger_line_cut_by_a_kill_costs_no_study(lesion_model, tmp_path):
    """A kill in the middle of writing a ledger line leaves it without its newline; the next run's
    first line must not be glued onto it, or that study vanishes from results.csv."""
    studies, out = _studies(tmp_path / "studies", 3), tmp_path / "out"
    covidlens.screen(studies, out, lesion=lesion_model, workers=0, backend="torch")
    ledger = out / "screen-ledger.jsonl"
    lines = ledger.read_text().splitlines()
    ledger.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])

    run = covidlens.screen(studies, out, lesion=lesion_model, workers=0, backend="torch")
    assert run.resumed == 3
    keys = [s.key for s in find_studies([studies])]
    assert sorted(read_rows(out)) == sorted(keys)
    valid = [json.loads(line) for line in ledger.read_text().splitlines() if line.endswith("}")]
    assert sorted(r["key"] for r in valid) == sorted(keys)


def test_a_killed_run_resumes_without_redoing_or_losing_a_study(lesion_model, tmp_path):
    count = 10
    studies, out = _studies(tmp_path / "studies", count), tmp_path / "out"
    command = [sys.executable, "-m", "covidlens.cli", "screen", str(studies), "--out", str(out),
               "--lesion-checkpoint", str(lesion_model), "--workers", "0", "--backend", "torch"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    ledger = out / "screen-ledger.jsonl"
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if ledger.exists() and ledger.read_bytes().count(b"\n") >= 1:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, (
        f"the run ended by itself (exit {process.returncode}) before it could be killed; give it more studies. "
        f"{process.stderr.read().decode()[-2000:]}")
    process.stderr.close()
    finished = _state(out)
    assert 1 <= len(ledger.read_text().splitlines()) < count

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(finished)} already done by an earlier run" in resumed.stdout
    keys = [s.key for s in find_studies([studies])]
    _one_row_each(out, keys)
    assert sorted(read_rows(out)) == sorted(keys)
    after = _state(out)
    assert len(after) == count
    assert {name: after[name] for name in finished} == finished
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_inputs_of_the_same_name_each_get_their_row(lesion_model, tmp_path):
    inputs = [write_ct_volume(tmp_path / site / "scans" / "chest.nii.gz", seed=k).parent
              for k, site in enumerate(("site-1", "site-2"))]
    out = tmp_path / "out"
    run = covidlens.screen(inputs, out, lesion=lesion_model, workers=0, backend="torch")
    assert len(run.rows) == 2 and run.failed == 0
    assert sorted(read_rows(out)) == ["site-1/scans/chest.nii.gz", "site-2/scans/chest.nii.gz"]


def test_an_output_folder_inside_the_input_is_not_screened_as_studies(lesion_model, tmp_path):
    """``covidlens screen . --out screened``: the second run finds the first one's masks, pictures and
    DICOM SEG/SR under the input, and must not take them for studies."""
    studies = _studies(tmp_path / "studies", 2)
    out = studies / "screened"
    first = covidlens.screen(studies, out, lesion=lesion_model, workers=0, backend="torch")
    again = covidlens.screen(studies, out, lesion=lesion_model, workers=0, backend="torch")
    assert first.failed == again.failed == 0
    assert again.resumed == len(again.rows) == 2
    assert sorted(read_rows(out)) == ["studies/patient-00/chest.nii.gz", "studies/patient-01/chest.nii.gz"]
