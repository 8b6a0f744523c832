"""How ``safeview serve`` runs uvicorn: connection-level limits the app itself cannot enforce.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but not a connection that
sends its request head slowly (slowloris): :class:`HeadDeadlineH11Protocol` closes a connection
whose next request head is not complete ``SAFEVIEW_HEADER_TIMEOUT_S`` seconds after it opened or
after its previous response. ``h11_max_incomplete_event_size`` caps a request head's size and
``limit_concurrency`` the connections and tasks (503 beyond).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 16 * 1024
MAX_CONNECTIONS = 256


def _env_number(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class HeadDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = _env_number("SAFEVIEW_HEADER_TIMEOUT_S", HEADER_TIMEOUT_S)
        self._head_timer: asyncio.TimerHandle | None = None
        self._armed_cycle: object = None

    def _arm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._armed_cycle = self.cycle
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.cycle is self._armed_cycle and not self.transport.is_closing():
            # no request head arrived in time: drop the connection
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        self._arm_head_deadline()  # before super(): a pipelined request starts a new cycle there
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)


def uvicorn_options() -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` with the service's bounds."""
    return {
        "http": HeadDeadlineH11Protocol,
        "timeout_keep_alive": int(_env_number("SAFEVIEW_KEEP_ALIVE_S", KEEP_ALIVE_S)),
        "h11_max_incomplete_event_size": int(
            _env_number("SAFEVIEW_MAX_HEAD_BYTES", MAX_HEAD_BYTES)
        ),
        "limit_concurrency": int(_env_number("SAFEVIEW_MAX_CONNECTIONS", MAX_CONNECTIONS)),
        "server_header": False,
    }
