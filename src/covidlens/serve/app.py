"""The FastAPI application: the JSON API under ``/v1``, health checks, and the page at ``/``.

``create_app`` loads the models once (a bad checkpoint stops start-up with one sentence), and the
app's lifespan starts the worker pool and, at shutdown, lets it finish what it holds. Each upload
endpoint admits the request first (503 with Retry-After when the pool is full, before the body is
read), receives the body under the upload limits, and hands it to a worker with a time limit. With a
token, :class:`BearerTokenGate` answers 401 before any of that to a request that does not carry it.
"""

from __future__ import annotations

import hmac
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import covidlens
from covidlens.data.io import MAX_PIXELS
from covidlens.errors import CovidlensError
from covidlens.serve import pipeline, schemas
from covidlens.serve.errors import ApiError, UploadAborted
from covidlens.serve.pool import Batchable, InferencePool, JobTimeout, QueueFull
from covidlens.serve.uploads import MIN_SIDE, UploadLimits, receive_upload

log = logging.getLogger("covidlens.serve")

#: The page and its two assets, served from the package; nothing is fetched from elsewhere.
_STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
           "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/static/app.css": ("app.css", "text/css; charset=utf-8")}
# The page runs only its own script and styles and shows only images it made from data: URLs.
_PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")


@dataclass
class ServeConfig:
    ct_checkpoint: str | None = None
    cxr_checkpoint: str | None = None
    lesion_checkpoint: str | None = None
    #: The chest X-ray lung model (background, lung) /v1/screen masks radiographs with.
    cxr_lung_checkpoint: str | None = None
    workers: int = 1
    queue_size: int = 8
    #: Seconds a request may wait and run before it is answered 504.
    request_timeout_s: float = 120.0
    limits: UploadLimits = field(default_factory=UploadLimits)
    #: Engine for the classifiers in predict and screen: "torch" or "onnxruntime" (explain, segment, quantify
    #: and the heat maps of screen run PyTorch).
    backend: str = "torch"
    #: The secret every request but the page and the health checks must send as ``Authorization: Bearer``;
    #: None: no authentication.
    token: str | None = field(default=None, repr=False)
    #: The address the server listens on without a token beyond loopback, which the page and the log warn
    #: about (set by :func:`covidlens.serve.server.run_server` for ``--no-auth``).
    unauthenticated_host: str | None = None


_ERRORS = {status: {"model": schemas.ErrorResponseV1} for status in (400, 401, 404, 413, 415, 422, 500, 503, 504)}


def create_app(config: ServeConfig, models: pipeline.ServedModels | None = None) -> FastAPI:
    """The app for ``config``; ``models`` already loaded may be passed instead of the checkpoint paths."""
    served = models or pipeline.ServedModels.load(config.ct_checkpoint, config.cxr_checkpoint, config.lesion_checkpoint,
                                                  config.backend, config.cxr_lung_checkpoint)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.pool = InferencePool(lambda i: served if i == 0 else served.replicate(), config.workers,
                                       config.queue_size)
        if config.unauthenticated_host:
            log.warning(_no_auth_warning(config.unauthenticated_host))
        log.info("covidlens serve ready: models %s, %d worker(s), queue %d", ", ".join(served.ids()),
                 config.workers, config.queue_size)
        try:
            yield
        finally:
            app.state.pool.shutdown()
            log.info("covidlens serve stopped")

    app = FastAPI(
        title="covidlens",
        version=covidlens.__version__,
        summary="Screen chest CT and X-ray images for COVID-19, explain with Grad-CAM, measure lesions. "
        "A research screening aid, not a diagnosis.",
        lifespan=lifespan,
    )
    app.state.models = served
    app.state.config = config
    # The cards of the store models this server holds, read once with the models: a request only picks one
    # of these by name and never reaches the file system.
    cards = {name: path.read_text(encoding="utf-8") for name, path in served.cards().items()}
    card_paths = {f"/v1/models/{name}/card" for name in cards}
    if config.token is not None:
        # Cards describe the models (no scan, no result), and the page links them as plain links.
        app.add_middleware(BearerTokenGate, token=config.token,
                           open_paths={*_STATIC, *card_paths, "/config", "/healthz", "/readyz", app.docs_url,
                                       app.redoc_url, app.swagger_ui_oauth2_redirect_url, app.openapi_url})
    _add_error_handlers(app)
    _add_pages(app)

    @app.get("/config", include_in_schema=False)
    async def page_config() -> dict:
        """What the page needs before its first API call: whether to ask for a token, and a warning to show."""
        warning = _no_auth_warning(config.unauthenticated_host) if config.unauthenticated_host else None
        return {"auth_required": config.token is not None, "warning": warning}

    @app.get("/healthz", response_model=schemas.HealthV1, tags=["health"])
    async def healthz() -> schemas.HealthV1:
        """The process is up."""
        return schemas.HealthV1(status="ok")

    @app.get("/readyz", response_model=schemas.HealthV1, responses={503: {"model": schemas.HealthV1}}, tags=["health"])
    async def readyz(request: Request):
        """Models are loaded and the pool takes requests (503 while starting or shutting down)."""
        pool = getattr(request.app.state, "pool", None)
        if pool is None or not pool.accepting:
            return JSONResponse(schemas.HealthV1(status="not-ready", detail="starting or shutting down").model_dump(),
                                status_code=503)
        detail = f"{pool.admitted} of {pool.capacity} request slots in use"
        return schemas.HealthV1(status="ready", detail=detail)

    @app.get("/v1/models", response_model=schemas.ModelsResponseV1, tags=["models"])
    async def list_models() -> schemas.ModelsResponseV1:
        """The models this server holds, and its upload limits."""
        return schemas.ModelsResponseV1(
            models=served.describe(),
            limits={"max_upload_bytes": config.limits.max_bytes, "max_files": config.limits.max_files,
                    "max_pixels": MAX_PIXELS, "min_side": MIN_SIDE},
        )

    @app.get("/v1/models/{name}/card", response_class=Response, tags=["models"],
             responses={200: {"content": {"text/plain": {}}}, 404: {"model": schemas.ErrorResponseV1}})
    async def model_card(name: str) -> Response:
        """The model card (Markdown, generated by covidlens models build) of a store model this server holds."""
        text = cards.get(name)
        if text is None:
            shown = name if len(name) <= 40 and name.isprintable() else name[:40].encode("unicode_escape").decode()
            held = ", ".join(sorted(cards)) or "none (its models are not store models with cards)"
            raise ApiError(404, "no_card", f"This server holds no store model {shown!r} with a card; the cards here: "
                           f"{held}.")
        return Response(text, media_type="text/plain; charset=utf-8",
                        headers={"Content-Security-Policy": "default-src 'none'; sandbox",
                                 "X-Content-Type-Options": "nosniff"})

    upload_body = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"},
                                "description": "the scan: one PNG, JPEG, DICOM or NIfTI file, or every DICOM "
                                               "slice of one series (repeat the field)"}}}}}}}

    Modality = Query(None, description="ct or cxr, for files that do not say (PNG, JPEG)")
    Model = Query(None, description="a model id from GET /v1/models; default: the one for the modality")
    Point = Query("default", description="default: the model's threshold; sensitivity: the validation-chosen one")

    @app.post("/v1/screen", response_model=schemas.ScreenResponseV1, responses=_ERRORS,
              openapi_extra=upload_body, tags=["screening"])
    async def screen(request: Request, modality: Literal["ct", "cxr"] | None = Query(
                         None, description="ct or cxr: read the study as this modality, overruling the file and the "
                         "modality check (the result says so), as covidlens screen --modality"),
                     operating_point: Literal["default", "sensitivity"] = Query(
                         "default", description="default or sensitivity (fewer missed studies, more false alarms), "
                         "as covidlens screen --operating-point")):
        """One study (an image, a DICOM series, a NIfTI volume) screened as covidlens screen does: the verdict and
        its rule, the measures, what was not done, key slices with lesion and heat overlays, and a volume's slice
        strip."""
        options = pipeline.Options(modality=modality, operating_point=operating_point)
        return await _serve(request, "screen", None, pipeline.screen_job, options)

    @app.post("/v1/predict", response_model=schemas.PredictResponseV1, responses=_ERRORS,
              openapi_extra=upload_body, tags=["screening"])
    async def predict(request: Request, model: str | None = Model, modality: Literal["ct", "cxr"] | None = Modality,
                      operating_point: Literal["default", "sensitivity"] = Point):
        """Class probabilities and the decision at the operating point; a volume's score is the study score of
        covidlens screen's CT classifier stage."""
        options = pipeline.Options(model=model, modality=modality, operating_point=operating_point)
        return await _serve(request, "predict", "classifier", PREDICT, options)

    @app.post("/v1/explain", response_model=schemas.ExplainResponseV1, responses=_ERRORS,
              openapi_extra=upload_body, tags=["screening"])
    async def explain(request: Request, model: str | None = Model, modality: Literal["ct", "cxr"] | None = Modality,
                      operating_point: Literal["default", "sensitivity"] = Point,
                      method: Literal["gradcam", "gradcam++", "cam"] = "gradcam",
                      target_class: str | None = Query(None, description="the class to explain; default: the decision")):
        """The prediction plus a heat map of the evidence for the decided class, laid over the image."""
        options = pipeline.Options(model=model, modality=modality, operating_point=operating_point, method=method,
                                   target_class=target_class)
        return await _serve(request, "explain", "classifier", pipeline.explain_job, options)

    @app.post("/v1/segment", response_model=schemas.SegmentResponseV1, responses=_ERRORS,
              openapi_extra=upload_body, tags=["lesions"])
    async def segment(request: Request, model: str | None = Model, modality: Literal["ct", "cxr"] | None = Modality):
        """Lesion classes of one CT slice, their share of the slice and an overlay."""
        options = pipeline.Options(model=model, modality=modality)
        return await _serve(request, "segment", "lesion", pipeline.segment_job, options)

    @app.post("/v1/quantify", response_model=schemas.QuantifyResponseV1, responses=_ERRORS,
              openapi_extra=upload_body, tags=["lesions"])
    async def quantify(request: Request, model: str | None = Model, modality: Literal["ct", "cxr"] | None = Modality):
        """Lesion and lung area or volume, percent of lung involved and severity of a CT slice, series or volume."""
        options = pipeline.Options(model=model, modality=modality)
        return await _serve(request, "quantify", "lesion", pipeline.quantify_job, options)

    return app


#: Predict requests waiting together share one forward pass (see covidlens.serve.pool).
# Looked up at call time, so a test (or an embedding application) can replace either function.
PREDICT = Batchable(lambda models, *args: pipeline.predict_job(models, *args),
                    lambda models, requests: pipeline.predict_many(models, requests), max_batch=pipeline.BATCH)


async def _serve(request: Request, name: str, needs: str | None, job, options: pipeline.Options):
    """Check, admit, receive, run on a worker: the path of every upload endpoint."""
    app = request.app
    config: ServeConfig = app.state.config
    start = time.perf_counter()
    pipeline.check_request(app.state.models, options, needs)
    try:
        ticket = app.state.pool.admit()
    except QueueFull as full:
        log.info("%s refused: queue full", name)
        raise ApiError(503, "busy", f"The server is busy with {app.state.pool.capacity} scans; try again in "
                       f"{full.retry_after} s.", {"Retry-After": str(full.retry_after)}) from None
    with ticket:
        upload = await receive_upload(request, config.limits)
        log.info("%s: %s", name, upload.describe())
        try:
            result = await ticket.run(job, upload, options, timeout=config.request_timeout_s)
        except JobTimeout:
            log.warning("%s timed out after %g s", name, config.request_timeout_s)
            raise ApiError(504, "timeout", f"The scan took longer than this server allows "
                           f"({config.request_timeout_s:g} s); try a smaller upload or try again later.") from None
        except (ApiError, UploadAborted):
            raise
        except CovidlensError as exc:
            raise ApiError(422, "unreadable_upload", str(exc)) from None
        except Exception:
            log.exception("%s failed on a worker", name)
            raise ApiError(500, "internal_error", "The server failed on this scan (the error is in its log); try "
                           "again, and report it if it happens again.") from None
    log.info("%s answered in %.3f s", name, time.perf_counter() - start)
    return result


def _no_auth_warning(host: str) -> str:
    return (f"This service has no authentication and listens on {host}: anyone who can reach that address can "
            "send scans to it and read the results.")


class BearerTokenGate:
    """ASGI middleware: a request outside ``open_paths`` without ``Authorization: Bearer <token>`` gets 401.

    It runs before routing, so a refused request never reaches the pool and its body is never read; an
    endpoint added later is closed unless its path is added to ``open_paths``.
    """

    def __init__(self, app, token: str, open_paths: set[str | None]):
        if not token:
            raise ValueError("an empty token would let every request through")
        self.app = app
        self.expected = token.encode()
        self.open_paths = frozenset(path for path in open_paths if path)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        sent = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = sent.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.expected):
            return await self.app(scope, receive, send)
        if sent:
            code, challenge = "invalid_token", 'Bearer error="invalid_token"'
            message = "The access token is not this server's; send the right one as 'Authorization: Bearer <token>'."
        else:
            code, challenge = "missing_token", "Bearer"
            message = ("This server needs an access token: send it as 'Authorization: Bearer <token>' (whoever runs "
                       "the server has it).")
        log.info("%s %s -> 401 %s", scope["method"], scope["path"], code)
        await _error(401, code, message, {"WWW-Authenticate": challenge})(scope, receive, send)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = schemas.ErrorResponseV1(error=schemas.ErrorDetailV1(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        log.info("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.code)
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(UploadAborted)
    async def aborted(request: Request, exc: UploadAborted):
        log.info("%s %s: the client left before its upload was complete", request.method, request.url.path)
        return _error(400, "upload_aborted", "The upload ended before it was complete.")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
        reason = str(first.get("msg", "bad value")).rstrip(".")
        return _error(400, "bad_option", f"The parameter {where!r} is invalid: {reason}.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        messages = {404: "There is no such page or endpoint; the API is under /v1 (see /docs).",
                    405: f"{request.method} is not allowed here; the upload endpoints take POST."}
        return _error(exc.status_code, "not_found" if exc.status_code == 404 else "http_error",
                      messages.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal_error", "The server failed on this scan (the error is in its log); try again, "
                      "and report it if it happens again.")


def _add_pages(app: FastAPI) -> None:
    package = resources.files("covidlens.serve") / "static"
    pages = {route: ((package / name).read_bytes(), media) for route, (name, media) in _STATIC.items()}

    def page(route: str):
        body, media = pages[route]

        async def serve_page() -> Response:
            return Response(body, media_type=media, headers={"Content-Security-Policy": _PAGE_POLICY,
                                                              "X-Content-Type-Options": "nosniff"})

        return serve_page

    for route in pages:
        app.add_api_route(route, page(route), methods=["GET"], include_in_schema=False)
