"""The web service: a JSON API under ``/v1`` and a page at ``/`` over the same library functions as the CLI.

``covidlens serve`` runs it with uvicorn; :func:`create_app` builds the FastAPI app for tests or for
another ASGI server. docs/serving.md describes the endpoints, limits and deployment.
"""

from covidlens.serve.app import ServeConfig, create_app
from covidlens.serve.server import run_server

__all__ = ["ServeConfig", "create_app", "run_server"]
