"""Screening many studies: one result each, recorded as it finishes, resumable, and split into shards.

:func:`screen` walks the inputs into studies (:mod:`covidlens.screening.studies`), screens each one
(:func:`covidlens.screening.road.screen_scan`) and writes its folder (:mod:`covidlens.screening.outputs`).

- **Recorded as it goes.** Each finished study, screened or refused, is appended to a ledger
  (``screen-ledger.jsonl``, one JSON line, flushed to disk) right after its folder is in place. Killed
  halfway, the same command reads the ledger and skips what is done: nothing is redone or lost. A study
  folder in place whose ledger line was lost to the kill is recognised by its ``result.json`` and kept.
- **Cores.** Studies are read (DICOM decoding, NIfTI inflation) in worker processes a few studies
  ahead, while the main process runs the models.
- **Machines.** ``shard=(K, N)`` screens the studies whose key hashes to K of N; run N copies as a
  scheduler's job array (``scripts/slurm_screen.sh``) or as torchrun workers (``K = RANK``,
  ``N = WORLD_SIZE``). Each shard keeps its own ledger; every run rebuilds ``results.csv`` and
  ``index.html`` from all ledgers in the output folder, so the last shard to finish leaves the whole table.
- **Nothing overwritten** without ``overwrite=True``: a study folder that exists is kept (and a folder of
  that name that is not a covidlens result is reported, not touched).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import covidlens
from covidlens.errors import CovidlensError
from covidlens.screening import outputs
from covidlens.screening.road import Clock, ScreenModels, screen_scan
from covidlens.screening.studies import Study, find_studies

CSV_NAME = "results.csv"
INDEX_NAME = "index.html"
COLUMNS = ["key", "name", "status", "modality", "kind", "decision", "lesions", "severity", "covid19_score",
           "operating_point", "lesion_volume_ml", "lung_volume_ml", "percent_involved", "seconds", "error"]
#: Studies read ahead of the one on the models, per reading worker.
READ_AHEAD = 2


@dataclass
class ScreenRun:
    out_dir: Path
    rows: list[dict]
    #: Studies of this run skipped because an earlier run had finished them.
    resumed: int = 0

    @property
    def failed(self) -> int:
        return sum(r["status"] != "screened" for r in self.rows)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` (0 <= K < N) as (K, N); ``"env"`` takes K and N from torchrun (RANK, WORLD_SIZE) or a
    SLURM job array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT); None for None."""
    if text is None:
        return None
    if text == "env":
        for rank, size in (("RANK", "WORLD_SIZE"), ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")):
            if rank in os.environ and size in os.environ:
                text = f"{os.environ[rank]}/{os.environ[size]}"
                break
        else:
            raise CovidlensError("--shard env needs RANK and WORLD_SIZE (torchrun) or SLURM_ARRAY_TASK_ID and "
                                 "SLURM_ARRAY_TASK_COUNT (a SLURM job array) in the environment.")
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise CovidlensError(f"--shard takes K/N (e.g. 0/4), not {text!r}.") from None
    if not 0 <= k < n:
        raise CovidlensError(f"--shard {text}: K must be from 0 to N-1.")
    return k, n


def ledger_name(shard: tuple[int, int] | None) -> str:
    return "screen-ledger.jsonl" if shard is None else f"screen-ledger-{shard[0]}-of-{shard[1]}.jsonl"


def screen(inputs, out_dir: str | Path, models: ScreenModels | None = None, *, operating_point: str = "default",
           overwrite: bool = False, shard: tuple[int, int] | None = None, workers: int | None = None,
           modality: str | None = None, on_result: Callable[[dict], None] | None = None, **checkpoints) -> ScreenRun:
    """Screen every study under ``inputs`` into ``out_dir``; see the module docstring.

    ``models`` (or the checkpoint paths ``lesion=``, ``ct=``, ``cxr_lungs=``, ``cxr=``, ``backend=`` that
    :meth:`ScreenModels.load` takes) say what runs; ``on_result`` is called with each study's CSV row.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CovidlensError(f"{out} exists and is not a folder; give a folder for the screen output.")
    if not out.resolve().parent.is_dir():
        raise CovidlensError(f"cannot write {out}: its folder {out.resolve().parent} does not exist.")
    models = models or ScreenModels.load(**checkpoints)
    # An output folder inside an input folder holds covidlens's own files, not studies to find there.
    given = {Path(i).resolve() for i in inputs}
    studies = [s for s in find_studies(list(inputs))
               if s.path.resolve() in given or not s.path.resolve().is_relative_to(out.resolve())]
    if shard is not None:
        studies = [s for s in studies if s.shard(shard[1]) == shard[0]]
    out.mkdir(exist_ok=True)
    _remove_partials(out)
    ledger = out / ledger_name(shard)
    done = {} if overwrite else _read_ledger(ledger)
    _end_cut_line(ledger)
    run = ScreenRun(out, [])
    todo = []
    for study in studies:
        if study.key in done:
            run.rows.append(done[study.key])
            run.resumed += 1
        elif not overwrite and (row := _finished_folder(out / study.name, study)) is not None:
            _append(ledger, row)  # finished before a kill, ledger line lost: keep it
            run.rows.append(row)
            run.resumed += 1
        else:
            todo.append(study)
    for study, scan, read_seconds, problem in _read_ahead(todo, workers):
        row = _screen_one(out, study, scan, read_seconds, problem, models, operating_point, overwrite, modality)
        _append(ledger, row)
        run.rows.append(row)
        if on_result is not None:
            on_result(row)
    write_table(out, model_cards(out, models))
    return run


def _screen_one(out: Path, study: Study, scan, read_seconds: float, problem: str, models: ScreenModels,
                point: str, overwrite: bool, modality: str | None) -> dict:
    started = time.perf_counter()
    target = out / study.name
    if target.exists() and not overwrite and _finished_folder(target, study) is None:
        return _row(study, None, f"{target} exists and is not this study's screen result; pass --overwrite or "
                                 "choose another --out.", started)
    evidence, error = None, problem
    clock = Clock()
    clock.seconds["reading"] = read_seconds
    if not error:
        try:
            evidence = screen_scan(scan, models, point, modality, clock)
        except CovidlensError as exc:
            error = f"{study.key}: {exc}"
    record = _record(study, scan, evidence, error, models, point)
    tmp = outputs.partial_folder(out, study.name)
    try:
        write_started = time.perf_counter()
        outputs.write_study(tmp, record, scan, evidence)
        if evidence is not None:
            record["timings"]["writing"] = round(time.perf_counter() - write_started, 3)
            (tmp / outputs.RESULT).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
        outputs.move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _row(study, record, record["error"], started)


def _record(study: Study, scan, evidence, error: str, models: ScreenModels, point: str) -> dict:
    record = {"tool": outputs.TOOL, "version": covidlens.__version__,
              "study": {"key": study.key, "name": study.name, "path": str(study.path)},
              "status": "screened" if evidence is not None else "failed", "error": error, "operating_point": point}
    if scan is not None:
        record["input"] = {"format": scan.format, "shape": list(scan.pixels.shape),
                           "units": scan.units, "spacing_mm": list(scan.spacing) if scan.spacing else None,
                           "files": len(scan.files) if scan.files else 1}
    if evidence is not None:
        record |= evidence.record()
        record["verdict"] = record.pop("verdict")
        record["models"] = models.describe()
    return record


def _row(study: Study, record: dict | None, error: str, started: float) -> dict:
    row = {c: None for c in COLUMNS} | {"key": study.key, "name": study.name, "error": error or ""}
    row["status"] = record["status"] if record else "failed"
    row["seconds"] = round(time.perf_counter() - started + (sum((record or {}).get("timings", {}).get(k, 0)
                                                                 for k in ("reading",))), 3)
    if record and record["status"] == "screened":
        v, m = record["verdict"], record["measures"]
        row |= {"modality": record["modality"], "kind": record["kind"], "decision": v["decision"],
                "lesions": v["lesions"], "severity": v["severity"], "covid19_score": v["covid19_score"],
                "operating_point": v["operating_point"], "lesion_volume_ml": m.get("lesion_volume_ml"),
                "lung_volume_ml": m.get("lung_volume_ml"), "percent_involved": m.get("percent_involved")}
    return row


def _read_ahead(studies: list[Study], workers: int | None) -> Iterator[tuple[Study, object, float, str]]:
    """(study, scan or None, seconds reading, problem) in order, read by ``workers`` processes ahead."""
    workers = default_workers() if workers is None else workers
    if workers <= 0:
        for study in studies:
            yield (study, *_read(study))
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = []
        queue = iter(studies)
        for study in queue:
            pending.append((study, pool.submit(_read, study)))
            if len(pending) >= workers * READ_AHEAD:
                break
        while pending:
            study, future = pending.pop(0)
            for following in queue:
                pending.append((following, pool.submit(_read, following)))
                break
            try:
                yield (study, *future.result())
            except Exception as exc:  # noqa: BLE001  (a reader process that died: that study fails, not the run)
                yield study, None, 0.0, f"{study.key}: could not be read ({type(exc).__name__}: {exc})."


def default_workers() -> int:
    """Reading processes: the cores beside the one running the models, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _read(study: Study):
    from covidlens.data.io import read_scan

    if study.problem:
        return None, 0.0, study.problem
    started = time.perf_counter()
    try:
        scan = read_scan(study.path)
    except CovidlensError as exc:
        return None, time.perf_counter() - started, f"{study.key}: {exc}"
    return scan, round(time.perf_counter() - started, 3), ""


def _finished_folder(folder: Path, study: Study) -> dict | None:
    """The CSV row of a finished result of ``study`` in ``folder``; None when it is not one."""
    try:
        record = json.loads((folder / outputs.RESULT).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("tool") != outputs.TOOL or record.get("study", {}).get("key") != study.key:
        return None
    return _row(study, record, record.get("error", ""), time.perf_counter())


def _remove_partials(out: Path) -> None:
    for path in out.iterdir():
        if path.is_dir() and path.name.startswith(".") and (".partial-" in path.name or ".old-" in path.name):
            shutil.rmtree(path, ignore_errors=True)


def _read_ledger(path: Path) -> dict[str, dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill: that study is screened again
            if isinstance(row, dict) and "key" in row:
                done[row["key"]] = row
    return done


def _end_cut_line(ledger: Path) -> None:
    """End a last line cut by a kill, so that the next row is not glued onto it and lost with it."""
    if ledger.exists() and ledger.stat().st_size and not ledger.read_bytes().endswith(b"\n"):
        with ledger.open("a") as handle:
            handle.write("\n")


def _append(ledger: Path, row: dict) -> None:
    with ledger.open("a") as handle:
        handle.write(json.dumps(row, allow_nan=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def model_cards(out: Path, models: ScreenModels) -> list[dict]:
    """The models of this run for the index, each store model's ``card.md`` copied to ``cards/ROLE.md``
    so that the output folder keeps its links when it is moved."""
    found = []
    for role, m in models.describe().items():
        path = Path(m["path"])
        card = (path if path.is_dir() else path.parent) / "card.md"
        href = ""
        if card.is_file():
            (out / "cards").mkdir(exist_ok=True)
            _atomic(out / "cards" / f"{role}.md", card.read_text())
            href = f"cards/{role}.md"
        found.append({"role": role, "architecture": m["architecture"], "path": m["path"], "card": href})
    return found


def write_table(out: Path, models: list[dict] = ()) -> list[dict]:
    """``results.csv`` and ``index.html`` from every ledger in ``out`` (all shards), one row per study;
    ``models`` (:func:`model_cards`) are listed on the index with links to their cards."""
    rows: dict[str, dict] = {}
    for ledger in sorted(out.glob("screen-ledger*.jsonl")):
        rows |= _read_ledger(ledger)
    ordered = [rows[k] for k in sorted(rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(ordered)
    _atomic(out / CSV_NAME, buffer.getvalue())
    _atomic(out / INDEX_NAME, outputs.index_html(ordered, models=list(models)))
    return ordered


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
