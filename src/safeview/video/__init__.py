"""Video: safeguard a clip end to end (:func:`safeguard_video`), or score it
(:func:`classify_video`).

The policy's guards score sampled frames; only flagged spans are searched, on key frames, and the
masks follow the content in between (optical flow); output frames are verified, and what cannot be
verified is blurred whole. PyAV (FFmpeg) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safeview.video.formats import VIDEO_EXTENSIONS, is_video_path, output_extension
from safeview.video.options import VideoOptions

if TYPE_CHECKING:
    from safeview.video.codec import (
        CorruptVideoError,
        UnsupportedVideoError,
        VideoInputError,
        VideoTooLargeError,
        probe_video,
    )
    from safeview.video.pipeline import (
        VideoPipeline,
        VideoSearchFailedError,
        classify_video,
        safeguard_video,
    )

_EXPORTS = {
    "safeguard_video": "safeview.video.pipeline",
    "classify_video": "safeview.video.pipeline",
    "VideoPipeline": "safeview.video.pipeline",
    "VideoSearchFailedError": "safeview.video.pipeline",
    "VideoInputError": "safeview.video.codec",
    "CorruptVideoError": "safeview.video.codec",
    "UnsupportedVideoError": "safeview.video.codec",
    "VideoTooLargeError": "safeview.video.codec",
    "probe_video": "safeview.video.codec",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'safeview.video' has no attribute {name!r}")


__all__ = [
    "VIDEO_EXTENSIONS",
    "CorruptVideoError",
    "UnsupportedVideoError",
    "VideoInputError",
    "VideoOptions",
    "VideoPipeline",
    "VideoSearchFailedError",
    "VideoTooLargeError",
    "classify_video",
    "is_video_path",
    "output_extension",
    "probe_video",
    "safeguard_video",
]
