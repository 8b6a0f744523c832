"""Keep the context: regions over protected detections (faces) are tried last and dropped first.

A moderator or an investigator often needs a face (age, identity) that has nothing to do with
what made the image unsafe. With ``SafeguardOptions(protect=("faces",))`` the pipeline runs the
named detectors on the input and, for the search:

- scales the attribution map down to :data:`PROTECTED_WEIGHT` over the detections' boxes, so the
  attribution-guided regions follow the boxes' edges and the greedy prefixes and the coarse
  ordering reach them last;
- gives the search the protected pixels, so that pruning drops the units with the most protected
  pixels first.

The search is otherwise unchanged and still verified on the output: a face the flip needs is
obfuscated, and the report says so (:func:`protected_report`, ``report.protected``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from safeview.detectors import Detection, Detector

#: The attribution over protected pixels is multiplied by this.
PROTECTED_WEIGHT = 0.05
#: A protected detection counts as obfuscated when more than this fraction of its box is hidden.
HIDDEN_TOLERANCE = 0.05


@dataclass
class Protection:
    """What was protected in one input: each detection (in the input's pixels) and by whom."""

    detectors: tuple[str, ...]
    found: list[tuple[str, Detection]] = field(default_factory=list)

    def mask(self, height: int, width: int, scale_x: float, scale_y: float) -> np.ndarray:
        """The boxes as a boolean mask at (height, width), each box scaled by (scale_x, scale_y)
        from the input's pixels (rounded outwards)."""
        mask = np.zeros((height, width), dtype=bool)
        for _, detection in self.found:
            x0, y0, x1, y1 = detection.box
            mask[
                max(0, int(np.floor(y0 * scale_y))) : min(height, int(np.ceil(y1 * scale_y))),
                max(0, int(np.floor(x0 * scale_x))) : min(width, int(np.ceil(x1 * scale_x))),
            ] = True
        return mask


def find_protected(pixels: np.ndarray, detectors: dict[str, Detector]) -> Protection:
    """Every detection of ``detectors`` (by name) on ``pixels`` (the input, full size)."""
    found = [(name, d) for name, detector in detectors.items() for d in detector.detect(pixels)]
    return Protection(tuple(detectors), found)


def protect_attribution(
    attribution: np.ndarray, protected: np.ndarray, weight: float = PROTECTED_WEIGHT
) -> np.ndarray:
    """``attribution`` with the protected pixels scaled by ``weight``."""
    return np.where(protected, attribution * weight, attribution).astype(attribution.dtype)


def protected_report(protection: Protection, hidden: np.ndarray | None) -> dict[str, Any]:
    """``report.protected``: the detectors, each protected detection and how much of its box the
    output hides (``hidden``: the output's obfuscated mask at the input's size; None: nothing
    was obfuscated), whether any had to be obfuscated, and the fraction of their union hidden."""
    height, width = hidden.shape if hidden is not None else (0, 0)
    items = []
    union = np.zeros((height, width), dtype=bool) if hidden is not None else None
    for name, detection in protection.found:
        x0, y0, x1, y1 = (int(v) for v in detection.box)
        fraction = 0.0
        if hidden is not None and union is not None:
            box = hidden[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
            fraction = float(box.mean()) if box.size else 0.0
            union[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)] = True
        items.append(
            {
                "detector": name,
                "label": detection.label,
                "score": round(float(detection.score), 4),
                "box": [x0, y0, x1, y1],
                "fraction_hidden": round(fraction, 4),
                "obfuscated": fraction > HIDDEN_TOLERANCE,
            }
        )
    total = 0.0
    if hidden is not None and union is not None and union.any():
        total = float(hidden[union].mean())
    return {
        "detectors": list(protection.detectors),
        "found": len(items),
        "obfuscated": any(item["obfuscated"] for item in items),
        "fraction_hidden": round(total, 4),
        "detections": items,
    }


__all__ = [
    "HIDDEN_TOLERANCE",
    "PROTECTED_WEIGHT",
    "Protection",
    "find_protected",
    "protect_attribution",
    "protected_report",
]
