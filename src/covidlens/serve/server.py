"""Running the app with uvicorn: models loaded before the port opens, graceful shutdown on SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import os

from covidlens.serve.app import ServeConfig, create_app

#: Seconds uvicorn waits for requests in flight after a stop signal before closing them.
GRACEFUL_SHUTDOWN_S = 30


def run_server(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve until stopped. A stop signal closes the port, lets requests in flight finish (up to
    :data:`GRACEFUL_SHUTDOWN_S`), then the pool finishes its queue and the process exits."""
    import torch
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.workers > 1:
        # Each worker computes on its own share of the cores instead of all workers fighting for all of them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, limit_concurrency=4 * (config.workers + config.queue_size) + 16,
    ))
    shown = f"[{host}]" if ":" in host else host
    print(f"covidlens serve: http://{shown}:{port}/ (models: {', '.join(app.state.models.ids())}); Ctrl+C stops it",
          flush=True)
    server.run()
