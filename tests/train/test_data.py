"""Data set layouts, the stratified seeded split and subsampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safeview.train.data import find_dataset, load_pixels, split, subsample
from tests.train.conftest import write_dataset


def test_safe_unsafe_layout(dataset_dir: Path) -> None:
    data = find_dataset(dataset_dir, "red")
    assert data.layout == "safe/unsafe"
    assert int(data.labels.sum()) == 15 and len(data.labels) == 30
    assert all(key.startswith(("safe/", "unsafe/")) for key in data.relative_paths())


def test_one_folder_per_category(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", n=4, layout="categories")
    (root / "violence").mkdir()
    (root / "violence" / "x.png").write_bytes((root / "red" / "000.png").read_bytes())
    data = find_dataset(root, "red")
    assert data.layout == "one folder per category"
    assert data.ignored == ["violence"]
    assert sorted(set(data.labels.tolist())) == [0, 1] and len(data.paths) == 8


def test_nested_category_layout(tmp_path: Path) -> None:
    write_dataset(tmp_path / "d" / "red", n=3)
    data = find_dataset(tmp_path / "d", "red")
    assert data.layout == "red/safe, red/unsafe" and len(data.paths) == 6


def test_bad_layouts_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        find_dataset(tmp_path / "nope", "red")
    (tmp_path / "x" / "cats").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"found: cats"):
        find_dataset(tmp_path / "x", "red")
    (tmp_path / "y" / "safe").mkdir(parents=True)
    (tmp_path / "y" / "unsafe").mkdir()
    with pytest.raises(ValueError, match="has no images"):
        find_dataset(tmp_path / "y", "red")


def test_split_is_stratified_disjoint_and_seeded() -> None:
    labels = np.asarray([0] * 50 + [1] * 30)
    parts = split(labels, seed=3)
    assert {k: len(v) for k, v in parts.items()} == {"train": 64, "val": 8, "test": 8}
    joined = np.concatenate(list(parts.values()))
    assert len(set(joined.tolist())) == 80
    for name in ("val", "test"):
        assert set(labels[parts[name]].tolist()) == {0, 1}
    again = split(labels, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    assert not np.array_equal(parts["test"], split(labels, seed=4)["test"])


def test_subsample_keeps_both_classes() -> None:
    labels = np.asarray([0] * 40 + [1] * 40)
    train = split(labels, 0)["train"]
    small = subsample(train, labels, 0.1, seed=0)
    assert set(small.tolist()) <= set(train.tolist())
    assert len(small) == 6 and set(labels[small].tolist()) == {0, 1}
    assert np.array_equal(subsample(train, labels, 1.0, 0), train)


def test_load_pixels_names_a_broken_file(dataset_dir: Path) -> None:
    bad = dataset_dir / "safe" / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"broken\.png"):
        load_pixels([bad], (32, 32))
    ok = load_pixels([dataset_dir / "safe" / "000.png"], (32, 24))
    assert ok.shape == (1, 24, 32, 3) and ok.dtype == np.uint8
