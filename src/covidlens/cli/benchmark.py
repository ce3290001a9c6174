"""``covidlens benchmark``: images/s and latency of registered models after warm-up, as a table and JSON."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path

from covidlens.cli.common import check_output_folder


def add_parser(sub) -> None:
    p = sub.add_parser("benchmark", help="images/s and per-image latency of registered models (random weights)")
    p.add_argument("--model", nargs="+", required=True, metavar="NAME", help="registered model(s), see 'covidlens models'")
    p.add_argument("--input-size", type=int, help="square input side in pixels (default: each model's own)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch", help="engine (default torch)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: the engine's, one per core)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs (default cpu)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format (torch backend)")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured batches first (default 5)")
    p.add_argument("--iters", type=int, default=20, help="measured batches (default 20)")
    p.add_argument("--json", help="write the results (and the machine they ran on) as JSON here")
    p.set_defaults(run=run)


def run(args) -> int:
    import torch

    from covidlens.runtime.benchmark import benchmark_model

    check_output_folder(args.json)
    print(f"{'model':<26} {'backend':<11} {'device':<6} {'size':>4} {'batch':>5} {'GMACs':>7} "
          f"{'img/s':>8} {'ms/img':>8} {'ms/batch':>9}")
    results = []
    for name in args.model:
        r = benchmark_model(name, args.input_size, args.batch_size, args.backend, args.threads, args.device,
                            args.channels_last, args.warmup, args.iters)
        results.append(r)
        print(f"{r.model:<26} {r.backend:<11} {r.device:<6} {r.input_size:>4} {r.batch_size:>5} {r.gmacs:>7.2f} "
              f"{r.images_per_s:>8.1f} {r.ms_per_image:>8.2f} {r.ms_per_batch:>9.1f}", flush=True)
    if args.json:
        machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                   "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
        if args.backend == "onnxruntime":
            import onnxruntime

            machine["onnxruntime"] = onnxruntime.__version__
        Path(args.json).write_text(json.dumps({"machine": machine, "results": [asdict(r) for r in results]},
                                              indent=2) + "\n")
    return 0
