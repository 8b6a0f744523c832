"""Segmenters: an image (and optionally its attribution map) -> non-overlapping regions.

Every segmenter has one verb, ``segment(image, attribution=None) -> labels``; :func:`segment`
chooses one by name and guarantees the contract the search relies on: an int32 label map of the
image's height x width with labels 0..K-1, every label present.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from safeview.registry import Registry


class Segmenter(Protocol):
    name: str

    def segment(self, image: np.ndarray, attribution: np.ndarray | None = None) -> np.ndarray: ...


def _classic(class_name: str) -> Callable[..., Segmenter]:
    def factory(**options: Any) -> Segmenter:
        from safeview.segmentation import classic

        segmenter: Segmenter = getattr(classic, class_name)(**options)
        return segmenter

    return factory


#: Every segmenter by name: ``factory(**options) -> Segmenter``.
SEGMENTERS: Registry[Segmenter] = Registry("segmenter")
SEGMENTERS.register("slic", _classic("SLIC"))
SEGMENTERS.register("felzenszwalb", _classic("Felzenszwalb"))
SEGMENTERS.register("watershed", _classic("CompactWatershed"))


def register_segmenter(name: str, factory: Callable[..., Segmenter]) -> None:
    """Make ``factory(**options) -> Segmenter`` available as ``name`` (API and CLI)."""
    SEGMENTERS.register(name, factory)


def available_segmenters() -> list[str]:
    return SEGMENTERS.names()


def make_segmenter(method: str, **options: Any) -> Segmenter:
    """The segmenter ``method`` built with ``options`` (``ValueError`` for an unknown name or a bad
    option)."""
    return SEGMENTERS.create(method, **options)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered to 0..K-1 in order of first appearance, as int32."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int32)


def segment(
    image: np.ndarray,
    method: str | Segmenter = "slic",
    attribution: np.ndarray | None = None,
    **options: Any,
) -> np.ndarray:
    """Segment ``image`` (H x W x 3 uint8) into int32 labels 0..K-1 of shape H x W."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"segment needs an H x W x 3 image, got shape {image.shape}")
    if attribution is not None and attribution.shape != image.shape[:2]:
        raise ValueError(
            f"attribution shape {attribution.shape} does not match image {image.shape[:2]}"
        )
    segmenter = make_segmenter(method, **options) if isinstance(method, str) else method
    labels = np.asarray(segmenter.segment(image, attribution))
    if labels.shape != image.shape[:2]:
        raise RuntimeError(f"segmenter {segmenter.name} returned shape {labels.shape}")
    return relabel(labels)


__all__ = [
    "SEGMENTERS",
    "Segmenter",
    "available_segmenters",
    "make_segmenter",
    "register_segmenter",
    "relabel",
    "segment",
]


def _bass(**options: Any) -> Segmenter:
    from safeview.segmentation.bass import BASS

    return BASS(**options)


def _bass_guided(**options: Any) -> Segmenter:
    from safeview.segmentation.bass import GuidedBASS

    return GuidedBASS(**options)


register_segmenter("bass", _bass)
register_segmenter("bass-guided", _bass_guided)
