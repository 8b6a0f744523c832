"""Which frames are classified, where the shots change, and which stretches are flagged.

The guards see every ``sample_every``-th frame, the first frame of every shot and the last frame;
a costly guard (the OCR) only some of them (:class:`SparseSchedule`).
Scene cuts come from a cheap colour-histogram difference between consecutive frames (on a
subsample of the decoded planes). A *span* is a run of flagged samples, extended to the unflagged
samples on either side (the frames between a safe sample and an unsafe one are unknown, so they
are treated as unsafe), but never back across the cut that starts its shot.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two colour histograms of three channels (each channel
    summing to 1), averaged over the channels: in [0, 1]."""
    return float(np.abs(a - b).sum() / 6.0)


class CutDetector:
    """Feed each frame's histogram in order; :meth:`is_cut` says whether it starts a new shot.

    A cut is a histogram distance to the previous frame above ``threshold``, or an abrupt one:
    above a third of it and five times the largest distance of the last ``window`` frames (two
    shots with similar colours still differ far more than consecutive frames of one shot).
    """

    def __init__(self, threshold: float, window: int = 12) -> None:
        self.threshold = threshold
        self._previous: np.ndarray | None = None
        self._recent: deque[float] = deque(maxlen=window)

    def is_cut(self, histogram: np.ndarray) -> bool:
        previous, self._previous = self._previous, histogram
        if previous is None:
            return False
        distance = histogram_distance(previous, histogram)
        recent = max(self._recent, default=0.0)
        cut = distance > self.threshold or (
            len(self._recent) >= 3 and distance > self.threshold / 3 and distance > 5 * recent
        )
        if cut:
            self._recent.clear()
        else:
            self._recent.append(distance)
        return cut


@dataclass(frozen=True)
class Span:
    """Frames ``start`` to ``end`` (inclusive) treated as unsafe; ``samples`` are the flagged
    samples that make it."""

    start: int
    end: int
    samples: tuple[int, ...]

    def __contains__(self, frame: object) -> bool:
        return isinstance(frame, int) and self.start <= frame <= self.end

    @property
    def frames(self) -> int:
        return self.end - self.start + 1


def flagged_spans(
    samples: list[int], flagged: list[bool], cuts: set[int], last_frame: int
) -> list[Span]:
    """Runs of flagged ``samples`` (sorted frame indices, the first frame and ``last_frame``
    among them) as spans, each extended to the frames just after the previous sample and just
    before the next one; a run whose first sample starts a shot (in ``cuts``) is not extended
    back into the shot before."""
    spans: list[Span] = []
    i, n = 0, len(samples)
    while i < n:
        if not flagged[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and flagged[j + 1]:
            j += 1
        first = samples[i]
        start = first if i == 0 or first in cuts else samples[i - 1] + 1
        end = samples[j + 1] - 1 if j + 1 < n else last_frame
        spans.append(Span(start, end, tuple(samples[i : j + 1])))
        i = j + 1
    return spans


class SparseSchedule:
    """Which samples one costly guard scores, fed the samples in order.

    It scores a sample (:meth:`due`) on its sparse grid (at least ``every`` seconds after the
    last sample it scored, and never more than :attr:`MAX_SKIPPED` samples later), at the first
    sample, at a cut, at the last frame, where another guard
    flags the sample, and, once it has flagged, every sample until it stops flagging. The samples
    it skipped are kept (:meth:`skip`); when it flags one it scores, :meth:`scored` hands them
    back to be scored too (back to its previous sample, never across a cut), so that the span it
    flags starts and ends on samples it scored, as precisely as the other guards' spans.
    """

    #: At most this many samples in a row go unscored, whatever ``every`` (memory: the skipped
    #: samples' pixels are kept for the dense check).
    MAX_SKIPPED = 32

    def __init__(self, every: float) -> None:
        self.every = every
        self.last_time: float | None = None
        self.dense = False
        self._skipped: list[Any] = []

    def due(
        self, time: float, *, cut: bool = False, last: bool = False, flagged: bool = False
    ) -> bool:
        """Whether the sample at ``time`` is to be scored (``flagged``: by another guard)."""
        return (
            self.last_time is None
            or cut
            or last
            or flagged
            or self.dense
            or len(self._skipped) >= self.MAX_SKIPPED
            or time - self.last_time >= self.every - 1e-6
        )

    def skip(self, item: Any) -> None:
        """A sample not scored (kept until the next one is)."""
        self._skipped.append(item)

    def scored(self, time: float, flagged: bool, *, cut: bool = False) -> list[Any]:
        """A due sample was scored: the skipped samples since the previous one, to be scored now
        (when it flagged, and it does not start a shot), else []."""
        back = self._skipped if flagged and not cut else []
        self._skipped = []
        self.last_time = time
        self.dense = flagged
        return back


def key_frames(span: Span, key_every: int, cuts: set[int]) -> list[int]:
    """Where the search runs in ``span``: its first and last frame, every ``key_every``-th frame
    of each shot, and the frames either side of each cut (masks are never tracked across a cut)."""
    keys = {span.start, span.end}
    starts = [span.start, *sorted(c for c in cuts if span.start < c <= span.end)]
    for shot_start in starts:
        keys.add(shot_start)
        if shot_start > span.start:
            keys.add(shot_start - 1)
        nxt = [c for c in starts if c > shot_start]
        shot_end = (nxt[0] - 1) if nxt else span.end
        keys.update(range(shot_start, shot_end + 1, key_every))
    return sorted(keys)


__all__ = [
    "CutDetector",
    "Span",
    "SparseSchedule",
    "flagged_spans",
    "histogram_distance",
    "key_frames",
]
