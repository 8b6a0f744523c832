"""Service errors: an HTTP status, a stable code and a one-line message, as
``{"error": {"code", "message"}}``; the OpenAPI description of the error responses."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from safeview.io import ImageInputError


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


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}, **extra}, status_code=status, headers=headers
    )


def image_error(exc: ImageInputError) -> ServiceError:
    """By the error's type (``exc.http_status``), never by its message, which names the input."""
    status = exc.http_status
    code = {413: "image_too_large", 415: "unsupported_media_type"}.get(status, "invalid_image")
    return ServiceError(status, code, str(exc))


def video_error(exc: ImageInputError) -> ServiceError:
    """A video's error by its type: 413 over a cap, 415 not a container or codec we read, 422
    recognised but not decodable (truncated, corrupt), 400 otherwise."""
    status = exc.http_status
    code = {413: "video_too_large", 415: "unsupported_media_type"}.get(status, "invalid_video")
    return ServiceError(status, code, str(exc))


ERROR_SCHEMA: dict[str, Any] = {
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


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    why = {
        400: "Malformed request (bad JSON, bad multipart, invalid image or data URL, empty body)",
        401: "Missing or wrong API key",
        404: "Video is turned off on this server (SAFEVIEW_MAX_VIDEO_BYTES=0)",
        408: "The body was not received in time",
        413: "Body, image, video (size, duration, frames, frame size), input count or part "
        "count over its limit",
        415: "Not a supported image type, video container or video codec",
        422: "Invalid option or request field, no flip found, or a truncated or corrupt video",
        429: "Queue full: retry later",
        502: "The rationale backend failed",
        503: "Timed out, models still loading, or too many bodies in flight",
    }
    return {
        code: {
            "description": why[code],
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for code in codes
    }


__all__ = [
    "ERROR_SCHEMA",
    "ServiceError",
    "error_response",
    "errors",
    "image_error",
    "video_error",
]
