"""``text``: every line of text in the image (RapidOCR, PP-OCRv4), flagged by the lexicon.

Each line a reader sees is one ``"text"`` detection (the OCR's pieces of one line joined, see
:func:`visual_lines`): the words read, a box, the lowest confidence of its pieces, and, where the
lexicon matches, ``unsafe=True`` with ``details["matched"]`` and ``details["categories"]``.

``rapidocr-onnxruntime`` 1.4.4 carries PaddleOCR's PP-OCRv4 detection and recognition models and
the direction classifier inside its wheel (3.x downloads them). Its metadata asks for
``opencv-python`` (a second OpenCV beside the headless one), so ``setup.sh`` installs it with
``--no-deps``; what it imports is numpy, OpenCV, onnxruntime, Pillow, PyYAML, pyclipper and
shapely (pyproject's ``detectors`` extra).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from safeview.detectors.base import Detection
from safeview.detectors.lexicon import Lexicon, load_lexicon

RAPIDOCR_VERSION = "1.4.4"


class TextDetector:
    """Text lines with the words read; a line containing a lexicon entry is ``unsafe``.

    Parameters
    ----------
    lexicon:
        A :class:`~safeview.detectors.lexicon.Lexicon`, the path of a lexicon JSON file, or
        ``None`` for the built-in one.
    min_score:
        Lowest recognition confidence of a line kept (RapidOCR's ``text_score``, 0.5).
    threads:
        onnxruntime intra-op threads; ``None``: :func:`safeview.threads.thread_budget`.
    """

    name = "text"
    license = "Apache-2.0"
    version = f"rapidocr-onnxruntime {RAPIDOCR_VERSION} (PP-OCRv4 det + rec)"

    def __init__(
        self,
        *,
        lexicon: Lexicon | str | Path | None = None,
        min_score: float = 0.5,
        threads: int | None = None,
    ) -> None:
        try:
            import rapidocr_onnxruntime
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise ImportError(
                f"the text detector needs rapidocr-onnxruntime=={RAPIDOCR_VERSION} (installed by "
                f"setup.sh: pip install --no-deps rapidocr-onnxruntime=={RAPIDOCR_VERSION})"
            ) from exc
        models = Path(rapidocr_onnxruntime.__file__).parent / "models"
        if not (models / "ch_PP-OCRv4_det_infer.onnx").is_file():
            # rapidocr 2.x and later fetch their models at run time: never on these machines.
            raise ImportError(
                f"no OCR models in {models}: the text detector needs rapidocr-onnxruntime=="
                f"{RAPIDOCR_VERSION}, whose wheel carries them"
            )
        if threads is None:
            from safeview.threads import thread_budget

            threads = thread_budget()
        self.lexicon = lexicon if isinstance(lexicon, Lexicon) else load_lexicon(lexicon)
        self.min_score = float(min_score)
        self._ocr = RapidOCR(
            text_score=self.min_score,
            intra_op_num_threads=int(threads),
            inter_op_num_threads=1,
        )
        # onnxruntime sessions may run concurrently, but RapidOCR keeps per-call state.
        self._lock = threading.Lock()

    def read(self, pixels: np.ndarray) -> list[Piece]:
        """RapidOCR's lines: (four corners in pixels, text, confidence)."""
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {pixels.shape}")
        bgr = np.ascontiguousarray(pixels[..., ::-1])  # PaddleOCR's models read BGR
        with self._lock:
            result: Any
            result, _ = self._ocr(bgr)
        return [(corners, str(text), float(score)) for corners, text, score in result or []]

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        height, width = pixels.shape[:2]
        found = []
        for pieces in visual_lines(self.read(pixels)):
            quads = [np.asarray(corners, np.float64).reshape(-1, 2) for corners, _, _ in pieces]
            text = " ".join(piece[1] for piece in pieces)
            score = min(piece[2] for piece in pieces)
            x0, y0 = np.min([q.min(axis=0) for q in quads], axis=0)
            x1, y1 = np.max([q.max(axis=0) for q in quads], axis=0)
            matched = self.lexicon.match(text)
            details: dict[str, Any] = {}
            if len(pieces) > 1:
                details["pieces"] = len(pieces)
            if matched:
                details["matched"] = [entry.term for entry in matched]
                details["categories"] = sorted({entry.category for entry in matched})
            found.append(
                Detection(
                    label="text",
                    score=score,
                    box=(
                        int(np.clip(np.floor(x0), 0, width)),
                        int(np.clip(np.floor(y0), 0, height)),
                        int(np.clip(np.ceil(x1), 0, width)),
                        int(np.clip(np.ceil(y1), 0, height)),
                    ),
                    unsafe=bool(matched),
                    text=text,
                    points=tuple((float(x), float(y)) for quad in quads for x, y in quad),
                    details=details,
                )
            )
        return found


Piece = tuple[list[list[float]], str, float]


def visual_lines(pieces: list[Piece], *, max_gap: float = 1.5) -> list[list[Piece]]:
    """OCR pieces grouped into the lines a reader sees, each left to right.

    The OCR splits a line where words stand far apart ("GO   DIE" read as "GO" and "DIE"), and
    a phrase split over two pieces would escape the lexicon. Two pieces join when their heights
    overlap by half the smaller one, their heights differ by less than 2x, and the gap between
    them is at most ``max_gap`` times their mean height. Each line becomes one detection (its
    ``points``: every piece's four corners, ``details["pieces"]``: how many pieces).
    """
    boxes = []
    for corners, _, _ in pieces:
        quad = np.asarray(corners, np.float64).reshape(-1, 2)
        boxes.append((*quad.min(axis=0), *quad.max(axis=0)))
    order = sorted(range(len(pieces)), key=lambda i: boxes[i][0])
    lines: list[list[int]] = []
    for i in order:
        x0, y0, _, y1 = boxes[i]
        height = y1 - y0
        for line in lines:
            _, ly0, lx1, ly1 = boxes[line[-1]]
            other = ly1 - ly0
            overlap = min(y1, ly1) - max(y0, ly0)
            similar = max(height, other) < 2.0 * max(min(height, other), 1e-6)
            gap = x0 - lx1
            if (
                similar
                and overlap >= 0.5 * min(height, other)
                and gap <= max_gap * (height + other) / 2
            ):
                line.append(i)
                break
        else:
            lines.append([i])
    lines.sort(key=lambda line: (boxes[line[0]][1], boxes[line[0]][0]))
    return [[pieces[i] for i in line] for line in lines]
