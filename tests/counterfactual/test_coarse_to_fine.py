from __future__ import annotations

import numpy as np
import pytest

from safeview.counterfactual import (
    Counterfactual,
    build_hierarchy,
    coarse_to_fine_search,
    make_search,
    powerset_search,
)
from tests.counterfactual.test_greedy import _grid_labels, _setup


def _image_and_attribution(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 255, size=(labels.max() + 1, 3), dtype=np.uint8)
    return colours[labels], (labels % 5) / 4.0


def test_hierarchy_levels_are_nested_partitions() -> None:
    labels = _grid_labels()
    image, attribution = _image_and_attribution(labels)
    hierarchy = build_hierarchy(labels, image, attribution, factor=2.0)
    sizes = hierarchy.sizes()
    assert sizes[0] == 16 and sizes == sorted(sizes, reverse=True) and sizes[-1] >= 2
    assert len(sizes) >= 3
    for fine, coarse in zip(hierarchy.levels, hierarchy.levels[1:], strict=False):
        # Each fine-level group lies inside exactly one coarse-level group.
        for group in np.unique(fine):
            assert len(np.unique(coarse[fine == group])) == 1
    assert hierarchy.area.sum() == labels.size
    # Coarse regions are connected unions of adjacent fine regions.
    top = hierarchy.levels[-1]
    for region in np.unique(top):
        members = hierarchy.members(len(sizes) - 1, int(region))
        mask = np.isin(labels, members).astype(np.uint8)
        import cv2

        count, _ = cv2.connectedComponents(mask, connectivity=4)
        assert count - 1 == 1


def test_hierarchy_merges_similar_neighbours_first() -> None:
    # Left half one colour, right half another: the two-region level splits them there.
    labels = _grid_labels()
    image = np.zeros((*labels.shape, 3), dtype=np.uint8)
    image[:, 20:] = 255
    hierarchy = build_hierarchy(labels, image, np.zeros(labels.shape), min_regions=2)
    top = hierarchy.levels[-1]
    assert int(top.max()) + 1 == 2
    left = {int(top[r]) for r in (0, 1, 4, 5, 8, 9, 12, 13)}
    right = {int(top[r]) for r in (2, 3, 6, 7, 10, 11, 14, 15)}
    assert len(left) == 1 and len(right) == 1 and left != right


def test_coarse_to_fine_flips_when_the_fine_budget_runs_out() -> None:
    unsafe = {0, 5, 10}
    labels, attribution, predict, still_flagged, render, calls = _setup(
        unsafe, [3, 0, 7, 5, 12, 10, 1, 2, 4, 6, 8, 9, 11, 13, 14, 15]
    )
    image = np.zeros((*labels.shape, 3), dtype=np.uint8)
    hierarchy = build_hierarchy(labels, image, attribution)
    result = coarse_to_fine_search(
        predict, still_flagged, render, hierarchy, fine_budget=2, batch_size=4
    )
    assert result.flipped
    assert unsafe <= set(result.chosen)
    # Pruning leaves nothing that is not needed.
    assert set(result.chosen) == unsafe
    assert result.images_scored == sum(calls)
    assert [s["stage"] for s in result.stages][:2] == ["fine", "coarse"]
    # Fallbacks are larger flips, smallest first.
    areas = [int(result.area[s].sum()) for s in result.fallback_sets]
    assert areas == sorted(areas)
    assert all(a > int(result.area[result.chosen].sum()) for a in areas)


def test_coarse_to_fine_takes_the_fine_prefix_when_it_flips() -> None:
    labels, attribution, predict, still_flagged, render, _ = _setup({6}, [6, 1, 2, 3])
    image = np.zeros((*labels.shape, 3), dtype=np.uint8)
    result = coarse_to_fine_search(
        predict, still_flagged, render, build_hierarchy(labels, image, attribution)
    )
    assert result.flipped and result.chosen == [6] and result.depth == 1
    assert result.images_scored == 2  # one small first batch


def test_coarse_to_fine_reports_no_flip() -> None:
    labels, attribution, _, still_flagged, render, _ = _setup({6}, [6])

    def never(images: list[np.ndarray]) -> np.ndarray:
        return np.tile([0.0, 1.0], (len(images), 1))

    image = np.zeros((*labels.shape, 3), dtype=np.uint8)
    result = coarse_to_fine_search(
        never, still_flagged, render, build_hierarchy(labels, image, attribution)
    )
    assert not result.flipped and result.fallback_sets == []


def test_non_finite_scores_never_count_as_a_flip() -> None:
    labels, attribution, _, _, render, _ = _setup({6}, [6])

    def nan(images: list[np.ndarray]) -> np.ndarray:
        return np.full((len(images), 2), np.nan)

    from safeview.guards.base import is_flagged

    class Guard:
        decision = "threshold"

    def still_flagged(probs: np.ndarray) -> np.ndarray:
        return is_flagged(Guard(), probs, 1, 0.5)  # type: ignore[arg-type]

    image = np.zeros((*labels.shape, 3), dtype=np.uint8)
    result = coarse_to_fine_search(
        nan, still_flagged, render, build_hierarchy(labels, image, attribution)
    )
    assert not result.flipped


def test_powerset_returns_the_minimum_area_flipping_subset() -> None:
    # Every unsafe region must go: the minimum-area flipping subset is exactly the unsafe set,
    # found by scoring subsets in order of area.
    unsafe = {1, 6}
    labels, attribution, predict, still_flagged, render, calls = _setup(unsafe, [0, 1, 2, 6])
    result = powerset_search(predict, still_flagged, render, labels, attribution, top_n=4)
    assert result.flipped and set(result.chosen) == unsafe
    # Subsets of 4 regions in area order: the 4 singletons come before the pairs, so at least
    # 5 were scored and at most all 15.
    assert 5 <= result.images_scored <= 15 and result.images_scored == sum(calls)


def test_make_search_refuses_unknown_names_and_options() -> None:
    with pytest.raises(ValueError, match=r"unknown search 'nope'.*coarse-to-fine"):
        make_search("nope")
    with pytest.raises(ValueError, match="bad option for search 'greedy': top_n"):
        make_search("greedy", top_n=3)
    make_search("powerset", top_n=3)


def test_a_flip_of_more_regions_than_one_pruning_batch_is_pruned_by_groups() -> None:
    # 64 fine regions (an 8 x 8 grid); the guard flags while any of three far-apart ones shows.
    # The search's flip holds most of the grid: too many regions to prune one by one, so they
    # are pruned as the 2 x 2 blocks of the level above first, then one by one.
    from safeview.counterfactual.coarse_to_fine import MAX_PRUNE_UNITS
    from safeview.counterfactual.hierarchy import Hierarchy

    labels = np.kron(np.arange(64).reshape(8, 8), np.ones((5, 5), dtype=int))
    unsafe = {7, 36, 56}
    rows, cols = np.divmod(np.arange(64), 8)
    hierarchy = Hierarchy(
        labels=labels,
        levels=(np.arange(64), (rows // 2) * 4 + cols // 2, (cols >= 4).astype(np.int64)),
        area=np.full(64, 25),
        mean_attribution=np.zeros(64),
    )
    scored: list[int] = []

    def predict(images: list[np.ndarray]) -> np.ndarray:
        scored.append(len(images))
        p = np.array([float(any(not im[labels == r].all() for r in unsafe)) for im in images])
        return np.stack([1 - p, p], axis=1)

    result = coarse_to_fine_search(
        predict,
        lambda probs: probs[:, 1] >= 0.5,
        lambda mask: mask,  # the "image" is the mask: a region shows where it is False
        hierarchy,
        fine_budget=0,
        prune_levels=0,
    )
    assert result.flipped and len(result.chosen_unpruned) > MAX_PRUNE_UNITS
    assert set(result.chosen) == unsafe
    assert max(scored) <= MAX_PRUNE_UNITS


def test_a_large_gradient_flip_is_compared_with_the_hierarchys() -> None:
    # The fine prefix misses region 5; the (fake) region gradient ranks three harmless regions
    # before it, so growing by gradients flips only at {1, 2, 3, 5}, a quarter of the image.
    labels, attribution, predict, still_flagged, render, calls = _setup(
        {5}, [0, 5, *[r for r in range(16) if r not in (0, 5)]]
    )
    image = np.zeros((*labels.shape, 3), dtype=np.uint8)
    hierarchy = build_hierarchy(labels, image, attribution)

    def gradient(chosen: list[int], slack: float) -> np.ndarray:
        values = np.zeros(16)
        values[[1, 2, 3, 5]] = [-4.0, -3.0, -2.0, -1.0]
        return values

    def search(**options: float) -> Counterfactual:
        calls.clear()
        return coarse_to_fine_search(
            predict, still_flagged, render, hierarchy, fine_budget=1, prune=False,
            region_gradient=gradient, **options,
        )  # fmt: skip

    # Above 10% of the image: the hierarchy is searched too, and its smaller flip kept.
    result = search()
    stages = [stage["stage"] for stage in result.stages]
    assert stages[:3] == ["fine", "gradient", "coarse"]
    area = int(result.area[result.chosen].sum())
    assert result.flipped and 5 in result.chosen
    assert area < int(result.area[[1, 2, 3, 5]].sum())
    assert [1, 2, 3, 5] in result.fallback_sets
    assert result.images_scored == sum(calls)
    # climb_above=1: the gradient's flip is taken as found.
    taken = search(climb_above=1.0)
    assert taken.chosen == [1, 2, 3, 5]
    assert "coarse" not in [s["stage"] for s in taken.stages]
    assert taken.images_scored == sum(calls)
    with pytest.raises(ValueError, match="climb_above"):
        search(climb_above=1.5)


def test_the_pruning_stops_at_its_pass_budget_and_the_flip_still_holds() -> None:
    from safeview.counterfactual.coarse_to_fine import prune_units

    # Eight units; any one of 2 and 5 hidden keeps the flip: six can go.
    def score_sets(sets: list[list[int]]) -> np.ndarray:
        p = np.array([float(not ({2, 5} & set(s))) for s in sets])
        return np.stack([1 - p, p], axis=1)

    def still(probs: np.ndarray) -> np.ndarray:
        return probs[:, 1] >= 0.5

    units = [[r] for r in range(8)]
    area = np.ones(8)
    start = score_sets([list(range(8))])[0]
    stats = {"images": 0, "batches": 0}
    free, _, _ = prune_units(score_sets, still, area, units, start, 4, stats)
    assert len(free) == 1 and stats["images"] > 8
    for budget in (0, 7):  # too few for a leave-one-out round of eight
        stats = {"images": 0, "batches": 0}
        kept, probs, _ = prune_units(
            score_sets, still, area, units, start, 4, stats, budget=lambda b=budget: b
        )
        assert kept == list(range(8)) and stats["images"] == 0
    stats = {"images": 0, "batches": 0}
    left = [10]

    def budget() -> int:
        return max(0, left[0] - stats["images"])

    kept, probs, _ = prune_units(score_sets, still, area, units, start, 4, stats, budget=budget)
    assert stats["images"] <= 10 and len(kept) < 8 and not still(probs[None])[0]


def test_prune_passes_bounds_the_search_and_is_checked() -> None:
    unsafe = {0, 5, 10}
    labels, attribution, predict, still_flagged, render, _ = _setup(
        unsafe, [3, 0, 7, 5, 12, 10, 1, 2, 4, 6, 8, 9, 11, 13, 14, 15]
    )
    hierarchy = build_hierarchy(labels, np.zeros((*labels.shape, 3), np.uint8), attribution)

    def search(passes: int | None) -> Counterfactual:
        return coarse_to_fine_search(
            predict, still_flagged, render, hierarchy, fine_budget=2, prune_passes=passes
        )

    bounded, free = search(0), search(None)
    assert bounded.flipped and free.flipped
    assert set(free.chosen) == unsafe
    assert bounded.images_scored < free.images_scored
    assert unsafe < set(bounded.chosen)  # still a flip, not polished
    assert search(10_000).chosen == free.chosen
    with pytest.raises(ValueError, match="prune_passes"):
        search(-1)


def test_a_smaller_region_that_flips_alone_replaces_the_fine_prefix() -> None:
    from safeview.counterfactual.hierarchy import Hierarchy

    # The top-2 prefix (regions 0 and 1) flips; so does region 9 alone, ranked 10th, smaller.
    labels = np.kron(np.arange(16).reshape(4, 4), np.ones((5, 5), dtype=int))
    area = np.full(16, 25)
    area[9] = 10
    hierarchy = Hierarchy(
        labels=labels,
        levels=(np.arange(16), np.arange(16) // 4),
        area=area,
        mean_attribution=1.0 - np.arange(16) / 16,
    )

    def predict(masks: list[np.ndarray]) -> np.ndarray:
        def hides(mask: np.ndarray, r: int) -> bool:
            return bool(mask[labels == r].all())

        p = np.array([float(not (hides(m, 9) or (hides(m, 0) and hides(m, 1)))) for m in masks])
        return np.stack([1 - p, p], axis=1)

    def search(fine_budget: int) -> Counterfactual:
        return coarse_to_fine_search(
            predict,
            lambda probs: probs[:, 1] >= 0.5,
            lambda m: m,
            hierarchy,
            fine_budget=fine_budget,
        )

    swapped = search(10)
    assert swapped.flipped and swapped.chosen == [9]
    assert [0, 1] in swapped.fallback_sets  # the prefix, larger, is offered if 9 does not hold
    assert [s["stage"] for s in swapped.stages] == ["fine", "prune", "single"]
    # Region 9 is not among the top 9: the prefix stays.
    assert sorted(search(9).chosen) == [0, 1]


def test_the_climbs_flip_is_pruned_only_when_it_could_be_the_smaller() -> None:
    # Regions 5 and 10 both carry the decision. Gradients flip at {1, 2, 3, 5, 10}, pruned to
    # {5, 10} (12.5%); the hierarchy, searched too (climb_above=0), refines to {0, 5, 10}
    # (18.75%: 1.5x the gradient's pruned flip).
    others = [r for r in range(16) if r not in (0, 5, 10, 1, 4, 6, 9, 14)]
    labels, attribution, predict, still_flagged, render, calls = _setup(
        {5, 10}, [0, 5, 10, 1, 4, 6, 9, 14, *others]
    )
    hierarchy = build_hierarchy(labels, np.zeros((*labels.shape, 3), np.uint8), attribution)

    def gradient(chosen: list[int], slack: float) -> np.ndarray:
        values = np.zeros(16)
        values[[1, 2, 3, 5, 10]] = [-5.0, -4.0, -3.0, -2.0, -1.0]
        return values

    def search(**options: float) -> Counterfactual:
        calls.clear()
        return coarse_to_fine_search(
            predict, still_flagged, render, hierarchy, fine_budget=1, region_gradient=gradient,
            climb_above=0.0, prune_levels=0, **options,
        )  # fmt: skip

    default = search()
    assert default.images_scored == sum(calls)
    within_two = search(climb_prune_within=2.0)
    prunes = [[s for s in r.stages if s["stage"] == "prune"] for r in (default, within_two)]
    assert len(prunes[0]) == 1 and len(prunes[1]) == 2  # the gradient's flip only, or both
    assert default.chosen == within_two.chosen == [5, 10]
    assert default.images_scored < within_two.images_scored
    assert [0, 5, 10] in default.fallback_sets  # the hierarchy's flip, offered unpruned
    with pytest.raises(ValueError, match="climb_prune_within"):
        search(climb_prune_within=-1.0)


def _gradient_setup() -> tuple:
    # The fine prefix misses region 5, and growing by (fake) region gradients flips at
    # {1, 2, 3, 5} after one step.
    labels, attribution, predict, still_flagged, render, _ = _setup(
        {5}, [0, 5, *[r for r in range(16) if r not in (0, 5)]]
    )
    hierarchy = build_hierarchy(labels, np.zeros((*labels.shape, 3), np.uint8), attribution)

    def gradient(chosen: list[int], slack: float) -> np.ndarray:
        values = np.zeros(16)
        values[[1, 2, 3, 5]] = [-4.0, -3.0, -2.0, -1.0]
        return values

    def search(**options: float) -> Counterfactual:
        return coarse_to_fine_search(
            predict, still_flagged, render, hierarchy, fine_budget=1, region_gradient=gradient,
            **options,
        )  # fmt: skip

    return search


def test_gradient_steps_count_against_the_pruning_budget() -> None:
    search = _gradient_setup()
    cheap = search(climb_above=1.0, prune_passes=20, gradient_cost=0)
    costly = search(climb_above=1.0, prune_passes=20, gradient_cost=100)
    assert cheap.chosen == [5]  # pruned
    assert costly.chosen == [1, 2, 3, 5]  # a flip, not polished: the step spent the budget
    assert costly.images_scored < cheap.images_scored
    with pytest.raises(ValueError, match="gradient_cost"):
        search(gradient_cost=-1)


def test_out_of_range_options_are_refused_when_the_search_is_made() -> None:
    for options, name in (
        ({"climb_prune_within": -1}, "climb_prune_within"),
        ({"climb_above": 1.5}, "climb_above"),
        ({"prune_passes": -1}, "prune_passes"),
        ({"gradient_cost": float("nan")}, "gradient_cost"),
        ({"gradient_steps": True}, "gradient_steps"),
        ({"fine_budget": "10"}, "fine_budget"),
    ):
        with pytest.raises(ValueError, match=name):
            make_search("coarse-to-fine", **options)
    make_search("coarse-to-fine", prune_passes=None, climb_prune_within=0, gradient_cost=0)
    make_search("coarse-to-fine", prune_passes=np.int64(100), climb_above=np.float32(0.2))
    with pytest.raises(ValueError, match=r"fine_budget must be a whole number >= 0, got 2\.5"):
        make_search("coarse-to-fine", fine_budget=2.5)
    with pytest.raises(ValueError, match="max_fallbacks"):
        make_search("coarse-to-fine", max_fallbacks=0)
    with pytest.raises(ValueError, match="gradient_steps must be a whole number"):
        make_search("coarse-to-fine", gradient_steps=1e9)
