"""The ``covidlens`` command: one module per command group, each only parsing arguments and calling
the library (the web service calls the same functions).

Errors a user can cause arrive as :class:`~covidlens.errors.CovidlensError` and leave as one line on
stderr with exit status 2; batch commands exit 1 when some inputs failed and say how many.
"""

from __future__ import annotations

import argparse
import sys

from covidlens.cli import (benchmark, calibrate, data, evaluate, explain, export, lungs, models, predict, quantify, screen, segment,
                           serve, train)
from covidlens.errors import CovidlensError

#: Command groups in the order ``covidlens --help`` lists them.
GROUPS = (screen, train, evaluate, calibrate, predict, explain, segment, lungs, quantify, serve, export, benchmark, models, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="covidlens",
        description="Screen chest CT and X-ray images for COVID-19: train, evaluate, predict, explain, segment lesions.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CovidlensError as exc:
        print(f"covidlens: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output path that cannot be written, a full disk
        print(f"covidlens: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("covidlens: interrupted", file=sys.stderr)
        return 130
