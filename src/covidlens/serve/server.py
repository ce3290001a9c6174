"""Running the app with uvicorn: models loaded before the port opens, graceful shutdown on SIGINT/SIGTERM,
and no listening beyond this machine without a token unless the caller says so."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
from pathlib import Path

from covidlens.errors import CovidlensError
from covidlens.serve.app import ServeConfig, create_app

#: Seconds uvicorn waits for requests in flight after a stop signal before closing them.
GRACEFUL_SHUTDOWN_S = 30
#: Shortest token accepted: guessing 16 random characters over HTTP is hopeless.
MIN_TOKEN_CHARS = 16
_MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve to any interface
        return False


def read_token_file(path: str | os.PathLike) -> str:
    """The bearer token in ``path`` (surrounding whitespace dropped), or one sentence saying what is wrong."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
        raise CovidlensError(f"cannot read the token file {path} ({reason}); give a readable file holding the "
                             f"token, e.g. made with {_MAKE_TOKEN}.") from None
    if not token:
        raise CovidlensError(f"the token file {path} is empty; write a token of at least {MIN_TOKEN_CHARS} "
                             f"characters into it, e.g. with {_MAKE_TOKEN}.")
    if len(token) < MIN_TOKEN_CHARS:
        raise CovidlensError(f"the token in {path} has {len(token)} characters, fewer than the {MIN_TOKEN_CHARS} "
                             f"required; make a longer one, e.g. with {_MAKE_TOKEN}.")
    if not all("!" <= c <= "~" for c in token):
        raise CovidlensError(f"the token in {path} must be one line of printable ASCII without spaces, as an HTTP "
                             f"header carries it; make one with {_MAKE_TOKEN}.")
    return token


def run_server(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
               no_auth: bool = False) -> None:
    """Serve until stopped. A stop signal closes the port, lets requests in flight finish (up to
    :data:`GRACEFUL_SHUTDOWN_S`), then the pool finishes its queue and the process exits.

    Beyond loopback, ``config.token`` is required unless ``no_auth`` says to serve without one; then the
    page and the log say so.
    """
    if config.token is None and not is_loopback(host):
        if not no_auth:
            raise CovidlensError(f"--host {host} lets other machines use this server, so give --token-file FILE "
                                 "with a secret token, or --no-auth to serve without authentication anyway.")
        config = dataclasses.replace(config, unauthenticated_host=host)

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
