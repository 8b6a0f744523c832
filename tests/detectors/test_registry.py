"""The registry and the result type, and the grounded backend reading Detection objects (no
models loaded)."""

from __future__ import annotations

import numpy as np
import pytest

from safeview.detectors import DETECTORS, Detection, available_detectors, make_detector
from safeview.rationale.grounded import GroundedBackend, evidence_item
from tests.rationale.conftest import context_for


def test_every_detector_is_registered() -> None:
    assert {"hands", "faces", "text", "nudenet"} <= set(available_detectors())
    with pytest.raises(ValueError, match="unknown detector 'gestures'"):
        make_detector("gestures")
    with pytest.raises(ValueError, match="bad option for detector 'hands'"):
        DETECTORS.check_options("hands", {"colour": "red"})
    DETECTORS.check_options("text", {"lexicon": "my.json", "min_score": 0.6, "threads": 1})


def test_detection_to_dict() -> None:
    found = Detection(
        "middle_finger",
        0.87654,
        (1, 2, 30, 40),
        unsafe=True,
        points=((1.234, 2.0), (3.0, 4.56)),
        details={"handedness": "left"},
    )
    assert found.to_dict() == {
        "label": "middle_finger",
        "score": 0.8765,
        "box": [1, 2, 30, 40],
        "unsafe": True,
        "points": [[1.2, 2.0], [3.0, 4.6]],
        "details": {"handedness": "left"},
    }
    assert evidence_item(found) == found.to_dict()
    assert evidence_item({"label": "X", "score": 0.5, "box": (1, 2, 3, 4)})["box"] == [1, 2, 3, 4]


class DetectionDetector:
    name = "detections"

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        return [
            Detection("FEMALE_BREAST_EXPOSED", 0.8, (120, 20, 180, 80), unsafe=False),
            Detection("FACE_FEMALE", 0.9, (130, 0, 170, 30), unsafe=True),
            Detection("middle_finger", 0.7, (10, 200, 40, 290), unsafe=True),
            Detection("text", 0.9, (0, 0, 50, 10), text="hello"),
        ]


def test_grounded_backend_reads_detections() -> None:
    pixels = np.zeros((300, 300, 3), np.uint8)
    rationale = GroundedBackend(DetectionDetector()).explain(context_for(pixels, 0.93))
    by_label = {item["label"]: item for item in rationale.evidence}
    # The policy decides for the labels it names; other detectors' verdicts stand.
    assert by_label["FEMALE_BREAST_EXPOSED"]["unsafe"] is True
    assert by_label["FACE_FEMALE"]["unsafe"] is False
    assert by_label["middle_finger"]["unsafe"] is True
    assert by_label["text"]["unsafe"] is False and by_label["text"]["text"] == "hello"
    assert by_label["middle_finger"]["position"] == "lower left"
    assert "exposed female breast (upper centre, score 0.80)" in rationale.text
