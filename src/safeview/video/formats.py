"""Which files are videos: by extension, or by the first bytes of their container.

Nothing here imports PyAV: a folder walk and the batch's dispatch must stay cheap.
"""

from __future__ import annotations

import os
from pathlib import Path

#: File extensions that a folder walk treats as videos.
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})
#: Extensions a safeguarded video may be written with (Matroska input stays Matroska; every
#: other container is written as MP4, which every player reads).
VIDEO_OUTPUT_EXTENSIONS = frozenset({".mp4", ".mkv"})


def output_extension(path: str | os.PathLike[str]) -> str:
    """The extension of the safeguarded copy of the video at ``path``."""
    return ".mkv" if Path(path).suffix.lower() in (".mkv", ".webm") else ".mp4"


def looks_like_video(head: bytes) -> bool:
    """Whether ``head`` (a file's first 12 bytes or more) starts an MP4/MOV, Matroska/WebM or AVI
    container: an ISO-BMFF ``ftyp`` box, an EBML header, or ``RIFF....AVI ``."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return True
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return True
    return len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI "


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """A video by its extension (any case), or, for another extension, by its container's
    first bytes (a regular file only; nothing else is opened)."""
    path = Path(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return True
    from safeview.io import IMAGE_EXTENSIONS

    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return False
    try:
        if not path.is_file() or path.is_symlink():
            return False
        with open(path, "rb") as handle:
            return looks_like_video(handle.read(12))
    except OSError:
        return False
