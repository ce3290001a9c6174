"""``covidlens export``: a checkpoint as an ONNX file for ONNX Runtime (and other engines)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a checkpoint as an ONNX file (dynamic batch) with its description")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (model.safetensors + model.json)")
    p.add_argument("--out", required=True, help="ONNX file to write (NAME.onnx; NAME.onnx.json is written beside it)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="output format (default onnx, the only one)")
    p.set_defaults(run=run)


def run(args) -> int:
    from covidlens.runtime import export_onnx

    result = export_onnx(args.checkpoint, args.out)
    print(f"wrote {result.onnx} and {result.sidecar.name} (ONNX Runtime matches PyTorch within "
          f"{result.max_abs_diff:.1e} on a random batch)")
    return 0
