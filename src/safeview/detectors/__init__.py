"""Evidence detectors: boxes or landmarks with labels and scores, chosen by name.

A detector answers one verb, ``detect(pixels) -> list[Detection]``, on an RGB uint8 image; each
detection says where (a box in that image's pixels, and landmarks where the model gives them),
what (a label, the text read), how sure (a score) and whether the policy cares (``unsafe``: the
gesture rule fired, the lexicon matched, an exposed intimate part). Detectors are evidence for
rationales and answers to the moderator questions, and, behind a detector-backed guard, a
decision the counterfactual search can flip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safeview.detectors.base import Detection, Detector
from safeview.detectors.lexicon import Lexicon, load_lexicon
from safeview.registry import Registry

#: Every detector by name: ``factory(**options) -> Detector``.
DETECTORS: Registry[Detector] = Registry("detector")


# The factories import their runtimes (MediaPipe, RapidOCR, NudeNet) only when called, so that
# importing safeview stays fast and a missing optional runtime fails only the detector needing it.
@DETECTORS.register("hands")
def _hands(
    max_hands: int = 4,
    min_score: float = 0.5,
    complexity: int = 1,
    gesture: bool = True,
    threads: int | None = None,
) -> Detector:
    """MediaPipe hand landmarks (21 per hand) and the middle-finger rule."""
    from safeview.detectors.hands import HandDetector

    return HandDetector(
        max_hands=max_hands,
        min_score=min_score,
        complexity=complexity,
        gesture=gesture,
        threads=threads,
    )


@DETECTORS.register("faces")
def _faces(model: str = "full", min_score: float = 0.5, threads: int | None = None) -> Detector:
    """MediaPipe face detection (context, never unsafe)."""
    from safeview.detectors.faces import FaceDetector

    return FaceDetector(model=model, min_score=min_score, threads=threads)


@DETECTORS.register("text")
def _text(
    lexicon: str | Path | Lexicon | None = None, min_score: float = 0.5, threads: int | None = None
) -> Detector:
    """RapidOCR text lines, flagged by the lexicon (a JSON file, a Lexicon; None: built in)."""
    from safeview.detectors.text import TextDetector

    return TextDetector(lexicon=lexicon, min_score=min_score, threads=threads)


@DETECTORS.register("nudenet")
def _nudenet(
    min_score: float = 0.4, unsafe_labels: list[str] | None = None, threads: int | None = None
) -> Detector:
    """NudeNet body parts; unsafe: the policy's ``unsafe_detector_labels``."""
    from safeview.detectors.nudenet import NudeNetDetector

    return NudeNetDetector(min_score=min_score, unsafe_labels=unsafe_labels, threads=threads)


def make_detector(name: str, **options: Any) -> Detector:
    """The detector ``name`` built with ``options`` (an unknown name or option is a
    ``ValueError`` naming what is available)."""
    return DETECTORS.create(name, **options)


def available_detectors() -> list[str]:
    return DETECTORS.names()


__all__ = [
    "DETECTORS",
    "Detection",
    "Detector",
    "Lexicon",
    "available_detectors",
    "load_lexicon",
    "make_detector",
]
