from __future__ import annotations

import numpy as np
import pytest

from safeview.counterfactual import greedy_search, region_means


def _grid_labels() -> np.ndarray:
    """A 4 x 4 grid of 10 x 10 regions, ids 0..15."""
    return np.kron(np.arange(16).reshape(4, 4), np.ones((10, 10), dtype=int))


def _setup(unsafe_regions: set[int], attribution_order: list[int]):
    labels = _grid_labels()
    attribution = np.zeros(labels.shape)
    for rank, region in enumerate(attribution_order):
        attribution[labels == region] = 1.0 - rank / len(attribution_order)
    image = np.zeros((*labels.shape, 3), dtype=np.uint8)
    for region in unsafe_regions:
        image[labels == region] = 255  # "unsafe" pixels are white

    calls: list[int] = []

    def predict(images: list[np.ndarray]) -> np.ndarray:
        calls.append(len(images))
        p = np.array(
            [
                [1.0 if (im[labels == r] == 255).any() else 0.0 for r in unsafe_regions]
                for im in images
            ]
        ).max(axis=1)
        return np.stack([1 - p, p], axis=1)

    def still_flagged(probs: np.ndarray) -> np.ndarray:
        return probs[:, 1] >= 0.5

    def render(mask: np.ndarray) -> np.ndarray:
        out = image.copy()
        out[mask] = 0
        return out

    return labels, attribution, predict, still_flagged, render, calls


def test_flips_at_the_shortest_prefix_and_prunes_the_unneeded_region() -> None:
    # Unsafe pixels in regions 5 and 6; attribution ranks 5, 0, 6, then the rest.
    order = [5, 0, 6, *[r for r in range(16) if r not in (5, 0, 6)]]
    labels, attribution, predict, flagged, render, calls = _setup({5, 6}, order)
    result = greedy_search(predict, flagged, render, labels, attribution, batch_size=4)
    assert result.flipped
    assert result.depth == 3
    assert result.order[:3] == [5, 0, 6]
    assert result.chosen_unpruned == [5, 0, 6]
    assert sorted(result.chosen) == [5, 6]  # region 0 was not needed
    assert calls[:2] == [2, 4]  # prefixes 1..2, then 3..6 in one batch, then pruning


def test_without_pruning_keeps_the_prefix() -> None:
    order = [5, 0, 6, *[r for r in range(16) if r not in (5, 0, 6)]]
    labels, attribution, predict, flagged, render, _ = _setup({5, 6}, order)
    result = greedy_search(predict, flagged, render, labels, attribution, prune=False)
    assert result.chosen == [5, 0, 6]


def test_stops_early_in_small_batches() -> None:
    order = list(range(16))
    labels, attribution, predict, flagged, render, calls = _setup({0}, order)
    result = greedy_search(predict, flagged, render, labels, attribution, batch_size=1)
    assert result.depth == 1
    assert calls == [1]
    assert result.images_scored == 1


def test_fails_within_budget() -> None:
    order = list(range(16))
    labels, attribution, predict, flagged, render, calls = _setup({15}, order)
    result = greedy_search(predict, flagged, render, labels, attribution, max_regions=10)
    assert not result.flipped
    assert result.depth == 10
    assert result.chosen == order[:10]
    assert sum(calls) == 10


def test_region_means() -> None:
    labels = np.array([[0, 0, 1], [1, 1, 2]])
    attribution = np.array([[1.0, 3.0, 0.0], [3.0, 3.0, 9.0]])
    means, area = region_means(labels, attribution)
    np.testing.assert_allclose(means, [2.0, 2.0, 9.0])
    np.testing.assert_array_equal(area, [2, 3, 1])


def test_bad_arguments() -> None:
    labels, attribution, predict, flagged, render, _ = _setup({0}, list(range(16)))
    with pytest.raises(ValueError):
        greedy_search(predict, flagged, render, labels, attribution, max_regions=0)
    with pytest.raises(ValueError):
        greedy_search(predict, flagged, render, labels, attribution[:5], max_regions=3)
