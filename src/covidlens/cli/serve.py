"""``covidlens serve``: the web page and JSON API (FastAPI + uvicorn) over trained checkpoints."""

from __future__ import annotations

from covidlens.errors import CovidlensError


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="web page and REST API: drop a scan, see verdict, heat map and lesions")
    p.add_argument("--ct-checkpoint", help="CT classifier checkpoint folder (RUN/model); with none of the four "
                   "checkpoint flags, every model installed in the store (covidlens models list)")
    p.add_argument("--cxr-checkpoint", help="chest X-ray classifier checkpoint folder")
    p.add_argument("--lesion-checkpoint",
                   help="CT lesion segmentation checkpoint folder (enables segment and quantify; the CT verdict of "
                        "screen rests on it)")
    p.add_argument("--cxr-lung-checkpoint",
                   help="chest X-ray lung model (background, lung): screen masks radiographs with it, as covidlens screen")
    p.add_argument("--backend", choices=["torch", "onnxruntime"],
                   help="engine for the classifiers in predict and screen: torch, or onnxruntime (the classifiers are "
                        "exported in memory at start-up; explain, segment, quantify and heat maps run PyTorch) "
                        "(default onnxruntime where it is installed, else torch)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1, this machine only; 0.0.0.0 opens it to the network "
                        "and needs --token-file or --no-auth)")
    access = p.add_mutually_exclusive_group()
    access.add_argument("--token-file", metavar="PATH",
                        help="file holding a secret token (at least 16 characters) that every API request must send "
                             "as 'Authorization: Bearer <token>'; the page asks for it once")
    access.add_argument("--no-auth", action="store_true",
                        help="serve beyond loopback without authentication; the page and the log say so")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="inference worker threads, each with its own models (default 1)")
    p.add_argument("--queue", type=int, default=8,
                   help="requests that may wait for a worker; more are answered 503 with Retry-After (default 8)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds a request may take before it gets 504 (default 120)")
    p.add_argument("--max-upload-mb", type=float, default=256.0, help="largest request body in MiB (default 256)")
    p.add_argument("--max-files", type=int, default=1000,
                   help="most files in one upload, e.g. the slices of a series (default 1000)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info",
                   help="how much the server logs (default info: start, stop, and per upload its size, type and time)")
    p.set_defaults(run=run)


def run(args) -> int:
    from covidlens.cli.common import screen_models_or_store
    from covidlens.screening.road import default_backend
    from covidlens.serve import ServeConfig, run_server
    from covidlens.serve.server import read_token_file
    from covidlens.serve.uploads import UploadLimits

    if not 0 < args.port < 65536:
        raise CovidlensError(f"--port must be between 1 and 65535, not {args.port}.")
    if args.workers < 1 or args.queue < 0 or args.timeout <= 0 or args.max_upload_mb <= 0 or args.max_files < 1:
        raise CovidlensError("--workers and --max-files must be at least 1, --queue at least 0, and --timeout and "
                             "--max-upload-mb above 0.")
    chosen = screen_models_or_store(args.lesion_checkpoint, args.ct_checkpoint, args.cxr_lung_checkpoint,
                                    args.cxr_checkpoint)
    config = ServeConfig(
        ct_checkpoint=chosen.get("ct"), cxr_checkpoint=chosen.get("cxr"), lesion_checkpoint=chosen.get("lesion"),
        cxr_lung_checkpoint=chosen.get("cxr_lungs"), workers=args.workers, queue_size=args.queue,
        request_timeout_s=args.timeout, backend=args.backend or default_backend(),
        limits=UploadLimits(max_bytes=int(args.max_upload_mb * (1 << 20)), max_files=args.max_files),
        token=read_token_file(args.token_file) if args.token_file else None,
    )
    run_server(config, host=args.host, port=args.port, log_level=args.log_level, no_auth=args.no_auth)
    return 0
