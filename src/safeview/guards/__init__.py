"""Guards: classifiers with gradients, chosen by name (``"open-nsfw"``, ``"imagenet"``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import torch

from safeview.guards.base import (
    Guard,
    Verdict,
    default_target,
    is_flagged,
    scores,
    select_device,
)

GuardFactory = Callable[[torch.device], Guard]


def _open_nsfw(device: torch.device) -> Guard:
    from safeview.guards.open_nsfw import OpenNSFWGuard

    return OpenNSFWGuard(device)


def _imagenet(device: torch.device) -> Guard:
    from safeview.guards.imagenet import ImageNetGuard

    return ImageNetGuard(device)


_FACTORIES: dict[str, GuardFactory] = {"open-nsfw": _open_nsfw, "imagenet": _imagenet}
_CACHE: dict[tuple[str, str], Guard] = {}
_LOCK = threading.Lock()


def register_guard(name: str, factory: GuardFactory) -> None:
    """Make ``factory(device) -> Guard`` loadable as ``name`` everywhere (API, CLI)."""
    _FACTORIES[name] = factory


def available_guards() -> list[str]:
    return sorted(_FACTORIES)


def is_checkpoint_path(guard: str) -> bool:
    """Whether ``guard`` names a checkpoint file rather than a registered guard."""
    return guard not in _FACTORIES and (
        guard.endswith((".pt", ".pth")) or os.sep in guard or os.path.isfile(guard)
    )


def load_guard(guard: str | Guard, device: str | torch.device | None = None) -> Guard:
    """A guard by name or checkpoint path (``safeview train``), loaded once per process and
    device; a Guard object is returned as is."""
    if not isinstance(guard, str):
        return guard
    resolved = select_device(device)
    if is_checkpoint_path(guard):
        from safeview.guards.trained import TrainedGuard

        path = os.path.abspath(guard)
        if not os.path.isfile(path):
            raise ValueError(f"guard checkpoint {guard} does not exist")
        stat = os.stat(path)
        key = (f"{path}@{stat.st_mtime_ns}:{stat.st_size}", str(resolved))
        with _LOCK:
            if key not in _CACHE:
                _CACHE[key] = TrainedGuard(path, resolved)
            return _CACHE[key]
    if guard not in _FACTORIES:
        raise ValueError(
            f"unknown guard {guard!r} (available: {', '.join(available_guards())}, "
            "or a checkpoint from `safeview train`)"
        )
    key = (guard, str(resolved))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _FACTORIES[guard](resolved)
        return _CACHE[key]


__all__ = [
    "Guard",
    "Verdict",
    "available_guards",
    "default_target",
    "is_checkpoint_path",
    "is_flagged",
    "load_guard",
    "register_guard",
    "scores",
]
