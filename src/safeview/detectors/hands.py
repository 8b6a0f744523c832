"""``hands``: MediaPipe's hand landmarker (palm detection + 21 landmarks), with the gesture rule.

Each hand found is a ``"hand"`` detection: its 21 landmarks in pixels (``points``), a box around
them, and which hand it is. A hand on which :mod:`safeview.detectors.gesture`'s rule fires adds a
``"middle_finger"`` detection (``unsafe=True``) boxed around that finger, with the finger's four
landmarks as its points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from safeview.detectors.base import Detection
from safeview.detectors.gesture import (
    FINGERS,
    middle_finger_box,
    middle_finger_score,
)
from safeview.detectors.mediapipe_graph import MEDIAPIPE_VERSION, MediaPipeGraph

_GRAPH = "mediapipe/modules/hand_landmark/hand_landmark_tracking_cpu.binarypb"


def _box(points: np.ndarray, width: int, height: int, pad: float) -> tuple[int, int, int, int]:
    x0, y0 = points.min(axis=0) - pad
    x1, y1 = points.max(axis=0) + pad
    return (
        int(np.clip(np.floor(x0), 0, width)),
        int(np.clip(np.floor(y0), 0, height)),
        int(np.clip(np.ceil(x1), 0, width)),
        int(np.clip(np.ceil(y1), 0, height)),
    )


class HandDetector:
    """Hands and the middle-finger gesture.

    Parameters
    ----------
    max_hands:
        Most hands reported per image (MediaPipe keeps the most confident palms).
    min_score:
        Palm-detection and hand-presence threshold (MediaPipe's ``min_detection_confidence``
        and ``min_tracking_confidence``); 0.5 is MediaPipe's default.
    complexity:
        1: the full landmark model (more accurate); 0: the lite one (faster).
    gesture:
        Whether to run the middle-finger rule.
    threads:
        TFLite threads per model; ``None``: :func:`safeview.threads.thread_budget`.
    """

    name = "hands"
    license = "Apache-2.0"

    def __init__(
        self,
        *,
        max_hands: int = 4,
        min_score: float = 0.5,
        complexity: int = 1,
        gesture: bool = True,
        threads: int | None = None,
    ) -> None:
        if complexity not in (0, 1):
            raise ValueError(f"complexity must be 0 (lite) or 1 (full), got {complexity}")
        if threads is None:
            from safeview.threads import thread_budget

            threads = thread_budget()
        self.max_hands = int(max_hands)
        self.min_score = float(min_score)
        self.gesture = gesture
        model = "full" if complexity == 1 else "lite"
        self.version = f"mediapipe {MEDIAPIPE_VERSION} hand landmarker ({model})"
        self._graph = MediaPipeGraph(
            _GRAPH,
            side_inputs={
                "model_complexity": complexity,
                "num_hands": self.max_hands,
                "use_prev_landmarks": False,  # unrelated single images, not video
            },
            options={
                "palmdetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": min_score,
                "handlandmarkcpu__ThresholdingCalculator.threshold": min_score,
            },
            outputs=["multi_hand_landmarks", "multi_handedness", "palm_detections"],
            threads=threads,
        )

    def landmarks(self, pixels: np.ndarray) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """Each hand's (21, 3) landmarks in pixels (z: depth relative to the wrist, on x's scale)
        and what MediaPipe says about it (``score``, ``handedness``, ``handedness_score``)."""
        height, width = pixels.shape[:2]
        result = self._graph.process(pixels)
        palms = []
        for palm in result.palm_detections or []:
            box = palm.location_data.relative_bounding_box
            centre = ((box.xmin + box.width / 2) * width, (box.ymin + box.height / 2) * height)
            palms.append((np.asarray(centre), float(palm.score[0]) if palm.score else 0.0))
        hands = []
        handedness = result.multi_handedness or []
        for i, hand in enumerate(result.multi_hand_landmarks or []):
            points = np.array(
                [(p.x * width, p.y * height, p.z * width) for p in hand.landmark], np.float64
            )
            info: dict[str, Any] = {}
            if i < len(handedness) and handedness[i].classification:
                label = handedness[i].classification[0]
                # MediaPipe names hands as seen in a mirrored (selfie) image; a photograph is
                # not mirrored, so its "Left" is the person's right hand.
                info["handedness"] = {"Left": "right", "Right": "left"}.get(label.label, "unknown")
                info["handedness_score"] = round(float(label.score), 3)
            # The graph reports no per-hand score; the palm detection nearest the palm's
            # landmarks (wrist and knuckles) is the one this hand came from.
            palm_centre = points[[0, 5, 9, 13, 17], :2].mean(axis=0)
            if palms:
                nearest = min(palms, key=lambda p: float(np.linalg.norm(p[0] - palm_centre)))
                info["score"] = nearest[1]
            else:
                info["score"] = self.min_score
            hands.append((points, info))
        return hands

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        height, width = pixels.shape[:2]
        found: list[Detection] = []
        for points, info in self.landmarks(pixels):
            flat = points[:, :2]
            palm = float(np.linalg.norm(flat[9] - flat[0]))
            details = {k: v for k, v in info.items() if k != "score"}
            found.append(
                Detection(
                    label="hand",
                    score=float(info["score"]),
                    box=_box(flat, width, height, pad=0.15 * palm),
                    points=tuple((float(x), float(y)) for x, y in flat),
                    details=details,
                )
            )
            if not self.gesture:
                continue
            score, measures = middle_finger_score(flat)
            if score > 0.5:
                finger = flat[list(FINGERS["middle"])]
                found.append(
                    Detection(
                        label="middle_finger",
                        score=score,
                        box=middle_finger_box(flat, width, height),
                        unsafe=True,
                        points=tuple((float(x), float(y)) for x, y in finger),
                        details={
                            "rule": "middle finger extended; index, ring, little curled",
                            "hand_score": round(float(info["score"]), 3),
                            **details,
                            "measures": measures,
                        },
                    )
                )
        return found

    def close(self) -> None:
        self._graph.close()
