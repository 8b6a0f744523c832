"""Evidence detectors: boxes or landmarks with labels and scores, chosen by name.

A detector answers one verb, ``detect(pixels) -> list[Detection]``, on an RGB uint8 image; each
detection says where (a box in that image's pixels, and landmarks where the model gives them),
what (a label, the text read), how sure (a score) and whether the policy cares (``unsafe``: the
gesture rule fired, the lexicon matched, an exposed intimate part). Detectors are evidence for
rationales and answers to the moderator questions, and, behind a detector-backed guard, a
decision the counterfactual search can flip.
"""

from __future__ import annotations

from typing import Any

from safeview.detectors.base import Detection, Detector
from safeview.registry import Registry

#: Every detector by name: ``factory(**options) -> Detector``.
DETECTORS: Registry[Detector] = Registry("detector")


def make_detector(name: str, **options: Any) -> Detector:
    """The detector ``name`` built with ``options`` (an unknown name or option is a
    ``ValueError`` naming what is available)."""
    return DETECTORS.create(name, **options)


def available_detectors() -> list[str]:
    return DETECTORS.names()


__all__ = ["DETECTORS", "Detection", "Detector", "available_detectors", "make_detector"]
