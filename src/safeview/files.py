"""Finding image (and video) files in folders: one walker for every command that takes a folder.

:func:`walk_images` is what ``safeguard``/``classify``/``explain`` over a folder (via
:func:`safeview.batch.collect`, which asks for videos too), ``train``
(:func:`safeview.train.data.image_files`) and ``pairs`` see, so the same folder gives the same
files everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from safeview.io import IMAGE_EXTENSIONS
from safeview.video.formats import VIDEO_EXTENSIONS


@dataclass(frozen=True)
class ImageEntry:
    """An image-named entry found under a folder."""

    path: Path  # the root joined with the path below it (not resolved)
    is_symlink: bool  # a symbolic link: callers refuse it (batch) or leave it out (train)


def walk_images(
    root: str | Path, *, skip: frozenset[Path] = frozenset(), videos: bool = False
) -> Iterator[ImageEntry]:
    """Every image-named entry under ``root`` (with ``videos``, video-named ones too),
    recursively. The rules:

    * an entry is image-named when its extension, in any case (``.JPG`` too), is in
      :data:`safeview.io.IMAGE_EXTENSIONS`, video-named when it is in
      :data:`safeview.video.VIDEO_EXTENSIONS`; nothing is opened or decoded here;
    * order: top-down, and within a folder its files by name, then its subfolders by name (a
      stable order, the same on every machine for the same tree);
    * symlinked folders are not followed; symlinked files are reported with ``is_symlink=True``
      (so that a caller can say it refused them rather than silently leave them out);
    * hidden files and folders (names starting with ``.``) are walked like any other;
    * a folder or file whose resolved path is in ``skip`` is left out (the output folder of a
      batch, the outputs its manifest lists); a skipped folder is not descended into;
    * entries that are not regular files (FIFOs, devices, sockets) are reported too: callers
      check before reading.
    """
    extensions = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS if videos else IMAGE_EXTENSIONS
    for folder, directories, files in os.walk(root, followlinks=False):
        directories[:] = sorted(d for d in directories if _resolved(Path(folder) / d) not in skip)
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix.lower() in extensions and _resolved(path) not in skip:
                yield ImageEntry(path, path.is_symlink())


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()
