"""The --viz picture must not trace what was hidden."""

from __future__ import annotations

import numpy as np

import safeview
from safeview.viz import visualize
from tests.conftest import red_square_image


def test_nothing_derived_from_the_original_is_drawn_inside_the_obfuscated_area(
    red_guard,
) -> None:
    report = safeview.safeguard(red_square_image(), guard=red_guard, working_size=128)
    assert report.success and report.mask is not None and report.labels is not None
    picture = visualize(report)
    # Same report, but fine labels and attribution that trace a shape *inside* the hidden area:
    # a fine segmenter's boundaries and a sharp heatmap on the hidden object.
    labels = report.labels.copy()
    attribution = report.attribution_map.copy()
    hidden = report.mask  # working size == image size here
    rng = np.random.default_rng(0)
    labels[hidden] = rng.integers(1000, 1100, size=int(hidden.sum()))
    attribution[hidden] = rng.random(int(hidden.sum()))
    report.labels, report.attribution_map = labels, attribution
    traced = visualize(report)
    assert picture.shape == traced.shape
    height, width = hidden.shape
    band = picture.shape[0] - height  # the caption band on top
    right = slice(width + 6, 2 * width + 6)
    inner = hidden.copy()
    # The outline of the hidden area itself may be drawn (the blur shows it anyway); compare
    # strictly inside it.
    inner[1:-1, 1:-1] &= hidden[:-2, 1:-1] & hidden[2:, 1:-1] & hidden[1:-1, :-2] & hidden[1:-1, 2:]
    np.testing.assert_array_equal(picture[band:, right][inner], traced[band:, right][inner])
    np.testing.assert_array_equal(picture[band:, :width][inner], traced[band:, :width][inner])
