"""Benchmark: ``covidlens serve`` under load on loopback, the measurement of issue 12.

    python benchmarks/serve_load.py --ct-checkpoint RUN/model --out reports/serve_load \
        [--clients 16] [--seconds 60] [--endpoints predict explain] [--data-root ../shared/data]

Starts ``covidlens serve`` as its own process on a free 127.0.0.1 port (or uses ``--url`` of one
already running), waits for /readyz, then for each endpoint runs ``--clients`` concurrent asyncio
clients (httpx) for ``--seconds``, each posting real COVID-CT test slices (both classes, read once into
memory) one after another. Every request counts: its latency from send to full answer, and as an
error anything but 200 (a 503 from a full queue included). Bounded in time and count, loopback only;
it stops the server it started.

The server is started with a queue deep enough for every client (``--queue`` = clients), so that a
503 means overload rather than the queue bound doing its job; pass ``--queue`` to measure that too.

Writes ``serve_load.json`` and ``serve_load.md`` to ``--out``: per endpoint requests, requests/s,
p50 / p95 / p99 / max latency and errors by status, with the command and the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

#: Requests per client per endpoint at most, whatever --seconds says (keeps the loop bounded).
MAX_REQUESTS_PER_CLIENT = 5000
#: Untimed requests per endpoint before measuring (first Grad-CAM call, allocator warm-up).
WARMUP = 4


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ct-checkpoint", help="CT classifier for the server this script starts")
    p.add_argument("--url", help="measure a server already running here instead of starting one (loopback only)")
    p.add_argument("--data-root", default=os.environ.get("COVIDLENS_DATA", "../shared/data"))
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60.0, help="measured time per endpoint")
    p.add_argument("--endpoints", nargs="+", default=["predict", "explain"], choices=["predict", "explain"])
    p.add_argument("--images", type=int, default=32, help="distinct test slices cycled through (half COVID)")
    p.add_argument("--workers", type=int, default=1, help="server inference workers")
    p.add_argument("--queue", type=int, help="server queue size (default: --clients)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch", help="the server's predict engine")
    p.add_argument("--out", default="reports/serve_load")
    return p.parse_args(argv)


def test_slices(root: Path, count: int) -> list[bytes]:
    ct = root / "ct" / "covid-ct"
    if not ct.is_dir():
        sys.exit(f"serve_load: COVID-CT not found under {root}; pass --data-root.")
    chosen = []
    for cls in ("COVID", "NonCOVID"):
        names = (ct / "splits" / cls / f"testCT_{cls}.txt").read_text().split()
        chosen += [(ct / f"CT_{cls}" / n).read_bytes() for n in names[: count // 2]]
    return chosen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "covidlens.cli", "serve", "--ct-checkpoint", args.ct_checkpoint,
               "--port", str(port), "--workers", str(args.workers), "--queue", str(args.queue), "--backend", args.backend,
               "--log-level", "warning"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"serve_load: the server exited with status {server.returncode} before it was ready.")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.terminate()
    sys.exit("serve_load: the server was not ready after 180 s.")


async def client(http: httpx.AsyncClient, endpoint: str, images: list[bytes], offset: int, stop_at: float,
                 results: list) -> None:
    for k in range(MAX_REQUESTS_PER_CLIENT):
        if time.perf_counter() >= stop_at:
            return
        image = images[(offset + k) % len(images)]
        start = time.perf_counter()
        try:
            response = await http.post(f"/v1/{endpoint}", files={"file": ("slice.png", image, "image/png")})
            status = response.status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        results.append((time.perf_counter() - start, status))


async def measure(url: str, endpoint: str, images: list[bytes], clients: int, seconds: float) -> dict:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        for i in range(WARMUP):
            await http.post(f"/v1/{endpoint}", files={"file": ("slice.png", images[i % len(images)], "image/png")})
        results: list = []
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(client(http, endpoint, images, i * 7, stop_at, results) for i in range(clients)))
        elapsed = time.perf_counter() - start
    latencies = np.array([t for t, s in results if s == 200]) if results else np.zeros(0)
    errors: dict[str, int] = {}
    for _, status in results:
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1

    def pct(q):
        return float(np.percentile(latencies, q)) if latencies.size else None

    return {
        "endpoint": endpoint, "clients": clients, "seconds": round(elapsed, 2), "requests": len(results),
        "ok": int(latencies.size), "requests_per_s": len(results) / elapsed if elapsed else 0.0,
        "p50_s": pct(50), "p95_s": pct(95), "p99_s": pct(99),
        "max_s": float(latencies.max()) if latencies.size else None,
        "errors": errors, "error_count": sum(errors.values()),
    }


def markdown(report: dict) -> str:
    lines = [
        "# covidlens serve under load (loopback)", "",
        f"Command: `{report['command']}`", "",
        f"Server: {report['server']}. Machine: {report['cpus']} CPU cores, load average "
        f"{report['load_before']} before the run. Images: {report['images']} COVID-CT test slices.", "",
        "| endpoint | clients | s | requests | req/s | p50 s | p95 s | p99 s | max s | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        shown = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"

        def f(v):
            return "-" if v is None else f"{v:.3f}"

        lines.append(f"| {r['endpoint']} | {r['clients']} | {r['seconds']:.0f} | {r['requests']} | "
                     f"{r['requests_per_s']:.1f} | {f(r['p50_s'])} | {f(r['p95_s'])} | {f(r['p99_s'])} | "
                     f"{f(r['max_s'])} | {shown} |")
    lines += ["", "Latency is from sending the upload to the whole answer; every status but 200 is an error."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.queue is None:
        args.queue = args.clients
    if args.url is None and not args.ct_checkpoint:
        sys.exit("serve_load: pass --ct-checkpoint (a server is started) or --url of a running one.")
    if args.url and not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        sys.exit("serve_load: --url must be a loopback address; this benchmark sends traffic only to this machine.")
    images = test_slices(Path(args.data_root), args.images)
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    server = None
    if args.url:
        url, described = args.url.rstrip("/"), f"already running at {args.url}"
    else:
        server, url = start_server(args)
        described = f"covidlens serve, {args.ct_checkpoint}, {args.workers} worker(s), queue {args.queue}"
    try:
        results = []
        for endpoint in args.endpoints:
            result = asyncio.run(measure(url, endpoint, images, args.clients, args.seconds))
            results.append(result)
            print(f"{endpoint}: {result['requests']} requests, {result['requests_per_s']:.1f}/s, "
                  f"p50 {result['p50_s']}, p99 {result['p99_s']} s, errors {result['errors'] or 0}", flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(60)
    report = {
        "command": " ".join(["python", "benchmarks/serve_load.py", *(argv if argv is not None else sys.argv[1:])]),
        "server": described, "cpus": os.cpu_count(), "load_before": load_before, "images": len(images),
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "serve_load.md").write_text(markdown(report))
    print(f"written: {out / 'serve_load.md'}, {out / 'serve_load.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
