"""Security headers on every response and the review page's content security policy."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

_PAGE_CSP = (
    "default-src 'none'; script-src {script}; style-src {style}; img-src 'self' data: blob:; "
    "media-src blob:; connect-src 'self'; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
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
