"""Masks that follow the content between key frames: dense optical flow, warped both ways.

Between two key frames (where the image pipeline's search gave a mask), each frame's mask is the
union of the earlier key's mask carried forward frame by frame and the later key's mask carried
backward, both along OpenCV's dense optical flow (DIS, or Farneback) at a small size, then dilated
by a margin that absorbs the flow's drift. Content that enters between two keys is covered by the
later key's mask carried back; content that leaves, by the earlier one carried forward.
"""

from __future__ import annotations

import cv2
import numpy as np

#: A tracked mask covers a pixel when at least this much of a key mask's coverage arrives there.
COVERAGE = 0.25


class MaskTracker:
    """Optical flow and mask warping at ``flow_size`` pixels on the longer side.

    Parameters
    ----------
    height, width:
        The frames' size.
    method:
        ``"dis"`` (OpenCV's DIS optical flow, fast preset) or ``"farneback"``.
    flow_size:
        Longer side of the frames the flow is computed on.
    margin:
        Dilation of tracked masks, as a fraction of the frame's longer side.
    """

    def __init__(
        self, height: int, width: int, *, method: str = "dis", flow_size: int = 320,
        margin: float = 0.01,
    ) -> None:  # fmt: skip
        scale = min(1.0, flow_size / max(height, width))
        self.size = (max(8, round(width * scale)), max(8, round(height * scale)))  # (w, h)
        self.full = (width, height)
        self.method = method
        radius = max(0, round(margin * max(self.size)))
        self._kernel = (
            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
            if radius
            else None
        )
        self._dis = (
            cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST) if method == "dis" else None
        )
        w, h = self.size
        self._grid_x, self._grid_y = np.meshgrid(
            np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
        )

    def grey(self, pixels: np.ndarray) -> np.ndarray:
        """The small grey frame flow is computed on."""
        small = cv2.resize(pixels, self.size, interpolation=cv2.INTER_AREA)
        return np.asarray(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))

    def flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(h, w, 2) flow with ``source(x) ~ target(x + flow(x))``: where each pixel of
        ``source`` is found in ``target``."""
        empty = np.zeros((*source.shape, 2), np.float32)
        if self._dis is not None:
            return np.asarray(self._dis.calc(source, target, empty))
        return np.asarray(
            cv2.calcOpticalFlowFarneback(source, target, empty, 0.5, 3, 15, 3, 5, 1.2, 0)
        )

    def shrink(self, mask: np.ndarray) -> np.ndarray:
        """A full-size boolean mask as coverage (0..1) at the small size."""
        return np.asarray(
            cv2.resize(mask.astype(np.float32), self.size, interpolation=cv2.INTER_AREA)
        )

    def nearest(self, mask: np.ndarray) -> np.ndarray:
        """A full-size boolean mask at the small size, by nearest neighbour (cheap)."""
        small = cv2.resize(mask.view(np.uint8), self.size, interpolation=cv2.INTER_NEAREST)
        return np.asarray(small).astype(bool)

    def warp(self, coverage: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """Carry ``coverage`` (of frame B) to frame A, given ``flow`` = where each pixel of A is
        found in B (:meth:`flow` ``(A, B)``)."""
        map_x = self._grid_x + flow[..., 0]
        map_y = self._grid_y + flow[..., 1]
        return np.asarray(
            cv2.remap(coverage, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        )

    def small_mask(self, coverage: np.ndarray) -> np.ndarray:
        """Tracked coverage -> the small boolean mask, dilated by the margin."""
        mask = (coverage >= COVERAGE).astype(np.uint8)
        if self._kernel is not None and mask.any():
            return np.asarray(cv2.dilate(mask, self._kernel)).astype(bool)
        return mask.astype(bool)

    def enlarge(self, mask: np.ndarray) -> np.ndarray:
        """A small boolean mask at full size (smooth edges, never smaller than the small one)."""
        big = cv2.resize(mask.astype(np.uint8) * 255, self.full, interpolation=cv2.INTER_LINEAR)
        return np.asarray(big > 0)


def propagate(
    tracker: MaskTracker,
    greys: list[np.ndarray],
    first: np.ndarray | None,
    last: np.ndarray | None,
    flows: dict[tuple[int, int], np.ndarray],
    offset: int = 0,
) -> list[np.ndarray]:
    """Coverage for the frames strictly between two keys: ``first`` (coverage of ``greys[0]``)
    carried forward, ``last`` (of ``greys[-1]``) carried backward, their maximum.

    ``flows`` caches flow fields by (frame, frame) across calls (``offset`` is the frame index
    of ``greys[0]``), so re-keying a stretch does not compute them again.
    """

    def flow(a: int, b: int) -> np.ndarray:
        key = (offset + a, offset + b)
        if key not in flows:
            flows[key] = tracker.flow(greys[a], greys[b])
        return flows[key]

    n = len(greys)
    inner = [np.zeros(greys[0].shape, np.float32) for _ in range(max(0, n - 2))]
    if first is not None and first.any():
        coverage = first
        for i in range(1, n - 1):
            coverage = tracker.warp(coverage, flow(i, i - 1))
            inner[i - 1] = np.maximum(inner[i - 1], coverage)
    if last is not None and last.any():
        coverage = last
        for i in range(n - 2, 0, -1):
            coverage = tracker.warp(coverage, flow(i, i + 1))
            inner[i - 1] = np.maximum(inner[i - 1], coverage)
    return inner


def mask_iou(a: np.ndarray, b: np.ndarray) -> float | None:
    """Intersection over union of two boolean masks; None when both are empty."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return None
    return float(np.logical_and(a, b).sum() / union)


__all__ = ["COVERAGE", "MaskTracker", "mask_iou", "propagate"]
