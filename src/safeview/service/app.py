"""The HTTP service: OpenAI-compatible image moderation, safeguarding, a review page.

Routes: ``POST /v1/moderations`` (the OpenAI moderation API's shape, image inputs as data URLs),
``POST /v1/safeguard`` (raw image body or multipart; the Report as JSON with the obfuscated image,
or the image alone with ``Accept: image/jpeg``), ``POST /v1/safeguard/video`` (the same for a clip:
the Report, with its spans, and the obfuscated clip as base64 MP4, or the MP4 alone with
``Accept: video/mp4``; decoded and encoded in memory), ``GET /healthz``, ``GET /readyz``,
``GET /config``, ``GET /`` (the review page) and the OpenAPI spec at ``/openapi.json`` (no
Swagger UI: its assets would come from a CDN).

Hardening: one bad request fails alone with a JSON error ``{"error": {"code", "message"}}``; bad
input never yields a 500. The body is read into memory by us with a size cap, a read deadline and a
cap on the bytes held by all in-flight bodies (Starlette would spool multipart file parts over
1 MiB to disk, and an original must never touch the disk); JSON and multipart bodies are parsed in
a worker thread, with limits on inputs, parts and nesting; the image type is sniffed from its bytes
against an allowlist and a pixel budget applies. A video upload is never written to disk: it is
demuxed from memory, its size capped while it streams in and its duration, frame count and frame
size checked from the container's header before any frame is decoded (again while decoding); its
output is encoded in memory, within the same size cap. Concurrency is bounded (429 when the queue is
full); a request past its deadline gets a 503 and its work is *stopped* (a forward-pre-hook on the
guard module raises :class:`~safeview.service.cancel.Cancelled` at the next batch): its slot is
freed only once the work has stopped. Backends that load models (``rationale=instructblip``) and
slow attributions (``ablationcam``) are off unless the operator enables them; nothing is
downloaded because of a request. ``SAFEVIEW_API_KEY`` requires ``Authorization: Bearer KEY`` on
``/v1/*``, ``/config`` and ``/openapi.json`` (compared in constant time, before the body is read).

Service limits (environment variable: default):

==============================  ==========================  =====================================
Limit                           Variable                    Default
==============================  ==========================  =====================================
request body size               SAFEVIEW_MAX_BODY_BYTES     20 MiB (413)
body read deadline              SAFEVIEW_BODY_TIMEOUT_S     30 s (408)
bytes held by in-flight bodies  SAFEVIEW_MAX_INFLIGHT_BYTES 64 MiB (503)
decoded image pixels            SAFEVIEW_MAX_PIXELS         40,000,000 (413)
images per moderation request   SAFEVIEW_MAX_INPUTS         16 (413)
multipart parts                 SAFEVIEW_MAX_PARTS          16, no nesting (413 / 400)
request deadline (queue + work) SAFEVIEW_TIMEOUT_S          60 s (503; the work is stopped)
video request body size         SAFEVIEW_MAX_VIDEO_BYTES    32 MiB (413; 0: no video route;
                                                            within MAX_INFLIGHT_BYTES)
video duration                  SAFEVIEW_MAX_VIDEO_SECONDS  60 s (413)
video frames                    SAFEVIEW_MAX_VIDEO_FRAMES   3600 (413)
video frame size (pixels)       SAFEVIEW_MAX_VIDEO_PIXELS   1920 x 1080 (413)
video deadline (queue + work)   SAFEVIEW_VIDEO_TIMEOUT_S    600 s (503; the work is stopped)
requests running at once        SAFEVIEW_MAX_CONCURRENCY    2
requests waiting                SAFEVIEW_MAX_QUEUE          16 (429 beyond)
attributions from requests      SAFEVIEW_ATTRIBUTIONS       fullgrad,gradcam,gradcam++,xgradcam
rationale backends              SAFEVIEW_RATIONALES         grounded (instructblip also needs
                                                            SAFEVIEW_INSTRUCTBLIP_MODEL, a local
                                                            folder; openai needs
                                                            SAFEVIEW_OPENAI_BASE_URL)
request head deadline (serve)   SAFEVIEW_HEADER_TIMEOUT_S   10 s (connection closed)
keep-alive idle time (serve)    SAFEVIEW_KEEP_ALIVE_S       5 s
request head size (serve)       SAFEVIEW_MAX_HEAD_BYTES     16 KiB
connections + tasks (serve)     SAFEVIEW_MAX_CONNECTIONS    256 (503 beyond)
==============================  ==========================  =====================================

The ``(serve)`` rows are uvicorn settings applied by ``safeview serve``
(:func:`safeview.service.server.uvicorn_options`).

What a request is judged by: ``SAFEVIEW_GUARD`` (unset: no single guard) and ``SAFEVIEW_POLICY``
(``default``, the built-in policy; or the operator's policy JSON file, checked at start and
offered under its file stem). A request may set ``guard`` (``open-nsfw``, ``imagenet``, those of
``SAFEVIEW_GUARD_FILES``) or ``policy`` (a name the server offers, never a path), not both.
``SAFEVIEW_PRELOAD`` (default: the default guard, else ``policy``) names the guards and
policies loaded at start; ``policy`` is the server's policy, ``none`` loads nothing.

This module holds the routes and the request parsers; ``moderation`` the moderation request and
its OpenAI-shaped result (the category mapping), ``settings`` (:class:`Settings`),
``options`` (request options through :class:`~safeview.options.SafeguardOptions`, a
:class:`~safeview.service.options.PipelineCache`), ``errors``, ``limits`` (limiter, body budget and
reader), ``headers`` (security headers), ``multipart`` and ``cancel`` the rest.
"""

from __future__ import annotations

import base64
import hmac
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from safeview.io import ImageInputError
from safeview.options import SafeguardOptions
from safeview.service.cancel import checkpoint, watch_module
from safeview.service.errors import (
    ServiceError,
    error_response,
    errors,
    image_error,
    video_error,
)
from safeview.service.headers import SecurityHeaders, review_page_csp
from safeview.service.limits import BodyBudget, Limiter, _Held, read_body
from safeview.service.moderation import (
    MODERATION_RESPONSE,
    moderation_body,
    moderation_result,
    parse_moderation,
)
from safeview.service.multipart import MultipartError, parse_form
from safeview.service.options import (
    REQUEST_VIDEO_OPTIONS,
    PipelineCache,
    request_options,
    safeguard_extra,
    safeguard_video_extra,
    video_request_options,
)
from safeview.service.settings import Settings

if TYPE_CHECKING:
    from safeview.guards import Guard
    from safeview.pipeline import Pipeline
    from safeview.report import Report

#: Distinct request options whose built pipelines are kept.
PIPELINE_CACHE_SIZE = 8


def parse_multipart(
    body: bytes, content_type: str, max_parts: int = 16
) -> tuple[bytes | None, dict[str, str]]:
    """(the ``file`` or ``image`` part, the other fields) of an in-memory multipart body."""
    return _parse_multipart(body, content_type, max_parts, ("file", "image"))


def _parse_multipart(
    body: bytes, content_type: str, max_parts: int, file_fields: tuple[str, ...]
) -> tuple[bytes | None, dict[str, str]]:
    try:
        parts = parse_form(body, content_type, max_parts=max_parts)
    except MultipartError as exc:
        code = "too_many_parts" if exc.status == 413 else "bad_request"
        raise ServiceError(exc.status, code, str(exc)) from None
    image: bytes | None = None
    fields: dict[str, str] = {}
    for name, payload in parts:
        if name in file_fields:
            image = payload
        else:
            fields[name] = payload.decode("utf-8", errors="replace")
    return image, fields


async def _upload(
    request: Request, body: bytes, max_parts: int, file_fields: tuple[str, ...]
) -> tuple[bytes, dict[str, str]]:
    """(the uploaded file, the query's and form's fields) of a request: a multipart form's file
    part, or else the raw body."""
    content_type = request.headers.get("content-type", "")
    fields: dict[str, str] = dict(request.query_params)
    if not content_type.lower().startswith("multipart/"):
        return body, fields
    upload, form = await run_in_threadpool(
        _parse_multipart, body, content_type, max_parts, file_fields
    )
    fields.update(form)
    if upload is None:
        raise ServiceError(400, "bad_request", "multipart body has no 'file' part")
    return upload, fields


_SAFEGUARD_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report with the obfuscated image (base64), or with "
        "``Accept: image/*`` the obfuscated image itself",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


_SAFEGUARD_VIDEO_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report (spans with their time ranges, categories, scores before "
        "and after, stretches blurred whole) with the obfuscated clip (base64 MP4), or with "
        "``Accept: video/mp4`` the clip itself",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "video/mp4": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; guards load once per process, in the background at start-up."""
    settings = settings or Settings.from_env()
    from safeview.threads import budget_threads

    # Every worker process and each of its concurrent requests gets a share of the cores:
    # torch and numba default to a thread per core each, and oversubscribed they run 4x slower.
    workers = max(1, int(os.environ.get("SAFEVIEW_WORKERS", "1") or 1))
    budget_threads(None, workers=workers * settings.max_concurrency)
    if "instructblip" in settings.rationales:
        os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder only: never a hub download
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    state: dict[str, Any] = {"ready": False, "load_error": None, "loaded": []}
    pipelines = PipelineCache(PIPELINE_CACHE_SIZE)  # the stages built once per distinct options
    page = resources.files("safeview.service").joinpath("review.html").read_text("utf-8")
    page_csp = review_page_csp(page)

    def preload() -> None:
        from safeview.guards.runtime import prepare as prepare_scoring
        from safeview.policy import GuardPanel

        try:
            loaded: dict[str, None] = {}
            for guard, policy in settings.preload_sources():
                panel = GuardPanel(guard=guard or None, policy=policy, device=settings.device)
                watch_guards(panel.guards)
                for judge in panel.guards:  # the onnxruntime copies, before the first request
                    prepare_scoring(judge)
                loaded.update(dict.fromkeys(g.name for g in panel.guards))
            state["loaded"] = list(loaded)
            state["ready"] = True
        except Exception as exc:  # reported by /readyz
            state["load_error"] = f"{type(exc).__name__}: {exc}"

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        limiter = state["limiter"] = Limiter(settings.max_concurrency, settings.max_queue)
        state["bodies"] = BodyBudget(settings.max_inflight_bytes)
        threading.Thread(target=preload, daemon=True, name="safeview-preload").start()
        try:
            yield
        finally:
            limiter.close()

    app = FastAPI(
        title="safeview",
        version=_version(),
        summary="Image safeguarding: moderation scores, minimal obfuscation, reports.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their assets from a CDN: not served
        redoc_url=None,
        openapi_url=None,  # served below, behind the API key
        redirect_slashes=False,  # its redirect would echo the Host header
    )
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal_error", f"{type(exc).__name__}: internal error")

    def authorise(request: Request) -> None:
        """The API key (when set) on everything but the health checks and the static page;
        compared in constant time, before any body is read."""
        if not settings.api_key:
            return
        header = request.headers.get("authorization", "")
        expected = f"Bearer {settings.api_key}"
        if not hmac.compare_digest(header.encode(), expected.encode()):
            raise ServiceError(
                401,
                "unauthorized",
                "missing or wrong API key (Bearer token)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def require_ready() -> None:
        if not state["ready"]:
            detail = state["load_error"] or "models are still loading"
            raise ServiceError(503, "not_ready", detail)

    @asynccontextmanager
    async def request_body(request: Request, limit: int | None = None) -> AsyncIterator[bytes]:
        """The body (at most ``limit`` bytes, default ``max_body_bytes``), counted against the
        in-flight budget until the request is answered."""
        held = _Held()
        budget: BodyBudget = state["bodies"]
        try:
            yield await read_body(
                request,
                settings.max_body_bytes if limit is None else limit,
                timeout=settings.body_timeout_s,
                budget=budget,
                held=held,
            )
        finally:
            budget.give(held.size)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        if state["ready"]:
            return JSONResponse(
                {"status": "ready", "preloaded": list(settings.preload), "guards": state["loaded"]}
            )
        return error_response(503, "not_ready", state["load_error"] or "models are still loading")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        authorise(request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> JSONResponse:
        authorise(request)
        return error_response(
            404,
            "not_found",
            "the docs UI is not served (its assets would come from a CDN); "
            "the OpenAPI spec is at /openapi.json",
        )

    @app.get("/config", responses=errors(401))
    async def config(request: Request) -> dict[str, Any]:
        """What the review page offers: policies and guards (a request without either gets
        ``default_guard``, or the policy ``default_policy`` when that is null), segmenters,
        styles, and whether a key is needed."""
        from safeview.render import RENDERERS
        from safeview.segmentation import SEGMENTERS

        authorise(request)
        return {
            "guards": list(settings.guards),
            "default_guard": settings.guard,
            "policies": list(settings.policies),
            "default_policy": settings.default_policy,
            "segmenters": SEGMENTERS.names(),
            "default_segmenter": SafeguardOptions().segmenter,
            "styles": RENDERERS.names(),
            "attributions": list(settings.attributions),
            "rationales": list(settings.rationales),
            "api_key_required": bool(settings.api_key),
            "video": {
                "route": "/v1/safeguard/video",
                "max_bytes": settings.video_body_limit,
                "max_seconds": settings.max_video_seconds,
                "max_frames": settings.max_video_frames,
                "max_frame_pixels": settings.max_video_pixels,
                "timeout_s": settings.video_timeout_s,
                "options": list(REQUEST_VIDEO_OPTIONS),
            }
            if settings.max_video_bytes > 0
            else None,
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def review_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": page_csp})

    @app.post(
        "/v1/moderations",
        summary="OpenAI-compatible moderation of images",
        openapi_extra={"requestBody": moderation_body(settings)},
        responses={**MODERATION_RESPONSE, **errors(400, 401, 408, 413, 415, 422, 429, 503)},
    )
    async def moderations(request: Request) -> JSONResponse:
        authorise(request)
        require_ready()
        async with request_body(request) as body:
            asked = await run_in_threadpool(parse_moderation, body, settings)
            del body
            # One guard's categories mean what the server's policy maps them to.
            mapping = asked.policy or settings.policy_named(settings.default_policy)

            def classify_all() -> list[dict[str, Any]]:
                options = SafeguardOptions(
                    guard=asked.guard,
                    policy=settings.options_policy(asked.policy) if asked.policy else None,
                    device=settings.device,
                    max_pixels=settings.max_pixels,
                )
                pipeline = pipelines.get(options)
                watch_guards(pipeline.guards)
                results = []
                for index, data in enumerate(asked.images):
                    checkpoint()
                    try:
                        report = pipeline.classify(data, name=f"input[{index}]")
                    except ImageInputError as exc:
                        raise image_error(exc) from None
                    results.append(moderation_result(report, mapping, guard=asked.guard))
                return results

            results = await state["limiter"].run(settings.timeout_s, classify_all)
        return JSONResponse(
            {"id": f"modr-{uuid.uuid4().hex}", "model": asked.model, "results": results}
        )

    @app.post(
        "/v1/safeguard",
        summary="Obfuscate the minimal unsafe regions of an image",
        openapi_extra=safeguard_extra(settings),
        responses={**_SAFEGUARD_OK, **errors(400, 401, 408, 413, 415, 422, 429, 502, 503)},
    )
    async def safeguard_route(request: Request) -> Response:
        authorise(request)
        require_ready()
        async with request_body(request) as body:
            image, fields = await _upload(request, body, settings.max_parts, ("file", "image"))
            del body
            if not image:
                raise ServiceError(400, "invalid_image", "empty body: send the image bytes")
            options, viz = await run_in_threadpool(request_options, fields, settings)
            report, picture = await state["limiter"].run(
                settings.timeout_s, _safeguard_work, pipelines.get, image, options, viz
            )
        if report.encoded is None:
            raise ServiceError(
                422, "search_failed", report.error or "no flip found", report=report.to_dict()
            )
        media = (
            "image/jpeg"
            if report.output_format == "JPEG"
            else ("image/webp" if report.output_format == "WEBP" else "image/png")
        )
        accept = request.headers.get("accept", "")
        if accept.startswith("image/"):
            return Response(
                report.encoded,
                media_type=media,
                headers={
                    "X-Safeview-Flagged": str(report.flagged).lower(),
                    "X-Safeview-Success": str(report.success).lower(),
                    "X-Safeview-Obfuscated-Fraction": f"{report.obfuscated_fraction:.4f}",
                },
            )
        return JSONResponse(
            {
                "report": report.to_dict(),
                "image": base64.b64encode(report.encoded).decode("ascii"),
                "image_media_type": media,
                "visualization": base64.b64encode(picture).decode("ascii") if picture else None,
            }
        )

    @app.post(
        "/v1/safeguard/video",
        summary="Obfuscate what the guards flag in a video clip",
        openapi_extra=safeguard_video_extra(settings),
        responses={
            **_SAFEGUARD_VIDEO_OK,
            **errors(400, 401, 404, 408, 413, 415, 422, 429, 503),
        },
    )
    async def safeguard_video_route(request: Request) -> Response:
        """The clip is held in memory only (never written to disk); its size is capped while
        it streams in, its header checked against the caps before any frame is decoded; the
        work runs in a worker slot, stopped at ``SAFEVIEW_VIDEO_TIMEOUT_S``."""
        authorise(request)
        if settings.max_video_bytes <= 0:
            raise ServiceError(404, "not_found", "video is turned off on this server")
        require_ready()
        async with request_body(request, settings.video_body_limit) as body:
            clip, fields = await _upload(request, body, settings.max_parts, ("file", "video"))
            del body
            if not clip:
                raise ServiceError(400, "invalid_video", "empty body: send the video bytes")
            options = await run_in_threadpool(video_request_options, fields, settings)
            # The header against the caps now, before waiting for a worker or decoding a frame.
            await run_in_threadpool(_probe_video, clip, options)
            report, output = await state["limiter"].run(
                settings.video_timeout_s, _safeguard_video_work, clip, options
            )
            del clip
        assert report.video is not None
        if request.headers.get("accept", "").startswith("video/"):
            return Response(
                output,
                media_type="video/mp4",
                headers={
                    "X-Safeview-Flagged": str(report.flagged).lower(),
                    "X-Safeview-Success": str(report.success).lower(),
                    "X-Safeview-Obfuscated-Fraction": f"{report.obfuscated_fraction:.4f}",
                    "X-Safeview-Spans": str(len(report.video.spans)),
                },
            )
        return JSONResponse(
            {
                "report": report.to_dict(),
                "video": base64.b64encode(output).decode("ascii"),
                "video_media_type": "video/mp4",
            }
        )

    return app


class _Sink:
    """Receives the encoded clip from the video writer: the bytes, not a copy of them."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes, /) -> int:
        self.data = bytes(data)  # a bytes object is kept as it is
        return len(data)


def _probe_video(clip: bytes, options: SafeguardOptions) -> None:
    """The clip's header against the caps, from memory (in a worker thread)."""
    from safeview.video.codec import VideoInputError, probe_video

    try:
        probe_video(clip, options.make_video_options(), name="upload")
    except VideoInputError as exc:
        raise video_error(exc) from None


def _progress(_stage: str, _done: int, _total: int) -> None:
    checkpoint()  # every frame decoded: a clip past its deadline stops between frames too


def _safeguard_video_work(clip: bytes, options: SafeguardOptions) -> tuple[Report, bytes]:
    """The video request's work, in a limiter thread: from memory into memory; cancellable
    between frames and before every forward pass."""
    from safeview.video.codec import VideoInputError, VideoOutputError
    from safeview.video.pipeline import VideoPipeline, VideoSearchFailedError

    sink = _Sink()
    try:
        pipeline = VideoPipeline(options)
        watch_guards(pipeline.pipeline.guards)
        report = pipeline.safeguard(clip, sink, name="upload", progress=_progress)
    except VideoInputError as exc:
        raise video_error(exc) from None
    except VideoSearchFailedError as failed:
        extra = {"report": failed.report.to_dict()} if failed.report is not None else {}
        raise ServiceError(422, "search_failed", str(failed), **extra) from None
    except VideoOutputError as exc:
        raise ServiceError(422, "video_output_failed", str(exc)) from None
    except ValueError as exc:
        raise ServiceError(422, "invalid_option", str(exc)) from None
    return report, sink.data


def _safeguard_work(
    pipeline_for: Callable[[SafeguardOptions], Pipeline],
    image: bytes,
    options: SafeguardOptions,
    viz: bool,
) -> tuple[Any, bytes | None]:
    """The safeguard request's work, in a limiter thread (cancellable between batches)."""
    from safeview.pipeline import SearchFailedError
    from safeview.rationale.openai_backend import RationaleError

    try:
        pipeline = pipeline_for(options)
        watch_guards(pipeline.guards)
        report = pipeline.safeguard(image, name="upload")
    except ImageInputError as exc:
        from safeview.video.formats import looks_like_video

        if exc.http_status == 415 and looks_like_video(image[:12]):
            raise ServiceError(
                415, "unsupported_media_type", "a video: send it to POST /v1/safeguard/video"
            ) from None
        raise image_error(exc) from None
    except SearchFailedError as failed:
        report = failed.report
    except ValueError as exc:
        raise ServiceError(422, "invalid_option", str(exc)) from None
    except RationaleError as exc:
        raise ServiceError(502, "rationale_failed", str(exc)) from None
    picture = None
    if viz and report.image is not None:
        from safeview.io import encode_image
        from safeview.viz import visualize

        checkpoint()
        picture = encode_image(visualize(report), "PNG")
    return report, picture


def watch_guards(guards: list[Guard]) -> None:
    """Check the request's deadline before every forward pass of each guard (a policy's
    pipeline runs all of them)."""
    for guard in guards:
        watch_module(guard.module)


def _version() -> str:
    from safeview import __version__

    return __version__


__all__ = ["Limiter", "ServiceError", "Settings", "create_app"]
