"""Image-folder datasets for guard training, and their seeded, stratified 80/10/10 split.

Layouts (CATEGORY is ``--category``):

* ``DATA/safe/`` and ``DATA/unsafe/``: a binary data set for CATEGORY;
* ``DATA/safe/`` and ``DATA/CATEGORY/`` (one folder per category): CATEGORY against safe; other
  category folders are left out;
* ``DATA/CATEGORY/safe/`` and ``DATA/CATEGORY/unsafe/``.

Folders are searched recursively (:func:`safeview.files.walk_images`); symlinks are left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from safeview.files import walk_images
from safeview.io import ImageInputError, load_image, resize

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass
class Dataset:
    """Image paths with labels (1 = unsafe for ``category``)."""

    root: Path
    category: str
    paths: list[Path]
    labels: np.ndarray
    layout: str
    ignored: list[str] = field(default_factory=list)

    def relative_paths(self) -> list[str]:
        """Paths relative to the root, POSIX style (stable across machines)."""
        return [path.relative_to(self.root).as_posix() for path in self.paths]

    def fingerprint(self) -> str:
        """Identifies the file list and labels (not the pixels): a resumed run must match it."""
        digest = hashlib.sha256()
        for key, label in zip(self.relative_paths(), self.labels.tolist(), strict=True):
            digest.update(f"{key}\t{label}\n".encode())
        return digest.hexdigest()[:16]


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` as :func:`safeview.files.walk_images` finds them (the
    folder walk of every command), less what a batch would refuse: symbolic links and entries
    that are not regular files. Sorted by path, so a data set's order (and its split) does not
    depend on how deep its files are."""
    return sorted(
        entry.path for entry in walk_images(folder) if not entry.is_symlink and entry.path.is_file()
    )


def find_dataset(root: str | Path, category: str) -> Dataset:
    """The safe/unsafe images of ``root`` for ``category``; ValueError naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist or is not a folder")
    subfolders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if (root / "safe").is_dir() and (root / "unsafe").is_dir():
        safe_dir, unsafe_dir, layout = root / "safe", root / "unsafe", "safe/unsafe"
    elif (root / "safe").is_dir() and (root / category).is_dir():
        safe_dir, unsafe_dir, layout = root / "safe", root / category, "one folder per category"
    elif (root / category / "safe").is_dir() and (root / category / "unsafe").is_dir():
        safe_dir, unsafe_dir = root / category / "safe", root / category / "unsafe"
        layout = f"{category}/safe, {category}/unsafe"
    else:
        raise ValueError(
            f"{root} has no safe/ + unsafe/, safe/ + {category}/, or {category}/safe + "
            f"{category}/unsafe folders (found: {', '.join(subfolders) or 'no folders'})"
        )
    safe, unsafe = image_files(safe_dir), image_files(unsafe_dir)
    for folder, files in ((safe_dir, safe), (unsafe_dir, unsafe)):
        if not files:
            raise ValueError(f"{folder} has no images")
    ignored = [
        name
        for name in subfolders
        if layout == "one folder per category" and name not in ("safe", category)
    ]
    labels = np.asarray([0] * len(safe) + [1] * len(unsafe), dtype=np.int64)
    return Dataset(root, category, safe + unsafe, labels, layout, ignored)


def split(
    labels: np.ndarray, seed: int, fractions: tuple[float, float, float] = SPLIT_FRACTIONS
) -> dict[str, np.ndarray]:
    """Stratified train/validation/test indices; every split gets both classes when it can."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for label in (0, 1):
        index = np.flatnonzero(labels == label)
        rng.shuffle(index)
        n = len(index)
        n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
        n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
        parts["val"] += index[:n_val].tolist()
        parts["test"] += index[n_val : n_val + n_test].tolist()
        parts["train"] += index[n_val + n_test :].tolist()
    return {name: np.asarray(sorted(values), dtype=np.int64) for name, values in parts.items()}


def subsample(train: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified ``fraction`` of the training indices (at least one image per class)."""
    if fraction >= 1.0:
        return train
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in (0, 1):
        index = train[labels[train] == label].copy()
        rng.shuffle(index)
        chosen += index[: max(1, round(fraction * len(index)))].tolist()
    return np.asarray(sorted(chosen), dtype=np.int64)


def load_pixels(
    paths: list[Path],
    size: tuple[int, int],
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Decode (safely) and squash every image to ``size`` (width, height): (N, H, W, 3) uint8."""
    out = np.empty((len(paths), size[1], size[0], 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            out[i] = resize(load_image(path).pixels, size)
        except ImageInputError as exc:
            raise ValueError(f"cannot train on {path}: {exc}") from None
        if progress is not None:
            progress(1)
    return out
