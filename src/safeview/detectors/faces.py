"""``faces``: MediaPipe's face detector (BlazeFace), context for a moderator, not a reason to flag.

Faces carry what a moderator or an investigator needs (age cues, identity): the detections are
``unsafe=False``, so a later stage can keep them visible where the search does not need them.
"""

from __future__ import annotations

import numpy as np

from safeview.detectors.base import Detection
from safeview.detectors.mediapipe_graph import MEDIAPIPE_VERSION, MediaPipeGraph

#: MediaPipe's two face models: "short" for faces within about 2 m of the camera (selfies,
#: portraits), "full" for faces up to about 5 m (group photographs, street scenes).
_GRAPHS = {
    "short": (
        "mediapipe/modules/face_detection/face_detection_short_range_cpu.binarypb",
        "facedetectionshortrange__facedetection__TensorsToDetectionsCalculator",
    ),
    "full": (
        "mediapipe/modules/face_detection/face_detection_full_range_cpu.binarypb",
        "facedetectionfullrange__facedetection__TensorsToDetectionsCalculator",
    ),
}
#: MediaPipe's six face keypoints, in its order.
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")


class FaceDetector:
    """Faces with boxes, scores and six keypoints.

    Parameters
    ----------
    model:
        ``"full"`` (faces near and far; the default, photographs are rarely selfies) or
        ``"short"`` (faces close to the camera).
    min_score:
        Detection threshold (MediaPipe's default 0.5).
    threads:
        TFLite threads; ``None``: :func:`safeview.threads.thread_budget`.
    """

    name = "faces"
    license = "Apache-2.0"

    def __init__(
        self, *, model: str = "full", min_score: float = 0.5, threads: int | None = None
    ) -> None:
        if model not in _GRAPHS:
            raise ValueError(f"model must be one of {sorted(_GRAPHS)}, got {model!r}")
        if threads is None:
            from safeview.threads import thread_budget

            threads = thread_budget()
        self.model = model
        self.min_score = float(min_score)
        self.version = f"mediapipe {MEDIAPIPE_VERSION} face detection ({model} range)"
        graph, node = _GRAPHS[model]
        self._graph = MediaPipeGraph(
            graph,
            options={f"{node}.min_score_thresh": self.min_score},
            outputs=["detections"],
            threads=threads,
        )

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        height, width = pixels.shape[:2]
        found = []
        for face in self._graph.process(pixels).detections or []:
            score = float(face.score[0]) if face.score else 0.0
            if score < self.min_score:
                continue
            box = face.location_data.relative_bounding_box
            x0, y0 = box.xmin * width, box.ymin * height
            x1, y1 = x0 + box.width * width, y0 + box.height * height
            points = tuple(
                (float(p.x * width), float(p.y * height))
                for p in face.location_data.relative_keypoints
            )
            found.append(
                Detection(
                    label="face",
                    score=score,
                    box=(
                        int(np.clip(np.floor(x0), 0, width)),
                        int(np.clip(np.floor(y0), 0, height)),
                        int(np.clip(np.ceil(x1), 0, width)),
                        int(np.clip(np.ceil(y1), 0, height)),
                    ),
                    points=points or None,
                    details={"keypoints": list(KEYPOINTS[: len(points)]), "model": self.model},
                )
            )
        return found

    def close(self) -> None:
        self._graph.close()
