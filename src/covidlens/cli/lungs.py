"""``covidlens lungs``: lung masks of chest X-rays (stage 1 of segment-then-classify)."""

from __future__ import annotations

import sys

from covidlens.cli.common import batch_status, check_output_folder, checkpoint_or_store


def add_parser(sub) -> None:
    p = sub.add_parser("lungs", help="lung masks, overlays and lung area fractions of chest X-rays")
    p.add_argument("paths", nargs="+", metavar="IMAGE_OR_FOLDER", help="chest X-ray files or folders of them")
    p.add_argument("--checkpoint",
                   help="lung segmentation checkpoint folder (RUN/model, trained with configs/cxr_lungs_unet.yaml) "
                        "(default: the store's cxr-lungs)")
    p.add_argument("--out", required=True, help="folder for masks/ (0/255 PNG), overlays/, lungs.csv and index.html")
    p.add_argument("--no-modality-check", dest="check_modality", action="store_false",
                   help="segment every image, even one the modality check does not find to be a chest X-ray")
    p.set_defaults(run=run)


def run(args) -> int:
    from covidlens.segmentation.lungs import PLAUSIBLE_FRACTION, lungs_files

    check_output_folder(args.out)
    results = lungs_files(checkpoint_or_store(args.checkpoint, "cxr-lungs"), args.paths, args.out, check_modality=args.check_modality)
    for r in results:
        if r.refused:
            print(f"refused {r.path}: {r.error}", file=sys.stderr)
        elif r.error:
            print(f"skipped {r.path}: {r.error}", file=sys.stderr)
        else:
            flag = "" if r.plausible else (f"  (outside the plausible {PLAUSIBLE_FRACTION[0]:.0%}-"
                                           f"{PLAUSIBLE_FRACTION[1]:.0%}: check the overlay)")
            print(f"{r.path}  lungs {r.lung_fraction:.1%}{flag}  {r.overlay_png}")
    print(f"gallery: {args.out}/index.html")
    refused = sum(r.refused for r in results)
    if refused:
        print(f"covidlens: {refused} of {len(results)} images were refused by the modality check (the lung model "
              "reads chest X-rays); --no-modality-check segments them anyway.", file=sys.stderr)
    return max(batch_status(sum(1 for r in results if r.error and not r.refused), len(results)), int(bool(refused)))
