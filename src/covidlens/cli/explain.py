"""``covidlens explain``: CAM, Grad-CAM and Grad-CAM++ heat maps for image files or folders."""

from __future__ import annotations

import sys
from pathlib import Path

from covidlens.cli.common import batch_status, checkpoint_or_store


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="heat maps (CAM, Grad-CAM, Grad-CAM++) for image files or folders")
    p.add_argument("paths", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files or folders of images")
    p.add_argument("--checkpoint",
                   help="checkpoint folder (model.safetensors + model.json) (default: the store's ct-classifier)")
    p.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++", "cam"],
                   help="explanation method (default gradcam)")
    p.add_argument("--out", required=True, help="folder for the PNG panels (and index.html for several images)")
    p.add_argument("--target-layer", help="layer to explain (default: the model's registered one)")
    p.add_argument("--class", dest="target_class", help="class to explain, by name or index (default: the decided one)")
    p.add_argument("--npy", action="store_true", help="also save each raw map as .npy")
    p.add_argument("--no-modality-check", action="store_true",
                   help="explain images even when they do not look like the model's modality (CT slice or chest X-ray)")
    p.set_defaults(run=run)


def run(args) -> int:
    from covidlens.checkpoint import load_checkpoint
    from covidlens.explain.render import explain_files

    ckpt = load_checkpoint(checkpoint_or_store(args.checkpoint, "ct-classifier"))
    written, failed = explain_files(ckpt, args.paths, args.out, args.method, args.target_layer, args.target_class, args.npy,
                                    check_modality=not args.no_modality_check)
    for _, png in written:
        print(png)
    for path, reason in failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if (Path(args.out) / "index.html").is_file():
        print(f"gallery: {Path(args.out) / 'index.html'}")
    return batch_status(len(failed), len(written) + len(failed))
