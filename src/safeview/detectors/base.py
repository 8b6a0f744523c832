"""The detector protocol and its one result type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One thing a detector found, in the pixels of the image it was given."""

    #: What was found: ``"hand"``, ``"middle_finger"``, ``"text"``, ``"face"``, a NudeNet label...
    label: str
    score: float
    #: [x0, y0, x1, y1], x1/y1 exclusive, in the image's pixels.
    box: tuple[int, int, int, int]
    #: Whether the policy cares: the gesture rule fired, the lexicon matched, an exposed part.
    unsafe: bool = False
    #: The words read (text detectors), and the lexicon entries they matched.
    text: str | None = None
    #: Landmarks in the image's pixels (hands: 21 points), where the model gives them.
    points: tuple[tuple[float, float], ...] | None = None
    #: Anything else worth reporting (e.g. ``{"matched": ["loser"], "handedness": "Left"}``).
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "label": self.label,
            "score": round(float(self.score), 4),
            "box": [int(v) for v in self.box],
            "unsafe": self.unsafe,
        }
        if self.text is not None:
            data["text"] = self.text
        if self.points is not None:
            data["points"] = [[round(float(x), 1), round(float(y), 1)] for x, y in self.points]
        if self.details:
            data["details"] = dict(self.details)
        return data


@runtime_checkable
class Detector(Protocol):
    """What the rest of safeview needs from a detector."""

    name: str
    version: str
    #: The model's licence, as its package states it (the README lists them).
    license: str

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        """Everything found in an RGB uint8 image (H, W, 3)."""
        ...
