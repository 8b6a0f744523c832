"""Synthetic clips for the video tests, written with PyAV: a scene with a red square that moves
(what the tiny red guard of ``tests/conftest.py`` flags), and shots without it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np


def scene(height: int = 96, width: int = 160, *, seed: int = 0) -> np.ndarray:
    """A textured grey-green background (texture gives the optical flow something to follow)."""
    rng = np.random.default_rng(seed)
    base = np.zeros((height, width, 3), np.uint8)
    base[...] = (90, 140, 90)
    base[: height // 3] = (150, 180, 220)
    noise = rng.integers(-25, 25, size=(height // 4 + 1, width // 4 + 1, 1))
    noise = np.kron(noise, np.ones((4, 4, 1), dtype=np.int64))[:height, :width]
    return np.clip(base.astype(np.int64) + noise, 0, 255).astype(np.uint8)


def red_square_at(frame: int, height: int, width: int, side: int) -> tuple[int, int]:
    """(row, col) of the moving square in ``frame``: left to right, a little down."""
    col = 4 + (2 * frame) % max(1, width - side - 8)
    row = height // 3 + (frame // 3) % max(1, height // 3)
    return min(row, height - side - 1), col


def moving_square_frames(
    n: int = 30, height: int = 96, width: int = 160, *, side: int = 32,
    present: Callable[[int], bool] = lambda i: True,
) -> list[np.ndarray]:  # fmt: skip
    frames = []
    background = scene(height, width)
    for i in range(n):
        image = background.copy()
        if present(i):
            row, col = red_square_at(i, height, width, side)
            image[row : row + side, col : col + side] = (230, 20, 20)
        frames.append(image)
    return frames


def write_clip(
    path: Path,
    frames: Sequence[np.ndarray],
    *,
    fps: int = 25,
    audio: bool = False,
    rotation: int = 0,
    title: str | None = None,
    container: str | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
) -> Path:
    """Encode ``frames`` (RGB) as H.264 (crf 10: near lossless) with optional AAC audio, a
    rotation in the header, a title tag, or given timestamps (variable frame rate)."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=container) as out:
        if title is not None:
            out.metadata["title"] = title
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "10", "preset": "ultrafast"}
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=16000) if audio else None
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            if pts is not None and time_base is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            samples = int(16000 * len(frames) / fps)
            for start in range(0, samples, 1024):
                chunk = np.sin(np.arange(start, start + 1024) / 5.0).astype(np.float32) * 0.2
                piece = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
                piece.sample_rate, piece.pts = 16000, start
                for packet in sound.encode(piece):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path


def read_clip(path: Path) -> tuple[list[np.ndarray], dict[str, object]]:
    """Every frame (RGB) and the stream's facts: fps, size, frames, duration, audio streams."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        times = []
        container.seek(0)
        for f in container.decode(container.streams.video[0]):
            times.append(float(f.time))
        facts = {
            "fps": float(stream.average_rate),
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "frames": len(frames),
            "times": times,
            "audio": len(container.streams.audio),
            "metadata": dict(container.metadata),
        }
    return frames, facts
