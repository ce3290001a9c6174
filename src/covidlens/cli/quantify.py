"""``covidlens quantify``: lesion and lung volume, percent of lung involved and severity of one CT scan."""

from __future__ import annotations

from covidlens.cli.common import checkpoint_or_store
from covidlens.errors import CovidlensError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "quantify",
        help="lesion and lung volume, percent involved and CT-0..CT-4 severity of a CT volume, series or slice",
    )
    p.add_argument("scan", metavar="SCAN",
                   help="a NIfTI volume, a folder holding one DICOM series, or one DICOM/PNG/JPEG CT slice")
    p.add_argument("--checkpoint", help="lesion segmentation checkpoint folder (RUN/model) (default: the store's ct-lesions)")
    p.add_argument("--out", required=True,
                   help="output folder (new, empty, or a previous quantify output): slices.csv, summary.json, overlays/")
    p.add_argument("--lung-mask", help="use this lung mask file (same grid as SCAN) instead of the classical one")
    p.add_argument("--slices", metavar="START:STOP", help="measure only slices START..STOP-1 of a volume")
    p.add_argument("--require-mm", action="store_true",
                   help="refuse a scan without pixel spacing instead of reporting pixels")
    p.add_argument("--overlays", type=int, default=6, help="overlay PNGs of the most affected slices (default 6)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _slice_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        start, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise CovidlensError(f"--slices takes START:STOP (whole numbers, e.g. 40:80), not {text!r}.") from None
    return start, stop


def run(args) -> int:
    from covidlens.measure.quantify import format_summary, quantify_scan

    if args.overlays < 0:
        raise CovidlensError(f"--overlays must be 0 or more, not {args.overlays}.")
    result = quantify_scan(
        args.scan, checkpoint_or_store(args.checkpoint, "ct-lesions"), args.out, lung_mask=args.lung_mask, slice_range=_slice_range(args.slices),
        require_mm=args.require_mm, progress=not args.no_progress, max_overlays=args.overlays,
    )
    print(f"{result.scan}: {result.n_slices} slice(s)")
    print(format_summary(result))
    print(f"written: {result.out_dir} (slices.csv, summary.json, {len(result.overlays)} overlay(s))")
    return 0
