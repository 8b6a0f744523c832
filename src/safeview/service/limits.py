"""Bounded work and bodies: the request limiter (slots, queue, deadlines that stop the work),
the in-flight body budget and the capped, timed body reader."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from safeview.service.cancel import Cancelled, CancelToken, run_with_token
from safeview.service.errors import ServiceError


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
