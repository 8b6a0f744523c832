"""The ``--viz`` picture of a clip: a strip of obfuscated output frames from its flagged spans.

Only output frames are drawn (what the clip shows after safeguarding), each with its hidden area
outlined and its time; nothing of the original is drawn, so the strip is as safe to look at as
the output itself.
"""

from __future__ import annotations

import cv2
import numpy as np

from safeview.report import Report
from safeview.viz import _with_caption


class StripFrames:
    """An ``on_frame`` callback that keeps small copies of obfuscated output frames, at most about
    ``2 * count`` at a time whatever the clip's length (every other one is dropped when full)."""

    def __init__(self, count: int = 8, height: int = 120) -> None:
        self.count = count
        self.height = height
        self.step = 1
        self.frames: dict[int, np.ndarray] = {}

    def __call__(self, index: int, pixels: np.ndarray | None, mask: np.ndarray | None) -> None:
        if pixels is None or mask is None or index % self.step:
            return
        scale = self.height / pixels.shape[0]
        size = (max(1, round(pixels.shape[1] * scale)), self.height)
        small = np.ascontiguousarray(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))
        hidden = cv2.resize(mask.view(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        if 0 < hidden.mean() < 1:
            contours, _ = cv2.findContours(hidden, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(small, contours, -1, (255, 40, 40), 1)
        self.frames[index] = small
        if len(self.frames) > 2 * self.count:
            self.step *= 2
            self.frames = {i: f for i, f in self.frames.items() if i % self.step == 0}


def strip(report: Report, frames: StripFrames) -> np.ndarray:
    """RGB picture: up to ``frames.count`` kept frames, evenly chosen, each with its time, under
    a caption with the clip's verdict and spans."""
    video = report.video
    if video is None:
        raise ValueError("not a clip's report")
    indices = sorted(frames.frames)
    if len(indices) > frames.count:
        picks = np.linspace(0, len(indices) - 1, frames.count).round().astype(int)
        indices = [indices[i] for i in picks]
    times = {}
    for span in video.spans:
        for i in indices:
            if span.start_frame <= i <= span.end_frame and video.frames > 1:
                share = (i - span.start_frame) / max(1, span.end_frame - span.start_frame)
                times[i] = span.start_time + share * (span.end_time - span.start_time)
    tiles = []
    for i in indices:
        tile = frames.frames[i].copy()
        label = f"{times.get(i, 0.0):.2f} s"
        cv2.putText(tile, label, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 2)
        cv2.putText(tile, label, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        tiles.extend([tile, np.full((tile.shape[0], 4, 3), 255, np.uint8)])
    body = (
        np.concatenate(tiles[:-1], axis=1)
        if tiles
        else np.full((frames.height, frames.height, 3), 255, np.uint8)
    )
    lines = [
        f"{report.input.name}: {video.frames} frames, {video.fps:g} fps, "
        f"{len(video.spans)} flagged span(s), {100 * report.obfuscated_fraction:.1f}% obfuscated",
    ]
    for span in video.spans[:4]:
        state = "verified" if span.success else f"fallback {span.fallback or 'keep'}"
        lines.append(
            f"{span.start_time:.2f}-{span.end_time:.2f} s: {', '.join(span.categories)}; "
            f"{len(span.key_frames)} key frames; {100 * span.obfuscated_fraction:.1f}%; {state}"
        )
    if not video.spans:
        lines.append("not flagged: nothing obfuscated")
    return _with_caption(body, lines)


__all__ = ["StripFrames", "strip"]
