"""Cooperative cancellation of a request's work, without hooks in the pipeline.

The service runs each request's work in a worker thread with a :class:`CancelToken` bound to that
thread. Every guard module the service uses gets one forward-pre-hook (:func:`watch_module`) that
checks the token of the thread running the forward pass, so a request past its deadline (or
cancelled by the limiter) raises :class:`Cancelled` at its next batch: the greedy search, the
attribution and classification all call the guard's module. :func:`checkpoint` is the same check
for the service's own loops (between moderation inputs, between stages).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import torch

T = TypeVar("T")


class Cancelled(Exception):
    """The request's work was stopped: its deadline passed or it was cancelled."""


class CancelToken:
    """A deadline (``time.monotonic()``) and an event; :meth:`check` raises once either fires."""

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self.event = threading.Event()

    def cancel(self) -> None:
        self.event.set()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set() or (
            self.deadline is not None and time.monotonic() >= self.deadline
        )

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled("the request's work was cancelled")


_CURRENT = threading.local()
_WATCHED: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
_WATCHED_LOCK = threading.Lock()


def current_token() -> CancelToken | None:
    token: CancelToken | None = getattr(_CURRENT, "token", None)
    return token


def checkpoint() -> None:
    """Raise :class:`Cancelled` if the calling thread's request was cancelled."""
    token = current_token()
    if token is not None:
        token.check()


def run_with_token(token: CancelToken, function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in this thread with ``token`` bound (checked by watched modules)."""
    previous = current_token()
    _CURRENT.token = token
    try:
        token.check()
        return function(*args)
    finally:
        _CURRENT.token = previous


def _pre_forward(_module: torch.nn.Module, _inputs: Any) -> None:
    checkpoint()


def watch_module(module: torch.nn.Module) -> None:
    """Check the current thread's token before every forward pass of ``module`` (once per
    module; threads without a token are unaffected)."""
    with _WATCHED_LOCK:
        if module in _WATCHED:
            return
        try:
            module.register_forward_pre_hook(_pre_forward)
        except RuntimeError:  # a TorchScript module: only the service's own checkpoints apply
            return
        _WATCHED.add(module)
