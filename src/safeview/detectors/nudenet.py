"""``nudenet``: NudeNet's YOLOv8n body-part detector (18 labels, ONNX inside the ``nudenet`` wheel).

Its repository is AGPL-3.0, and the wheel's own LICENSE files are the AGPL text, while its PyPI
metadata says MIT: it stays behind this adapter, and the README names the discrepancy.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

import numpy as np

from safeview.detectors.base import Detection

NUDENET_VERSION = "3.4.2"


def policy_unsafe_labels() -> frozenset[str]:
    """The labels the built-in policy counts as unsafe (``unsafe_detector_labels``)."""
    from safeview.rationale.policy import load_policy

    return load_policy().unsafe_detector_labels


class NudeNetDetector:
    """Body parts, exposed and covered, with NudeNet's labels (``FEMALE_BREAST_EXPOSED``...).

    Parameters
    ----------
    min_score:
        Lowest score kept (NudeNet itself keeps 0.2 and up; 0.4 drops most of its noise).
    unsafe_labels:
        Labels reported ``unsafe``; ``None``: the built-in policy's ``unsafe_detector_labels``
        (exposed genitalia, breasts, buttocks, anus).
    threads:
        onnxruntime intra-op threads; ``None``: :func:`safeview.threads.thread_budget`.
    """

    name = "nudenet"
    version = f"nudenet {NUDENET_VERSION} (YOLOv8n, 320 px)"
    license = "AGPL-3.0 (repository and wheel LICENSE; PyPI metadata says MIT)"

    def __init__(
        self,
        *,
        min_score: float = 0.4,
        unsafe_labels: Iterable[str] | None = None,
        threads: int | None = None,
    ) -> None:
        import nudenet
        import onnxruntime
        from nudenet import NudeDetector

        if threads is None:
            from safeview.threads import thread_budget

            threads = thread_budget()
        self.min_score = float(min_score)
        self.unsafe_labels = (
            policy_unsafe_labels() if unsafe_labels is None else frozenset(unsafe_labels)
        )
        self._detector = NudeDetector()
        # NudeDetector builds its session with onnxruntime's defaults (a thread per core);
        # swap in one sized to this process's budget.
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        model = os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx")
        self._detector.onnx_session = onnxruntime.InferenceSession(
            model, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._lock = threading.Lock()

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {pixels.shape}")
        bgr = np.ascontiguousarray(pixels[..., ::-1])
        with self._lock:
            raw = self._detector.detect(bgr)
        found = []
        for item in raw:
            score = float(item["score"])
            if score < self.min_score:
                continue
            x, y, w, h = (int(v) for v in item["box"])
            label = str(item["class"])
            found.append(
                Detection(
                    label=label,
                    score=score,
                    box=(x, y, x + w, y + h),
                    unsafe=label in self.unsafe_labels,
                )
            )
        return found
