from __future__ import annotations

import numpy as np
import pytest
from skimage import data

import safeview
from safeview.segmentation import available_segmenters, make_segmenter, relabel

CLASSIC = ("slic", "felzenszwalb", "watershed")


@pytest.mark.parametrize("method", CLASSIC)
def test_labels_are_dense_and_image_shaped(method: str) -> None:
    image = data.coffee()[::2, ::2]
    labels = safeview.segment(image, method)
    assert labels.shape == image.shape[:2]
    assert labels.dtype == np.int32
    assert labels.min() == 0
    assert set(np.unique(labels)) == set(range(int(labels.max()) + 1))
    assert labels.max() >= 2  # a real photograph has several regions


def test_paper_defaults() -> None:
    slic = make_segmenter("slic")
    assert (slic.n_segments, slic.compactness) == (25, 1.0)  # type: ignore[attr-defined]
    fz = make_segmenter("felzenszwalb")
    assert (fz.scale, fz.sigma, fz.min_size) == (500, 0.5, 200)  # type: ignore[attr-defined]
    ws = make_segmenter("watershed")
    assert (ws.markers, ws.compactness) == (25, 0.001)  # type: ignore[attr-defined]
    assert set(CLASSIC) <= set(available_segmenters())


def test_options_reach_the_segmenter() -> None:
    image = data.coffee()[::2, ::2]
    few = safeview.segment(image, "slic", n_segments=10, compactness=10)
    many = safeview.segment(image, "slic", n_segments=200, compactness=10)
    assert many.max() > few.max()


def test_bad_requests_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown segmenter"):
        safeview.segment(np.zeros((8, 8, 3), np.uint8), "sam")
    with pytest.raises(ValueError, match="bad option"):
        make_segmenter("slic", n_segmentz=3)
    with pytest.raises(ValueError, match="H x W x 3"):
        safeview.segment(np.zeros((8, 8), np.uint8), "slic")
    with pytest.raises(ValueError, match="attribution shape"):
        safeview.segment(np.zeros((8, 8, 3), np.uint8), "slic", attribution=np.zeros((4, 4)))


def test_relabel() -> None:
    labels = np.array([[5, 5, 9], [2, 9, 9]])
    out = relabel(labels)
    assert out.dtype == np.int32
    assert sorted(np.unique(out)) == [0, 1, 2]
    assert (out == out[0, 0]).sum() == 2
