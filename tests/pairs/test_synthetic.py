"""The synthetic symbol category."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safeview.io import encode_image, load_image
from safeview.pairs.synthetic import make_synthetic, paste_symbol
from safeview.train import find_dataset


def test_paste_symbol_changes_only_its_disc() -> None:
    rng = np.random.default_rng(0)
    photo = np.full((120, 160, 3), 100, dtype=np.uint8)
    out, mask = paste_symbol(photo, rng)
    assert 0.01 < mask.mean() < 0.1
    changed = np.any(out != photo, axis=2)
    assert changed[mask].mean() > 0.9
    grown = np.zeros_like(mask)
    rows, cols = np.nonzero(mask)
    grown[rows.min() - 2 : rows.max() + 3, cols.min() - 2 : cols.max() + 3] = True
    assert not changed[~grown].any()
    assert (out[mask] < 40).all(axis=1).any() and (out[mask] > 200).all(axis=1).any()


def test_make_synthetic_layout(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        photo = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
        (photos / f"p{i}.jpg").write_bytes(encode_image(photo, "JPEG"))
    counts = make_synthetic(photos, tmp_path / "data", "symbol")
    assert counts == {"safe": 3, "symbol": 3}
    data = find_dataset(tmp_path / "data", "symbol")
    assert data.layout == "one folder per category" and len(data.paths) == 6
    masks = sorted((tmp_path / "data" / "masks" / "symbol").iterdir())
    assert len(masks) == 3 and load_image(masks[0]).pixels.max() == 255
    with pytest.raises(ValueError, match="no images"):
        make_synthetic(tmp_path / "data" / "masks" / "none", tmp_path / "x")
