"""Pruning drops protected units first: of two regions either of which keeps the flip, the one
over a face goes and the other stays."""

from __future__ import annotations

import numpy as np

from safeview.counterfactual import build_hierarchy, coarse_to_fine_search, greedy_search
from tests.counterfactual.test_greedy import _grid_labels


def _either(labels: np.ndarray):
    """Flagged until region 0 is hidden and region 1 or region 2 is: (predict, flagged, render).
    Candidates are the masks themselves."""

    def render(mask: np.ndarray) -> np.ndarray:
        return mask

    def predict(masks: list[np.ndarray]) -> np.ndarray:
        rows = []
        for mask in masks:
            hidden = {int(r) for r in np.unique(labels[mask])}
            unsafe = 0.0 if 0 in hidden and hidden & {1, 2} else 0.9
            rows.append([1.0 - unsafe, unsafe])
        return np.asarray(rows)

    def still_flagged(probs: np.ndarray) -> np.ndarray:
        return np.asarray(probs)[:, 1] >= 0.5

    return predict, still_flagged, render


def test_greedy_pruning_drops_the_protected_region_first() -> None:
    labels = _grid_labels()  # 16 regions of 10 x 10 on 40 x 40
    attribution = np.zeros(labels.shape)
    for region, value in ((1, 1.0), (2, 0.9), (0, 0.8)):
        attribution[labels == region] = value
    predict, still_flagged, render = _either(labels)
    plain = greedy_search(predict, still_flagged, render, labels, attribution)
    assert plain.flipped and plain.chosen_unpruned == [1, 2, 0]
    assert sorted(plain.chosen) == [0, 2]  # regions 1 and 2 tie on area: the first goes
    protected = labels == 2  # a face over region 2
    kept = greedy_search(predict, still_flagged, render, labels, attribution, protected=protected)
    assert kept.flipped and sorted(kept.chosen) == [0, 1]


def test_coarse_to_fine_pruning_drops_the_protected_units_first() -> None:
    labels = _grid_labels()
    attribution = np.zeros(labels.shape)
    for region, value in ((1, 1.0), (2, 0.9), (0, 0.8)):
        attribution[labels == region] = value
    image = np.zeros((*labels.shape, 3), dtype=np.uint8)
    hierarchy = build_hierarchy(labels, image, attribution)
    predict, still_flagged, render = _either(labels)
    for face in (1, 2):
        result = coarse_to_fine_search(
            predict, still_flagged, render, hierarchy, protected=labels == face
        )
        assert result.flipped and 0 in result.chosen
        assert face not in result.chosen, (face, result.chosen)
