"""A detector as a guard: flagged while the detector finds something the policy cares about.

:class:`DetectorGuard` scores an image by its strongest *unsafe* detection (the gesture rule
firing, abusive words read, an exposed intimate part): ``p(unsafe)`` is that detection's score,
0 when there is none. Its module runs the detector on each image of the batch, so the pipeline's
search, verification and reports treat it like any guard; and the counterfactual search
obfuscates until the detector no longer fires, verified by the same detector on the output.

A detector has no gradients, so FullGrad cannot explain it. The guard brings its own attribution
(:class:`DetectionMap`, used whatever attribution method is asked for): its unsafe detections'
boxes (or landmarks' hull, padded) weighted by their scores, slightly smoothed, so the
attribution-guided superpixels follow them and the search tries them first. Its
:meth:`~DetectorGuard.unsafe_masks` (an optional guard member the pipeline reads) makes each
detection one region of the search, hidden whole.

The image is *fitted* into the guard's square input (aspect ratio kept, centred on black, as
:meth:`DetectorGuard.image_window` says), not squashed: text, hands and bodies keep their
geometry (the gesture rule reads angles, the OCR reads letter shapes). ``fit="squash"`` squashes
as the classifiers do.

Registered guards (:mod:`safeview.guards`) built on it: ``gesture`` (the hands detector's
``middle_finger``), ``abusive-text`` (text lines the lexicon flags) and ``nudity`` (NudeNet's
exposed intimate parts, as the built-in policy's ``unsafe_detector_labels`` lists them); their
sizes are :data:`GUARD_SIZES`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import cv2
import numpy as np
import torch

from safeview.detectors import Detection, Detector
from safeview.guards.base import Decision, select_device
from safeview.io import resize

#: p(unsafe) is kept inside (EPSILON, 1 - EPSILON) so that its logits stay finite.
EPSILON = 1e-6
#: Images whose detections a guard keeps (by content).
_RECENT = 4

#: The input square of each registered detector guard (the image's longer side is fitted to it),
#: also the shorter side of the search's working copy. Measured on BSDS500 (bench/README.md,
#: section 11.2): ``abusive-text``: of the abusive phrases drawn 18 and 26 px high on the
#: 481 x 321 photographs, the OCR flags 47 of 48 renders at 384, 46 at 512, 44 at 320 and 43 at
#: 224 (the same OCR time: RapidOCR scales its input to 736 px anyway); 384 rather than 512
#: keeps the working copy of a large photograph smaller (BASS: about 0.6 s at 576 x 384 against
#: 1.3 s at 768 x 512). ``gesture``: MediaPipe finds 25 of the 27 hands at 384 (26 at 512, 19 at
#: 256). ``nudity``: NudeNet reads a 320 px letterbox itself.
GUARD_SIZES = {"gesture": 384, "abusive-text": 384, "nudity": 320}


def _pixels(x: torch.Tensor) -> list[np.ndarray]:
    """The RGB uint8 images of a preprocessed batch (N, 3, H, W) of 0-255 values."""
    batch = x.detach().clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(image) for image in batch]


class _DetectorModule(torch.nn.Module):
    """(N, 3, H, W) 0-255 -> (N, 2) logits: log(1 - p), log(p), p the strongest unsafe score."""

    def __init__(self, strongest: Callable[[np.ndarray], float]) -> None:
        super().__init__()
        self.strongest = strongest

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.tensor(
            [self.strongest(image) for image in _pixels(x)], dtype=torch.float64, device=x.device
        ).clamp(EPSILON, 1.0 - EPSILON)
        return torch.stack([torch.log1p(-p), torch.log(p)], dim=1).float()


class DetectionMap:
    """The attribution of a :class:`DetectorGuard`: where its unsafe detections are."""

    name = "detections"

    def __init__(self, guard: DetectorGuard) -> None:
        self.guard = guard

    def attribute(self, x: torch.Tensor, target: int | list[int]) -> np.ndarray:
        """(B, H, W) maps in [0, 1]: each unsafe detection's box (padded hull of its landmarks
        where it has them) filled with its score; the safe class gets the complement."""
        maps = []
        for image in _pixels(x):
            height, width = image.shape[:2]
            found = np.zeros((height, width), dtype=np.float32)
            for detection in self.guard.unsafe(image):
                _paint(found, detection)
            if found.max() > 0:
                sigma = 0.01 * max(height, width)
                found = np.asarray(cv2.GaussianBlur(found, (0, 0), sigmaX=sigma), dtype=np.float32)
                found /= found.max()
            targets = target if isinstance(target, list) else [target]
            maps.append(found if targets[0] == 1 else 1.0 - found)
        return np.stack(maps)


def _paint(canvas: np.ndarray, detection: Detection) -> None:
    height, width = canvas.shape
    score = float(detection.score)
    if detection.points:
        points = np.asarray(detection.points, dtype=np.float32)
        hull = cv2.convexHull(points.reshape(-1, 1, 2)).astype(np.int32)
        mask = np.zeros_like(canvas, dtype=np.uint8)
        cv2.fillConvexPoly(mask, hull, 1)
        pad = max(1, int(0.02 * max(height, width)))
        grown = cv2.dilate(mask, np.ones((2 * pad + 1, 2 * pad + 1), np.uint8)) > 0
        canvas[grown] = np.maximum(canvas[grown], score)
        return
    x0, y0, x1, y1 = detection.box
    x0, x1 = max(0, int(x0)), min(width, int(x1))
    y0, y1 = max(0, int(y0)), min(height, int(y1))
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], score)


class DetectorGuard:
    """``detector`` as a threshold guard on ``"unsafe"``: p = its strongest unsafe detection.

    Parameters
    ----------
    name:
        The guard's registered name (e.g. ``"gesture"``).
    detector:
        Any :class:`~safeview.detectors.Detector`.
    labels:
        Only detections with these labels count (default: every detection marked ``unsafe``).
    size:
        The square the image is fitted into before detection; also the shorter side of the
        search's working copy (so mind segmentation's cost when raising it).
    fit:
        ``"letterbox"`` (default): the whole image, aspect ratio kept, centred on black;
        ``"squash"``: resized to the square as the classifiers do.
    costly:
        Whether the detector costs far more per image than a classifier (the OCR): video then
        scores this guard on a sparser grid of frames (``VideoOptions.costly_every``).
    """

    decision: Decision = "threshold"
    categories: tuple[str, ...] = ("safe", "unsafe")
    unsafe_category: str | None = "unsafe"
    module: torch.nn.Module

    def __init__(
        self,
        name: str,
        detector: Detector,
        *,
        labels: tuple[str, ...] | None = None,
        size: int = 512,
        fit: str = "letterbox",
        costly: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        if fit not in ("letterbox", "squash"):
            raise ValueError(f"fit must be 'letterbox' or 'squash', got {fit!r}")
        if size < 8:
            raise ValueError(f"size must be >= 8, got {size}")
        self.name = name
        self.fit = fit
        self.costly = bool(costly)
        self.detector = detector
        self.version = f"{detector.name} {detector.version}"
        self.labels = labels
        self.input_size = (size, size)
        self.device = select_device(device) if device is not None else torch.device("cpu")
        self._recent: OrderedDict[bytes, list[Detection]] = OrderedDict()
        self._lock = threading.Lock()
        self.module = _DetectorModule(self.strongest)
        #: Used whatever attribution method is asked for (a detector has no gradients).
        self.own_attribution = DetectionMap(self)

    def unsafe(self, pixels: np.ndarray) -> list[Detection]:
        """The detections that count, strongest first. The last few images' detections are
        kept: attribution and :meth:`unsafe_masks` read the same working image."""
        pixels = np.ascontiguousarray(pixels)
        key = hashlib.blake2b(pixels.data, digest_size=16).digest() + repr(pixels.shape).encode()
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
                return list(self._recent[key])
        found = [
            d
            for d in self.detector.detect(pixels)
            if d.unsafe and (self.labels is None or d.label in self.labels)
        ]
        found.sort(key=lambda d: -d.score)
        with self._lock:
            self._recent[key] = found
            while len(self._recent) > _RECENT:
                self._recent.popitem(last=False)
        return list(found)

    def unsafe_masks(self, image: np.ndarray, pad: float = 0.1) -> list[np.ndarray]:
        """Each unsafe detection on ``image`` (any size; fitted as the guard sees it) as a
        boolean mask over ``image``: its box, padded by ``pad`` of the box's shorter side (at
        least a pixel).

        The pipeline cuts each into the search's regions as one region, so that a detection is
        hidden whole (all the words of a line, the whole finger), never just enough of it for
        the detector to miss it while a person still sees it."""
        height, width = image.shape[:2]
        top, left, bottom, right = self.image_window(height, width)
        scale_x, scale_y = width / (right - left), height / (bottom - top)
        masks = []
        for detection in self.unsafe(self.fitted(image)):
            x0, y0, x1, y1 = detection.box
            margin = max(1.0, pad * min(x1 - x0, y1 - y0))
            mask = np.zeros((height, width), dtype=bool)
            mask[
                max(0, int(np.floor((y0 - margin - top) * scale_y))) : min(
                    height, int(np.ceil((y1 + margin - top) * scale_y))
                ),
                max(0, int(np.floor((x0 - margin - left) * scale_x))) : min(
                    width, int(np.ceil((x1 + margin - left) * scale_x))
                ),
            ] = True
            if mask.any():
                masks.append(mask)
        return masks

    def strongest(self, pixels: np.ndarray) -> float:
        found = self.unsafe(pixels)
        return float(found[0].score) if found else 0.0

    def image_window(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right): where an image of ``height`` x ``width`` lies in the
        input (the whole input when squashed)."""
        size = self.input_size[0]
        if self.fit == "squash":
            return 0, 0, size, size
        scale = size / max(height, width)
        fit_height = max(1, min(size, round(height * scale)))
        fit_width = max(1, min(size, round(width * scale)))
        top, left = (size - fit_height) // 2, (size - fit_width) // 2
        return top, left, top + fit_height, left + fit_width

    def fitted(self, image: np.ndarray) -> np.ndarray:
        """One RGB uint8 image as the detector sees it: (size, size, 3)."""
        image = np.asarray(image)
        if self.fit == "squash":
            return resize(image, self.input_size)
        size = self.input_size[0]
        top, left, bottom, right = self.image_window(*image.shape[:2])
        canvas = np.zeros((size, size, 3), dtype=np.uint8)
        canvas[top:bottom, left:right] = resize(image, (right - left, bottom - top))
        return canvas

    def preprocess(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        """RGB uint8 images -> (N, 3, size, size) float 0-255 (the detector reads them back)."""
        batch = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else images
        stacked = np.stack([self.fitted(image) for image in batch]).astype(np.float32)
        return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)


def detector_guard(name: str) -> DetectorGuard:
    """A registered detector guard by name (``gesture``, ``abusive-text``, ``nudity``), its
    detector built with the process's thread budget. The detectors run on the CPU whatever
    device the pipeline uses."""
    from safeview.detectors import make_detector

    if name == "gesture":
        hands = make_detector("hands")
        return DetectorGuard(name, hands, labels=("middle_finger",), size=GUARD_SIZES[name])
    if name == "abusive-text":
        # The OCR: 0.2-0.7 s an image on one core (bench/README.md, 11.1), 10x a classifier.
        return DetectorGuard(name, make_detector("text"), size=GUARD_SIZES[name], costly=True)
    if name == "nudity":
        return DetectorGuard(name, make_detector("nudenet"), size=GUARD_SIZES[name])
    raise ValueError(f"no detector guard named {name!r} (known: {', '.join(GUARD_SIZES)})")


__all__ = ["GUARD_SIZES", "DetectionMap", "DetectorGuard", "detector_guard"]
