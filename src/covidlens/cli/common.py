"""Arguments that several command groups share, and how batch commands report partial failure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from covidlens.errors import CovidlensError


def add_data_args(parser: argparse.ArgumentParser, default: str | None = "covid-ct", default_help: str = "") -> None:
    parser.add_argument(
        "--data", default=default,
        help="data set: a registered name (see 'covidlens data list'), a folder of class folders, or a CSV table"
        + (f" (default {default})" if default else f" (default {default_help})" if default_help else ""),
    )
    parser.add_argument("--data-root", default=None,
                        help="folder holding the registered data sets (default: $COVIDLENS_DATA)")


def check_output_folder(*targets: str | None) -> None:
    """Refuse, before any work, an output file whose folder does not exist."""
    for target in targets:
        if target and not Path(target).resolve().parent.is_dir():
            raise CovidlensError(f"cannot write {target}: its folder does not exist.")


def batch_status(failed: int, total: int, what: str = "files") -> int:
    """Exit status of a batch: 0 when every input worked, 1 when some failed (said on stderr)."""
    if failed:
        print(f"covidlens: {failed} of {total} {what} could not be read; their rows carry the reason.", file=sys.stderr)
        return 1
    return 0


def checkpoint_or_store(given: str | None, name: str) -> str:
    """The checkpoint the user gave, else the store's installed model ``name`` (said on stdout)."""
    if given:
        return given
    from covidlens.store import installed_checkpoint

    path = installed_checkpoint(name)
    print(f"model {name}: {path} (from the store; --checkpoint chooses another)")
    return str(path)


def screen_models_or_store(lesion: str | None, ct: str | None, cxr_lungs: str | None, cxr: str | None) -> dict:
    """The screen road's checkpoints as given, or, when none is, every model installed in the store."""
    given = {"lesion": lesion, "ct": ct, "cxr_lungs": cxr_lungs, "cxr": cxr}
    if any(given.values()):
        return given
    from covidlens.store.store import installed_screen_models, store_root

    found = installed_screen_models()
    print(f"no checkpoint given: the store's models ({store_root()}) for {', '.join(found)}")
    return found
