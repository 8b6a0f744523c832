"""The HTTP service: OpenAI-compatible image moderation, safeguarding, a review page.

Routes: ``POST /v1/moderations`` (the OpenAI moderation API's shape, image inputs as data URLs),
``POST /v1/safeguard`` (raw image body or multipart; the Report as JSON with the obfuscated image,
or the image alone with ``Accept: image/jpeg``), ``GET /healthz``, ``GET /readyz``, ``GET /config``,
``GET /`` (the review page) and the OpenAPI docs at ``/docs``.

Hardening: the body is read into memory by us with a size cap (Starlette would spool multipart file
parts over 1 MiB to disk, and an original must never touch the disk), the image type is sniffed from
its bytes against an allowlist, a pixel budget applies, each request has a timeout, and concurrency
is bounded (429 when the queue is full, 503 on timeout or before the models are loaded). Errors are
JSON ``{"error": {"code", "message"}}``; bad input never yields a 500. ``SAFEVIEW_API_KEY`` in the
environment requires ``Authorization: Bearer KEY`` on ``/v1/*``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from safeview.io import ImageInputError


@dataclass
class Settings:
    """Service limits and defaults; :meth:`from_env` reads ``SAFEVIEW_*`` variables."""

    guard: str = "open-nsfw"
    guards: tuple[str, ...] = ("open-nsfw", "imagenet")
    max_body_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    timeout_s: float = 60.0
    max_concurrency: int = 2
    max_queue: int = 16
    api_key: str | None = None
    device: str | None = None
    preload: tuple[str, ...] = ("open-nsfw",)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            guard=env.get("SAFEVIEW_GUARD", "open-nsfw"),
            max_body_bytes=int(env.get("SAFEVIEW_MAX_BODY_BYTES", 20 * 1024 * 1024)),
            max_pixels=int(env.get("SAFEVIEW_MAX_PIXELS", 40_000_000)),
            timeout_s=float(env.get("SAFEVIEW_TIMEOUT_S", 60.0)),
            max_concurrency=int(env.get("SAFEVIEW_MAX_CONCURRENCY", 2)),
            max_queue=int(env.get("SAFEVIEW_MAX_QUEUE", 16)),
            api_key=env.get("SAFEVIEW_API_KEY") or None,
            device=env.get("SAFEVIEW_DEVICE") or None,
            preload=tuple(
                g for g in env.get("SAFEVIEW_PRELOAD", "open-nsfw").split(",") if g.strip()
            ),
        ).with_guard_files(
            [p.strip() for p in env.get("SAFEVIEW_GUARD_FILES", "").split(",") if p.strip()]
        )

    def with_guard_files(self, paths: list[str]) -> Settings:
        """Offer checkpoints from ``safeview train`` as guards named by their file stem
        (``/models/self-harm.pt`` -> ``self-harm``)."""
        from pathlib import Path

        from safeview.guards import register_guard
        from safeview.guards.trained import TrainedGuard, read_checkpoint

        for raw in paths:
            path = Path(raw).resolve()
            read_checkpoint(path)  # refuse a bad file at start-up, not on the first request
            name = path.stem
            if name in self.guards:
                raise ValueError(f"guard file {raw}: the name {name!r} is already a guard")

            def factory(device: Any, path: Path = path) -> TrainedGuard:
                return TrainedGuard(path, device)

            register_guard(name, factory)
            self.guards = (*self.guards, name)
        return self


class ServiceError(Exception):
    """An error with an HTTP status, a stable code and a one-line message."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def _error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}, **extra}, status_code=status)


def _image_error(exc: ImageInputError) -> ServiceError:
    message = str(exc)
    if "pixel budget" in message:
        return ServiceError(413, "image_too_large", message)
    if "not a recognised image" in message or "unsupported format" in message:
        return ServiceError(415, "unsupported_media_type", message)
    return ServiceError(400, "invalid_image", message)


class Limiter:
    """At most ``slots`` requests run; at most ``queue`` more wait; the rest get 429."""

    def __init__(self, slots: int, queue: int) -> None:
        self.semaphore = asyncio.Semaphore(slots)
        self.capacity = slots + queue
        self.active = 0

    async def run(self, timeout: float, function: Any, *args: Any, **kwargs: Any) -> Any:
        if self.active >= self.capacity:
            raise ServiceError(429, "too_many_requests", "server busy: retry later")
        self.active += 1
        deadline = time.monotonic() + timeout
        try:
            try:
                await asyncio.wait_for(self.semaphore.acquire(), timeout)
            except TimeoutError:
                raise ServiceError(503, "timeout", "timed out waiting for a free worker") from None
            try:
                remaining = max(0.001, deadline - time.monotonic())
                return await asyncio.wait_for(
                    run_in_threadpool(function, *args, **kwargs), remaining
                )
            except TimeoutError:
                raise ServiceError(
                    503, "timeout", f"request took longer than {timeout:g} s"
                ) from None
            finally:
                self.semaphore.release()
        finally:
            self.active -= 1


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read into memory, refusing more than ``limit`` bytes before parsing."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise ServiceError(413, "payload_too_large", f"body over {limit} bytes")
        except ValueError:
            raise ServiceError(400, "bad_request", "invalid Content-Length") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, "payload_too_large", f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_multipart(body: bytes, content_type: str) -> tuple[bytes | None, dict[str, str]]:
    """(the ``file`` or ``image`` part, the other fields) of an in-memory multipart body."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ServiceError(400, "bad_request", "malformed multipart body")
    image: bytes | None = None
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        if name in ("file", "image"):
            image = payload
        else:
            fields[name] = payload.decode("utf-8", errors="replace")
    return image, fields


def decode_data_url(url: str) -> bytes:
    if url.startswith(("http://", "https://")):
        raise ServiceError(
            400,
            "unsupported_input",
            "remote image URLs are not fetched; send the image as a data: URL",
        )
    if not url.startswith("data:") or ";base64," not in url:
        raise ServiceError(400, "invalid_image_url", "image_url must be a base64 data: URL")
    try:
        return base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(400, "invalid_image_url", "image_url data is not valid base64") from None


_MODERATION_CATEGORY = {"nsfw": "sexual"}


def moderation_result(report: Any) -> dict[str, Any]:
    """One OpenAI-moderation result from a classify Report."""
    target = report.guard.target
    name = _MODERATION_CATEGORY.get(target, target)
    score = float(report.scores_before.get(target, 0.0))
    return {
        "flagged": bool(report.flagged),
        "categories": {name: bool(report.flagged)},
        "category_scores": {name: score},
        "category_applied_input_types": {name: ["image"]},
    }


_OPTION_TYPES: dict[str, Any] = {
    "guard": str,
    "attribution": str,
    "segmenter": str,
    "style": str,
    "on_failure": str,
    "threshold": float,
    "max_regions": int,
    "rationale": str,
}


def _options(source: dict[str, str], settings: Settings) -> tuple[dict[str, Any], bool]:
    options: dict[str, Any] = {"guard": settings.guard}
    for key, kind in _OPTION_TYPES.items():
        if key in source and source[key] != "":
            try:
                options[key] = kind(source[key])
            except ValueError:
                raise ServiceError(422, "invalid_option", f"{key}: not a {kind.__name__}") from None
    if options.get("rationale") not in (None, "grounded", "openai", "instructblip"):
        raise ServiceError(422, "invalid_option", f"rationale: unknown {options['rationale']!r}")
    if options["guard"] not in settings.guards:
        raise ServiceError(
            422,
            "invalid_option",
            f"guard: unknown {options['guard']!r} ({', '.join(settings.guards)})",
        )
    viz = source.get("viz", "").lower() in ("1", "true", "yes")
    return options, viz


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; guards load once per process, in the background at start-up."""
    settings = settings or Settings.from_env()
    state: dict[str, Any] = {"ready": False, "load_error": None}

    def preload() -> None:
        from safeview.guards import load_guard

        try:
            for name in settings.preload:
                load_guard(name, settings.device)
            state["ready"] = True
        except Exception as exc:  # reported by /readyz
            state["load_error"] = f"{type(exc).__name__}: {exc}"

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state["limiter"] = Limiter(settings.max_concurrency, settings.max_queue)
        threading.Thread(target=preload, daemon=True, name="safeview-preload").start()
        yield

    app = FastAPI(
        title="safeview",
        version=_version(),
        summary="Image safeguarding: moderation scores, minimal obfuscation, reports.",
        lifespan=lifespan,
    )

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return _error_response(exc.status, exc.code, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error_response(422, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        return _error_response(500, "internal_error", f"{type(exc).__name__}: internal error")

    def authorise(request: Request) -> None:
        if not settings.api_key or not request.url.path.startswith("/v1/"):
            return
        header = request.headers.get("authorization", "")
        expected = f"Bearer {settings.api_key}"
        if not hmac.compare_digest(header.encode(), expected.encode()):
            raise ServiceError(401, "unauthorized", "missing or wrong API key (Bearer token)")

    def require_ready() -> None:
        if not state["ready"]:
            detail = state["load_error"] or "models are still loading"
            raise ServiceError(503, "not_ready", detail)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if state["ready"]:
            return JSONResponse({"status": "ready", "guards": list(settings.preload)})
        return _error_response(503, "not_ready", state["load_error"] or "models are still loading")

    @app.get("/config")
    async def config() -> dict[str, Any]:
        """What the review page offers: guards, segmenters, styles, and whether a key is needed."""
        from safeview.render import STYLES
        from safeview.segmentation import available_segmenters

        return {
            "guards": list(settings.guards),
            "default_guard": settings.guard,
            "segmenters": available_segmenters(),
            "styles": list(STYLES),
            "api_key_required": bool(settings.api_key),
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def review_page() -> HTMLResponse:
        page = resources.files("safeview.service").joinpath("review.html").read_text("utf-8")
        return HTMLResponse(page)

    @app.post("/v1/moderations", summary="OpenAI-compatible moderation of images")
    async def moderations(request: Request) -> JSONResponse:
        authorise(request)
        require_ready()
        body = await read_body(request, settings.max_body_bytes)
        try:
            payload = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ServiceError(400, "invalid_json", "body is not valid JSON") from None
        if not isinstance(payload, dict) or "input" not in payload:
            raise ServiceError(422, "invalid_request", "body needs an 'input' field")
        model = payload.get("model") or settings.guard
        guard = model.removeprefix("safeview-")
        if guard not in settings.guards:
            raise ServiceError(
                422, "invalid_request", f"model: unknown {model!r} ({', '.join(settings.guards)})"
            )
        items = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
        if not items:
            raise ServiceError(422, "invalid_request", "input is empty")
        images: list[bytes] = []
        for item in items:
            if isinstance(item, str) or (isinstance(item, dict) and item.get("type") == "text"):
                raise ServiceError(
                    400,
                    "unsupported_input",
                    "text input is not supported: safeview moderates images",
                )
            if not isinstance(item, dict) or item.get("type") != "image_url":
                raise ServiceError(
                    422,
                    "invalid_request",
                    "each input must be {'type': 'image_url', 'image_url': {...}}",
                )
            image_url = item.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            if not isinstance(url, str):
                raise ServiceError(422, "invalid_request", "image_url.url must be a string")
            images.append(decode_data_url(url))

        def classify_all() -> list[dict[str, Any]]:
            from safeview.pipeline import classify

            results = []
            for index, data in enumerate(images):
                try:
                    report = classify(
                        data,
                        guard,
                        device=settings.device,
                        name=f"input[{index}]",
                        max_pixels=settings.max_pixels,
                    )
                except ImageInputError as exc:
                    raise _image_error(exc) from None
                results.append(moderation_result(report))
            return results

        results = await state["limiter"].run(settings.timeout_s, classify_all)
        return JSONResponse(
            {"id": f"modr-{uuid.uuid4().hex}", "model": f"safeview-{guard}", "results": results}
        )

    @app.post("/v1/safeguard", summary="Obfuscate the minimal unsafe regions of an image")
    async def safeguard_route(request: Request) -> Response:
        authorise(request)
        require_ready()
        body = await read_body(request, settings.max_body_bytes)
        content_type = request.headers.get("content-type", "")
        fields: dict[str, str] = dict(request.query_params)
        if content_type.startswith("multipart/form-data"):
            image, form = parse_multipart(body, content_type)
            fields.update(form)
            if image is None:
                raise ServiceError(400, "bad_request", "multipart body has no 'file' part")
        else:
            image = body
        if not image:
            raise ServiceError(400, "invalid_image", "empty body: send the image bytes")
        options, viz = _options(fields, settings)

        def work() -> tuple[Any, bytes | None]:
            from safeview.pipeline import SearchFailedError, safeguard
            from safeview.rationale.openai_backend import RationaleError

            try:
                report = safeguard(
                    image,
                    device=settings.device,
                    name="upload",
                    max_pixels=settings.max_pixels,
                    **options,
                )
            except ImageInputError as exc:
                raise _image_error(exc) from None
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

                picture = encode_image(visualize(report), "PNG")
            return report, picture

        report, picture = await state["limiter"].run(settings.timeout_s, work)
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

    return app


def _version() -> str:
    from safeview import __version__

    return __version__
