"""Real photographs for the guard tests, read where they lie (never copied into the repository).

* BSDS500's 200 test photographs in ``../shared/data/bsds500/images/test`` (beside the checkout;
  tests that need them skip where they are absent);
* the 20 labelled ImageNet photographs that ``foolbox`` ships in ``foolbox/data`` (setup.sh
  installs foolbox==3.3.4 without its dependencies; its code is never imported);
* the colour photographs bundled with scikit-image.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BSDS500 = Path(__file__).resolve().parents[3] / "shared" / "data" / "bsds500" / "images" / "test"
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def bsds_paths(limit: int | None = None) -> list[Path]:
    """The BSDS500 test photographs, sorted (the first ``limit``); none where they are absent."""
    return sorted(BSDS500.glob("*.jpg"))[:limit]


def require_bsds(limit: int | None = None) -> list[Path]:
    """:func:`bsds_paths`, skipping the test where the photographs are absent."""
    paths = bsds_paths(limit)
    if not paths:
        pytest.skip(f"BSDS500 photographs not found at {BSDS500}")
    return paths


def foolbox_imagenet() -> list[tuple[int, Path]]:
    """(ImageNet label, path) of foolbox's 20 labelled ImageNet photographs
    (``imagenet_NN_LABEL.jpg``), in file order.

    Fails, saying how to install it, when foolbox is missing: setup.sh installs it."""
    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, (
        "foolbox is not installed: pip install --no-deps foolbox==3.3.4 (setup.sh does)"
    )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    found = []
    for path in sorted(folder.glob("imagenet_*.jpg")):
        match = re.fullmatch(r"imagenet_\d+_(\d+)\.jpg", path.name)
        if match:
            found.append((int(match.group(1)), path))
    assert len(found) == 20, f"expected foolbox's 20 ImageNet photographs in {folder}"
    return found


def skimage_photos() -> dict[str, np.ndarray]:
    from skimage import data

    return {name: getattr(data, name)() for name in SKIMAGE_PHOTOS}
