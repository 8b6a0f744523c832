"""search_verified with synthetic callables: a search over a few candidate sets whose
working-resolution scores are given, and an "output" whose score depends on the regions it hides."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from safeview.counterfactual import Counterfactual, Rendered, search_verified

#: 8 regions of 25 pixels each, in attribution order 0..7.
LABELS = np.kron(np.arange(8).reshape(2, 4), np.ones((5, 5), dtype=int))
ALL_BUT_ONE = list(range(7))


def _counterfactual(chosen: list[int], flipped: bool, fallback_sets: list[list[int]]):
    return Counterfactual(
        order=list(range(8)),
        mean_attribution=np.linspace(1.0, 0.0, 8),
        area=np.full(8, 25),
        flipped=flipped,
        depth=len(chosen),
        chosen_unpruned=list(chosen),
        chosen=list(chosen),
        probabilities=np.array([0.5, 0.5]),
        images_scored=10,
        fallback_sets=fallback_sets,
        stages=[{"stage": "fake"}],
    )


class Harness:
    """``candidates``: (regions, p(unsafe) at working resolution), smallest first; ``on_output``:
    p(unsafe) of the encoded full-resolution output hiding a set of regions. The guard flags while
    p >= 0.5 (the search's rule: p >= 0.5 - margin)."""

    def __init__(
        self,
        candidates: list[tuple[list[int], float]],
        on_output: Callable[[set[int]], float],
        fallbacks: bool = True,
    ) -> None:
        self.candidates, self.on_output, self.fallbacks = candidates, on_output, fallbacks
        self.margins: list[float] = []  # the margin of each search, as the search saw it
        self.batches: list[list[list[int]]] = []  # the sets verified, batch by batch

    def search(self, predict, still_flagged, render, labels, attribution, image) -> Counterfactual:
        grid = np.linspace(0.0, 1.0, 1001)
        flags = still_flagged(np.stack([1 - grid, grid], axis=1))
        self.margins.append(round(0.5 - float(grid[flags.argmax()]), 2))
        probs = np.array([[1 - p, p] for _, p in self.candidates])
        flags = still_flagged(probs)
        clear = [list(s) for (s, _), f in zip(self.candidates, flags, strict=True) if not f]
        if not clear:
            return _counterfactual(self.candidates[-1][0], False, [])
        return _counterfactual(clear[0], True, clear[1:] if self.fallbacks else [])

    @staticmethod
    def flagged(probs: np.ndarray, margin: float) -> np.ndarray:
        return np.atleast_2d(probs)[:, 1] >= 0.5 - margin

    @staticmethod
    def render_full(chosen: list[int]) -> Rendered:
        mask = np.isin(LABELS, chosen)
        return Rendered(mask, np.where(mask, 0, 255).astype(np.uint8), bytes(sorted(chosen)))

    def verify(self, outputs: list[Rendered]) -> np.ndarray:
        self.batches.append([list(output.encoded) for output in outputs])
        p = np.array([self.on_output(set(output.encoded)) for output in outputs])
        return np.stack([1 - p, p], axis=1)

    def score_output(self, sets: list[list[int]]) -> np.ndarray:
        self.pruning.append([sorted(s) for s in sets])
        p = np.array([self.on_output(set(s)) for s in sets])
        return np.stack([1 - p, p], axis=1)

    def run(
        self, margin: float = 0.0, prune_on_output: bool = False, cost_budget: int | None = None
    ):
        def render(mask: np.ndarray) -> np.ndarray:
            return mask.astype(np.uint8)

        self.pruning: list[list[list[int]]] = []  # the sets scored by pruning on the output
        image = np.zeros((*LABELS.shape, 3), np.uint8)
        return search_verified(
            self.search, lambda images: np.zeros((len(images), 2)), self.flagged, render,
            self.render_full, self.verify, LABELS, np.zeros(LABELS.shape), image, margin=margin,
            score_output=self.score_output if prune_on_output else None, cost_budget=cost_budget,
        )  # fmt: skip


def test_a_flip_that_held_only_once_enlarged_is_pruned_on_the_output() -> None:
    # The working copy flips with region 0 alone; the output needs regions 1 and 3, and only the
    # largest fallback holds there. Pruning on the output keeps just what the output needs.
    harness = Harness(
        [([0], 0.3), ([0, 1, 2, 3, 4], 0.1)],
        lambda hidden: 0.1 if {1, 3} <= hidden else 0.9,
    )
    verified = harness.run(prune_on_output=True)
    assert verified.success and verified.chosen == [1, 3]
    assert verified.encoded == bytes([1, 3]) and verified.probabilities[1] == 0.1
    np.testing.assert_array_equal(verified.mask, np.isin(LABELS, [1, 3]))
    # Round 1: every leave-one-out set, then the removable ones (0, 2, 4) dropped together.
    assert harness.pruning[0] == [
        [1, 2, 3, 4],
        [0, 2, 3, 4],
        [0, 1, 3, 4],
        [0, 1, 2, 4],
        [0, 1, 2, 3],
    ]
    assert [1, 3] in harness.pruning[1]
    assert harness.batches[-1] == [[1, 3]]  # the pruned flip verified on the real output
    scored = sum(len(batch) for batch in harness.pruning) + 1
    assert verified.stages == [
        {
            "stage": "output-prune",
            "level": 0,
            "regions": 5,
            "kept": 2,
            "scored": scored,
            "obfuscated": 0.25,
        }
    ]
    assert verified.verify_passes == 1 + 1 + scored  # first try, the fallback, pruning
    # Without it, the fallback is kept whole.
    assert Harness(
        [([0], 0.3), ([0, 1, 2, 3, 4], 0.1)], lambda hidden: 0.1 if {1, 3} <= hidden else 0.9
    ).run().chosen == [0, 1, 2, 3, 4]


def test_the_output_is_pruned_only_within_the_images_cost_budget() -> None:
    from safeview.counterfactual.verify import COST_BUDGET, OUTPUT_COST

    def harness() -> Harness:
        return Harness(
            [([0], 0.3), ([0, 1, 2, 3, 4], 0.1)], lambda hidden: 0.1 if {1, 3} <= hidden else 0.9
        )

    # Spent before pruning: the search's 10 candidates and two outputs (the first try, the
    # fallback). A leave-one-out round of five outputs needs 10 more.
    spent = 10 + 2 * OUTPUT_COST
    short = harness()
    assert short.run(prune_on_output=True, cost_budget=spent + 5 * OUTPUT_COST - 1).chosen == [
        0, 1, 2, 3, 4,
    ]  # fmt: skip
    assert short.pruning == []
    assert harness().run(prune_on_output=True, cost_budget=None).chosen == [1, 3]
    assert spent + 20 * OUTPUT_COST < COST_BUDGET  # the default leaves this small case alone
    assert harness().run(prune_on_output=True, cost_budget=COST_BUDGET).chosen == [1, 3]


def test_a_pruned_flip_that_does_not_hold_on_the_real_output_is_not_kept() -> None:
    # The output as pruning sees it (a smaller copy) is satisfied by region 1; the real one is not.
    harness = Harness(
        [([0], 0.3), ([0, 1, 2], 0.1)], lambda hidden: 0.1 if {1, 2} <= hidden else 0.9
    )
    harness.score_output = lambda sets: np.array(  # type: ignore[method-assign]
        [[0.9, 0.1] if 1 in s else [0.1, 0.9] for s in sets]
    )
    verified = harness.run(prune_on_output=True)
    assert verified.success and verified.chosen == [0, 1, 2]


def test_a_flip_that_fails_on_the_output_falls_back_to_a_larger_one_that_holds() -> None:
    # Every candidate flips at working resolution; the output only flips once 0 and 1 are hidden.
    harness = Harness(
        [([0], 0.3), ([0, 1], 0.2), ([0, 1, 2], 0.1), (ALL_BUT_ONE, 0.0)],
        lambda hidden: 0.1 if {0, 1} <= hidden else 0.9,
    )
    verified = harness.run()
    assert verified.success and verified.holds
    assert verified.chosen == [0, 1] and verified.counterfactual.chosen == [0, 1]
    assert verified.searched.chosen == [0]  # the search's own result is left as it was
    assert harness.batches == [[[0]], [[0, 1], [0, 1, 2], ALL_BUT_ONE]]
    assert harness.margins == [0.0]  # the fallback held: no search again
    assert verified.encoded == bytes([0, 1]) and verified.probabilities[1] == 0.1
    np.testing.assert_array_equal(verified.mask, np.isin(LABELS, [0, 1]))
    assert verified.verify_passes == 4 and verified.search_passes == 10
    assert verified.unpruned_fraction == 0.25  # the kept candidate is larger than the first
    assert verified.warnings == [
        "the working-resolution flip did not hold at full resolution: "
        "kept a candidate of 2 regions verified on the output"
    ]


def test_nothing_that_holds_is_not_verified() -> None:
    harness = Harness(
        [([0], 0.1), ([0, 1], 0.05), ([0, 1, 2], 0.005), (ALL_BUT_ONE, 0.0)], lambda _: 0.9
    )
    verified = harness.run(margin=0.3)
    assert not verified.success and not verified.holds and verified.searched.flipped
    # Wider margins, capped at 0.49; each search's choice and fallback sets are verified.
    assert harness.margins == [0.3, 0.4, 0.49]
    assert harness.batches == [
        [[0]],
        [[0, 1], [0, 1, 2], ALL_BUT_ONE],  # the first search's fallback sets
        [[0, 1], [0, 1, 2], ALL_BUT_ONE],  # margin 0.4
        [[0, 1, 2], ALL_BUT_ONE],  # margin 0.49
        [[0, 1], [0, 1, 2, 3]],  # grown along the attribution order, never the whole image
    ]
    assert verified.verify_passes == 11 and verified.search_passes == 30
    # The output is the first search's choice, for the caller's failure policy.
    assert verified.chosen == [0] and verified.encoded == bytes([0])
    assert verified.counterfactual is verified.searched and verified.warnings == []


def test_a_search_without_a_flip_is_verified_once_and_not_searched_again() -> None:
    harness = Harness([([0], 0.7), (ALL_BUT_ONE, 0.6)], lambda _: 0.9)
    verified = harness.run()
    assert not verified.success and not verified.searched.flipped
    assert harness.margins == [0.0] and harness.batches == [[ALL_BUT_ONE]]
    assert verified.verify_passes == 1 and verified.search_passes == 10


def test_margins_escalate_until_a_flip_holds() -> None:
    # The output scores 0.2 above the working copy: only a flip with margin 0.25 is decisive enough.
    candidates = [([0], 0.45), ([0, 1], 0.35), ([0, 1, 2], 0.2), (ALL_BUT_ONE, 0.0)]
    working = {frozenset(s): p for s, p in candidates}
    harness = Harness(candidates, lambda hidden: working[frozenset(hidden)] + 0.2, fallbacks=False)
    verified = harness.run()
    assert verified.success
    assert harness.margins == [0.0, 0.1, 0.25]
    assert harness.batches == [[[0]], [[0, 1]], [[0, 1, 2]]]
    assert verified.chosen == [0, 1, 2] and verified.searched.chosen == [0]
    assert abs(verified.probabilities[1] - 0.4) < 1e-9
    assert verified.search_passes == 30 and verified.verify_passes == 3
    assert verified.warnings == [
        "the first flip did not hold at full resolution: searched again with margin 0.25",
        "the working-resolution flip did not hold at full resolution: "
        "kept a candidate of 3 regions verified on the output",
    ]


def test_the_choice_grows_along_the_attribution_order_when_no_search_holds() -> None:
    # Only [0] flips at working resolution, even with no margin; the output needs region 3 hidden.
    harness = Harness([([0], 0.45)], lambda hidden: 0.1 if 3 in hidden else 0.9)
    verified = harness.run()
    assert verified.success
    assert harness.margins == [0.0, 0.1, 0.25]  # neither wider search flipped
    assert harness.batches == [[[0]], [[0, 1], [0, 1, 2, 3]]]
    assert verified.chosen == [0, 1, 2, 3] and verified.unpruned_fraction == 0.5
    assert len(verified.warnings) == 1 and "kept a candidate of 4 regions" in verified.warnings[0]


def test_a_held_flip_of_more_regions_than_one_batch_is_pruned_in_groups_then_singly() -> None:
    # 40 regions; the working copy flips with region 0, the output only once regions 5 and 17
    # are hidden, and the first fallback that holds there has 30 regions: more than one
    # leave-one-out batch (24). It is pruned as groups of neighbouring attribution rank, then
    # one by one.
    labels = np.kron(np.arange(40).reshape(5, 8), np.ones((3, 3), dtype=int))
    needed = {5, 17}

    def search(predict, still_flagged, render, labels_, attribution, image) -> Counterfactual:
        return Counterfactual(
            order=list(range(40)),
            mean_attribution=np.linspace(1.0, 0.0, 40),
            area=np.full(40, 9),
            flipped=True,
            depth=1,
            chosen_unpruned=[0],
            chosen=[0],
            probabilities=np.array([0.6, 0.4]),
            images_scored=10,
            fallback_sets=[list(range(30))],
        )

    def p_unsafe(hidden: set[int]) -> float:
        return 0.1 if needed <= hidden else 0.9

    def render_full(chosen: list[int]) -> Rendered:
        mask = np.isin(labels, chosen)
        return Rendered(mask, np.where(mask, 0, 255).astype(np.uint8), bytes(sorted(chosen)))

    def verify(outputs: list[Rendered]) -> np.ndarray:
        p = np.array([p_unsafe(set(output.encoded)) for output in outputs])
        return np.stack([1 - p, p], axis=1)

    batches: list[list[list[int]]] = []

    def score_output(sets: list[list[int]]) -> np.ndarray:
        batches.append([sorted(s) for s in sets])
        p = np.array([p_unsafe(set(s)) for s in sets])
        return np.stack([1 - p, p], axis=1)

    verified = search_verified(
        search, lambda images: np.zeros((len(images), 2)), Harness.flagged,
        lambda mask: mask.astype(np.uint8), render_full, verify, labels,
        np.zeros(labels.shape), np.zeros((*labels.shape, 3), np.uint8),
        score_output=score_output,
    )  # fmt: skip
    assert verified.success and verified.chosen == sorted(needed)
    assert len(batches[0]) == 15  # 30 regions as 15 groups of two, one batch
    assert all(len(batch) <= 24 for batch in batches)
    stage = verified.stages[-1]
    assert stage["stage"] == "output-prune" and (stage["regions"], stage["kept"]) == (30, 2)
