"""The HTTP service: OpenAI-compatible image moderation, safeguarding, a review page.

Routes: ``POST /v1/moderations`` (the OpenAI moderation API's shape, image inputs as data URLs),
``POST /v1/safeguard`` (raw image body or multipart; the Report as JSON with the obfuscated image,
or the image alone with ``Accept: image/jpeg``), ``GET /healthz``, ``GET /readyz``, ``GET /config``,
``GET /`` (the review page) and the OpenAPI spec at ``/openapi.json`` (no Swagger UI: its assets
would come from a CDN).

Hardening: one bad request fails alone with a JSON error ``{"error": {"code", "message"}}``; bad
input never yields a 500. The body is read into memory by us with a size cap, a read deadline and a
cap on the bytes held by all in-flight bodies (Starlette would spool multipart file parts over
1 MiB to disk, and an original must never touch the disk); JSON and multipart bodies are parsed in
a worker thread, with limits on inputs, parts and nesting; the image type is sniffed from its bytes
against an allowlist and a pixel budget applies. Concurrency is bounded (429 when the queue is
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
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from safeview.io import ImageInputError
from safeview.service.cancel import Cancelled, CancelToken, checkpoint, run_with_token, watch_module
from safeview.service.multipart import MultipartError, parse_form

#: Attributions a request may choose unless the operator says otherwise (``ablationcam`` runs one
#: forward pass per channel: minutes per image, so it is opt-in).
DEFAULT_ATTRIBUTIONS = ("fullgrad", "gradcam", "gradcam++", "xgradcam")
ALL_ATTRIBUTIONS = (*DEFAULT_ATTRIBUTIONS, "ablationcam")
RATIONALES = ("grounded", "openai", "instructblip")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


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
    max_inputs: int = 16
    max_parts: int = 16
    body_timeout_s: float = 30.0
    max_inflight_bytes: int = 64 * 1024 * 1024
    attributions: tuple[str, ...] = DEFAULT_ATTRIBUTIONS
    rationales: tuple[str, ...] = ("grounded",)
    instructblip_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [a for a in self.attributions if a not in ALL_ATTRIBUTIONS]
        if unknown:
            raise ValueError(f"SAFEVIEW_ATTRIBUTIONS: unknown {', '.join(unknown)}")
        unknown = [r for r in self.rationales if r not in RATIONALES]
        if unknown:
            raise ValueError(f"SAFEVIEW_RATIONALES: unknown {', '.join(unknown)}")
        if "instructblip" in self.rationales and not (
            self.instructblip_model and os.path.isdir(self.instructblip_model)
        ):
            raise ValueError(
                "rationale instructblip needs SAFEVIEW_INSTRUCTBLIP_MODEL: a local model folder "
                "(the service never downloads a model)"
            )

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
            preload=_csv(env.get("SAFEVIEW_PRELOAD", "open-nsfw")),
            max_inputs=int(env.get("SAFEVIEW_MAX_INPUTS", 16)),
            max_parts=int(env.get("SAFEVIEW_MAX_PARTS", 16)),
            body_timeout_s=float(env.get("SAFEVIEW_BODY_TIMEOUT_S", 30.0)),
            max_inflight_bytes=int(env.get("SAFEVIEW_MAX_INFLIGHT_BYTES", 64 * 1024 * 1024)),
            attributions=_csv(env.get("SAFEVIEW_ATTRIBUTIONS", ",".join(DEFAULT_ATTRIBUTIONS))),
            rationales=_csv(env.get("SAFEVIEW_RATIONALES", "grounded")),
            instructblip_model=env.get("SAFEVIEW_INSTRUCTBLIP_MODEL") or None,
        ).with_guard_files(_csv(env.get("SAFEVIEW_GUARD_FILES", "")))

    def with_guard_files(self, paths: list[str] | tuple[str, ...]) -> Settings:
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

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra


def _error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}, **extra}, status_code=status, headers=headers
    )


def _image_error(exc: ImageInputError) -> ServiceError:
    """By the error's type (``exc.http_status``), never by its message, which names the input."""
    status = exc.http_status
    code = {413: "image_too_large", 415: "unsupported_media_type"}.get(status, "invalid_image")
    return ServiceError(status, code, str(exc))


class Limiter:
    """At most ``slots`` requests run; at most ``queue`` more wait; the rest get 429.

    Work runs in ``slots`` worker threads with a :class:`CancelToken` carrying the request's
    deadline. A request past its deadline gets a 503 at once, its token is cancelled (watched
    guard modules raise :class:`Cancelled` at their next forward pass) and its slot stays taken
    until the work has really returned: the concurrency bound holds for stopped and running work
    alike.
    """

    def __init__(self, slots: int, queue: int) -> None:
        self.semaphore = asyncio.Semaphore(slots)
        self.capacity = slots + queue
        self.active = 0
        self.executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="safeview-work")

    def _finished(self, future: Future[Any] | asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: a Cancelled here is the expected outcome
        self.semaphore.release()
        self.active -= 1

    async def run(self, timeout: float, function: Any, *args: Any) -> Any:
        if self.active >= self.capacity:
            raise ServiceError(429, "too_many_requests", "server busy: retry later")
        self.active += 1
        deadline = time.monotonic() + timeout
        handed_off = False  # the slot is released by _finished when the work returns
        try:
            try:
                await asyncio.wait_for(self.semaphore.acquire(), timeout)
            except TimeoutError:
                raise ServiceError(503, "timeout", "timed out waiting for a free worker") from None
            token = CancelToken(deadline)
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self.executor, run_with_token, token, function, *args)
            try:
                remaining = max(0.001, deadline - time.monotonic())
                return await asyncio.wait_for(asyncio.shield(future), remaining)
            except (TimeoutError, asyncio.CancelledError) as stop:
                if not future.done():
                    token.cancel()
                    handed_off = True
                    future.add_done_callback(self._finished)
                if isinstance(stop, asyncio.CancelledError):
                    raise
                raise ServiceError(
                    503, "timeout", f"request took longer than {timeout:g} s"
                ) from None
            except Cancelled:
                raise ServiceError(
                    503, "timeout", f"request took longer than {timeout:g} s"
                ) from None
            finally:
                if not handed_off:
                    self.semaphore.release()
        finally:
            if not handed_off:
                self.active -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class BodyBudget:
    """The bytes held by all in-flight request bodies, capped (503 beyond)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.limit:
            raise ServiceError(
                503,
                "server_busy",
                "too many request bodies in flight: retry later",
                headers={"Retry-After": "1"},
            )
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


@dataclass
class _Held:
    size: int = 0


async def read_body(
    request: Request,
    limit: int,
    *,
    timeout: float | None = None,
    budget: BodyBudget | None = None,
    held: _Held | None = None,
) -> bytes:
    """The request body, read into memory, refusing more than ``limit`` bytes (413) before
    parsing, a body not complete within ``timeout`` seconds (408) and a body that would take the
    in-flight bodies over ``budget`` (503; what was taken is recorded in ``held``)."""
    held = held if held is not None else _Held()
    declared = request.headers.get("content-length")
    expected = 0
    if declared is not None:
        try:
            expected = int(declared)
        except ValueError:
            raise ServiceError(400, "bad_request", "invalid Content-Length") from None
        if expected > limit:
            raise ServiceError(413, "payload_too_large", f"body over {limit} bytes")
        if expected < 0:
            raise ServiceError(400, "bad_request", "invalid Content-Length")

    def grow(size: int) -> None:
        if budget is not None and size > held.size:
            budget.take(size - held.size)
            held.size = size

    grow(expected)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ServiceError(413, "payload_too_large", f"body over {limit} bytes")
                grow(size)
                chunks.append(chunk)
    except TimeoutError:
        raise ServiceError(
            408, "request_timeout", f"the body was not received within {timeout:g} s"
        ) from None
    except ClientDisconnect:
        raise ServiceError(400, "client_disconnected", "the client went away") from None
    return b"".join(chunks)


def parse_multipart(
    body: bytes, content_type: str, max_parts: int = 16
) -> tuple[bytes | None, dict[str, str]]:
    """(the ``file`` or ``image`` part, the other fields) of an in-memory multipart body."""
    try:
        parts = parse_form(body, content_type, max_parts=max_parts)
    except MultipartError as exc:
        code = "too_many_parts" if exc.status == 413 else "bad_request"
        raise ServiceError(exc.status, code, str(exc)) from None
    image: bytes | None = None
    fields: dict[str, str] = {}
    for name, payload in parts:
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


def parse_json(body: bytes) -> Any:
    """The JSON document of ``body``; any malformed, too deep or too large number -> 400."""
    try:
        return json.loads(body or b"null")
    except RecursionError:
        raise ServiceError(400, "invalid_json", "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, int digit limit
        detail = "" if isinstance(exc, json.JSONDecodeError) else f": {exc}"
        raise ServiceError(400, "invalid_json", f"body is not valid JSON{detail}") from None


def parse_moderation(body: bytes, settings: Settings) -> tuple[str, list[bytes]]:
    """(guard, decoded images) of a moderation request body; runs in a worker thread."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or "input" not in payload:
        raise ServiceError(422, "invalid_request", "body needs an 'input' field")
    model = payload.get("model")
    if model is None or model == "":
        model = settings.guard
    if not isinstance(model, str):
        raise ServiceError(400, "invalid_request", "model must be a string")
    guard = model.removeprefix("safeview-")
    if guard not in settings.guards:
        raise ServiceError(
            422,
            "invalid_request",
            f"model: unknown {model[:100]!r} ({', '.join(settings.guards)})",
        )
    items = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
    if not items:
        raise ServiceError(422, "invalid_request", "input is empty")
    if len(items) > settings.max_inputs:
        raise ServiceError(
            413,
            "too_many_inputs",
            f"input has {len(items)} items; at most {settings.max_inputs} per request "
            "(SAFEVIEW_MAX_INPUTS)",
        )
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
    return guard, images


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
    "search": str,
    "margin": float,
    "rationale": str,
}
#: Searches a request may ask for; ``powerset`` costs up to 2^max_regions forward passes.
REQUEST_SEARCHES = ("coarse-to-fine", "greedy")


def _options(source: dict[str, str], settings: Settings) -> tuple[dict[str, Any], bool]:
    options: dict[str, Any] = {"guard": settings.guard}
    for key, kind in _OPTION_TYPES.items():
        if key in source and source[key] != "":
            try:
                options[key] = kind(source[key])
            except ValueError:
                raise ServiceError(422, "invalid_option", f"{key}: not a {kind.__name__}") from None
    rationale = options.get("rationale")
    if rationale is not None:
        if rationale not in RATIONALES:
            raise ServiceError(422, "invalid_option", f"rationale: unknown {rationale[:100]!r}")
        if rationale not in settings.rationales:
            raise ServiceError(
                422,
                "invalid_option",
                f"rationale: {rationale!r} is not enabled on this server (SAFEVIEW_RATIONALES: "
                f"{', '.join(settings.rationales) or 'none'})",
            )
        if rationale == "instructblip":
            options["rationale_options"] = {"model": settings.instructblip_model}
    search = options.get("search")
    if search is not None and search not in REQUEST_SEARCHES:
        raise ServiceError(
            422,
            "invalid_option",
            f"search: {search[:100]!r} is not offered here (available: "
            f"{', '.join(REQUEST_SEARCHES)})",
        )
    if not 1 <= options.get("max_regions", 10) <= 20:
        raise ServiceError(422, "invalid_option", "max_regions: must be in 1..20")
    attribution = options.get("attribution")
    if attribution is not None and attribution not in settings.attributions:
        known = attribution in ALL_ATTRIBUTIONS
        raise ServiceError(
            422,
            "invalid_option",
            f"attribution: {attribution[:100]!r} is "
            + ("not enabled on this server (SAFEVIEW_ATTRIBUTIONS)" if known else "unknown")
            + f" ({', '.join(settings.attributions)})",
        )
    if options["guard"] not in settings.guards:
        raise ServiceError(
            422,
            "invalid_option",
            f"guard: unknown {options['guard'][:100]!r} ({', '.join(settings.guards)})",
        )
    viz = source.get("viz", "").lower() in ("1", "true", "yes")
    return options, viz


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    why = {
        400: "Malformed request (bad JSON, bad multipart, invalid image or data URL)",
        401: "Missing or wrong API key",
        408: "The body was not received in time",
        413: "Body, image, input count or part count over its limit",
        415: "Not a supported image type",
        422: "Invalid option or request field, or no flip found",
        429: "Queue full: retry later",
        502: "The rationale backend failed",
        503: "Timed out, models still loading, or too many bodies in flight",
    }
    return {
        code: {
            "description": why[code],
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        }
        for code in codes
    }


_IMAGE_INPUT: dict[str, Any] = {
    "type": "object",
    "required": ["type", "image_url"],
    "properties": {
        "type": {"type": "string", "enum": ["image_url"]},
        "image_url": {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string", "description": "a base64 data: URL"}},
        },
    },
}

_MODERATION_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["input"],
                "properties": {
                    "model": {"type": "string", "description": "a guard, e.g. safeview-open-nsfw"},
                    "input": {
                        "oneOf": [
                            _IMAGE_INPUT,
                            {"type": "array", "items": _IMAGE_INPUT, "minItems": 1},
                        ]
                    },
                },
            }
        }
    },
}


def _styles() -> list[str]:
    from safeview.render import RENDERERS

    return RENDERERS.names()


_OPTION_SCHEMAS: dict[str, dict[str, Any]] = {
    "guard": {"type": "string"},
    "attribution": {"type": "string", "enum": list(ALL_ATTRIBUTIONS)},
    "segmenter": {"type": "string"},
    "style": {"type": "string", "enum": _styles()},
    "on_failure": {"type": "string", "enum": ["blur-all", "keep", "error"]},
    "threshold": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "max_regions": {"type": "integer", "minimum": 1},
    "rationale": {"type": "string", "enum": list(RATIONALES)},
    "viz": {"type": "boolean"},
}

_SAFEGUARD_EXTRA: dict[str, Any] = {
    "parameters": [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in _OPTION_SCHEMAS.items()
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        **_OPTION_SCHEMAS,
                    },
                }
            },
        },
    },
}

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

_PAGE_CSP = (
    "default-src 'none'; script-src {script}; style-src {style}; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
#: Every response: nothing may load from it, frame it, or sniff its type.
_BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
_API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


def _inline_hashes(page: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.S)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"
        for block in blocks
    )


def review_page_csp(page: str) -> str:
    """The review page's CSP: only its own inline script and style (by hash) run."""
    return _PAGE_CSP.format(
        script=_inline_hashes(page, "script") or "'none'",
        style=_inline_hashes(page, "style") or "'none'",
    )


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class SecurityHeaders:
    """ASGI middleware: security headers on every response (a response's own CSP is kept)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in _BASE_HEADERS:
                    if name not in present:
                        headers.append((name, value))
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", _API_CSP))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


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
    state: dict[str, Any] = {"ready": False, "load_error": None}
    page = resources.files("safeview.service").joinpath("review.html").read_text("utf-8")
    page_csp = review_page_csp(page)

    def preload() -> None:
        from safeview.guards import load_guard

        try:
            for name in settings.preload:
                watch_module(load_guard(name, settings.device).module)
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
        return _error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error_response(422, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        return _error_response(500, "internal_error", f"{type(exc).__name__}: internal error")

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
    async def request_body(request: Request) -> AsyncIterator[bytes]:
        """The body, counted against the in-flight budget until the request is answered."""
        held = _Held()
        budget: BodyBudget = state["bodies"]
        try:
            yield await read_body(
                request,
                settings.max_body_bytes,
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
            return JSONResponse({"status": "ready", "guards": list(settings.preload)})
        return _error_response(503, "not_ready", state["load_error"] or "models are still loading")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        authorise(request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> JSONResponse:
        authorise(request)
        return _error_response(
            404,
            "not_found",
            "the docs UI is not served (its assets would come from a CDN); "
            "the OpenAPI spec is at /openapi.json",
        )

    @app.get("/config", responses=_errors(401))
    async def config(request: Request) -> dict[str, Any]:
        """What the review page offers: guards, segmenters, styles, and whether a key is needed."""
        from safeview.render import RENDERERS
        from safeview.segmentation import SEGMENTERS

        authorise(request)
        return {
            "guards": list(settings.guards),
            "default_guard": settings.guard,
            "segmenters": SEGMENTERS.names(),
            "styles": RENDERERS.names(),
            "attributions": list(settings.attributions),
            "rationales": list(settings.rationales),
            "api_key_required": bool(settings.api_key),
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def review_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": page_csp})

    @app.post(
        "/v1/moderations",
        summary="OpenAI-compatible moderation of images",
        openapi_extra={"requestBody": _MODERATION_BODY},
        responses=_errors(400, 401, 408, 413, 415, 422, 429, 503),
    )
    async def moderations(request: Request) -> JSONResponse:
        authorise(request)
        require_ready()
        async with request_body(request) as body:
            guard, images = await run_in_threadpool(parse_moderation, body, settings)
            del body

            def classify_all() -> list[dict[str, Any]]:
                from safeview.guards import load_guard
                from safeview.pipeline import classify

                watch_module(load_guard(guard, settings.device).module)
                results = []
                for index, data in enumerate(images):
                    checkpoint()
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

    @app.post(
        "/v1/safeguard",
        summary="Obfuscate the minimal unsafe regions of an image",
        openapi_extra=_SAFEGUARD_EXTRA,
        responses={**_SAFEGUARD_OK, **_errors(400, 401, 408, 413, 415, 422, 429, 502, 503)},
    )
    async def safeguard_route(request: Request) -> Response:
        authorise(request)
        require_ready()
        async with request_body(request) as body:
            content_type = request.headers.get("content-type", "")
            fields: dict[str, str] = dict(request.query_params)
            if content_type.lower().startswith("multipart/"):
                image, form = await run_in_threadpool(
                    parse_multipart, body, content_type, settings.max_parts
                )
                fields.update(form)
                if image is None:
                    raise ServiceError(400, "bad_request", "multipart body has no 'file' part")
            else:
                image = body
            del body
            if not image:
                raise ServiceError(400, "invalid_image", "empty body: send the image bytes")
            options, viz = _options(fields, settings)
            report, picture = await state["limiter"].run(
                settings.timeout_s, _safeguard_work, settings, image, options, viz
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

    return app


def _safeguard_work(
    settings: Settings, image: bytes, options: dict[str, Any], viz: bool
) -> tuple[Any, bytes | None]:
    """The safeguard request's work, in a limiter thread (cancellable between batches)."""
    from safeview.guards import load_guard
    from safeview.pipeline import SearchFailedError, safeguard
    from safeview.rationale.openai_backend import RationaleError

    watch_module(load_guard(options["guard"], settings.device).module)
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

        checkpoint()
        picture = encode_image(visualize(report), "PNG")
    return report, picture


def _version() -> str:
    from safeview import __version__

    return __version__
