"""A small in-memory ``multipart/form-data`` parser with limits.

The standard library's email parser builds a message tree for any number of parts and any
nesting depth before we could count them (250,000 tiny parts took 85 s; parts nested 2,000 deep
overflowed the stack). This parser walks the body once with ``bytes.find``, stops at ``max_parts``,
refuses nested multipart parts (depth 1) and part headers over ``max_header_bytes``; nothing is
written to disk.
"""

from __future__ import annotations

import base64
import binascii
from email.message import Message

MAX_PARTS = 16
MAX_HEADER_BYTES = 8 * 1024


class MultipartError(ValueError):
    """A malformed or over-limit multipart body; ``status`` is 400 or 413."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _params(value: str, header: str) -> Message:
    message = Message()
    message[header] = value
    return message


def boundary_of(content_type: str) -> bytes:
    boundary = _params(content_type, "content-type").get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70:
        raise MultipartError("multipart body without a valid boundary")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MultipartError("multipart boundary is not ASCII") from None


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise MultipartError("malformed multipart part header")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


def parse_form(
    body: bytes,
    content_type: str,
    *,
    max_parts: int = MAX_PARTS,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> list[tuple[str, bytes]]:
    """(name, content) of each form part in order; parts without a name are skipped."""
    delimiter = b"--" + boundary_of(content_type)
    if body.startswith(delimiter):
        position = 0
    else:  # a preamble, ended by CRLF before the first delimiter
        position = body.find(b"\r\n" + delimiter)
        if position < 0:
            raise MultipartError("malformed multipart body: no boundary")
        position += 2
    parts: list[tuple[str, bytes]] = []
    separator = b"\r\n" + delimiter
    count = 0
    while True:
        position += len(delimiter)
        if body.startswith(b"--", position):
            return parts  # the closing delimiter; an epilogue is ignored
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise MultipartError("malformed multipart body: bad boundary line")
        count += 1
        if count > max_parts:
            raise MultipartError(f"multipart body has more than {max_parts} parts", 413)
        start = line_end + 2
        end = body.find(separator, start)
        if end < 0:
            raise MultipartError("malformed multipart body: no closing boundary")
        if body.startswith(b"\r\n", start):  # a part with no headers
            head_end = start - 2
        else:
            head_end = body.find(b"\r\n\r\n", start, min(end + 2, start + max_header_bytes + 4))
            if head_end < 0:
                raise MultipartError(
                    f"multipart part headers missing or over {max_header_bytes} bytes"
                )
        headers = _headers(body[start:head_end])
        content = body[head_end + 4 : end]
        position = end + 2
        if headers.get("content-type", "").lower().startswith("multipart/"):
            raise MultipartError("nested multipart parts are not accepted")
        name = _params(headers.get("content-disposition", ""), "content-disposition").get_param(
            "name", header="content-disposition"
        )
        if not isinstance(name, str):
            continue
        encoding = headers.get("content-transfer-encoding", "").lower()
        if encoding == "base64":
            try:
                content = base64.b64decode(content)
            except (binascii.Error, ValueError):
                raise MultipartError(f"multipart part {name!r}: invalid base64") from None
        parts.append((name, content))
