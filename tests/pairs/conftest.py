"""Unsafe/safe folders for the red-square guard of tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safeview.io import encode_image
from tests.conftest import red_square_image


@pytest.fixture
def unsafe_dir(tmp_path: Path) -> Path:
    """Six red-square scenes (flagged by RedGuard) and one plain scene (not flagged)."""
    folder = tmp_path / "unsafe"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        row, col = (int(v) for v in rng.integers(8, 60, size=2))
        image = red_square_image(96, square=(row, col, int(rng.integers(24, 30))))
        (folder / f"img{i}.png").write_bytes(encode_image(_noisy(image, rng), "PNG"))
    plain = red_square_image(96, square=(0, 0, 0))
    (folder / "plain.png").write_bytes(encode_image(_noisy(plain, rng), "PNG"))
    return folder


def _noisy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.integers(-6, 7, size=image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
