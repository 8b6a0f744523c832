"""A search whose flip is verified on the real output, not only at working resolution.

:func:`search_verified` runs a search, renders its choice at full resolution, encodes it, decodes
it and scores it again (through the caller's ``render_full`` and ``verify``). A flip found at
working resolution can be marginal and not survive full resolution and encoding; when it does not
hold, in this order, until one holds on the output:

1. the search's ``fallback_sets`` (larger flips), smallest first, a few per batch;
2. the search again with a wider margin (+0.1, then +0.25; at most 0.49), its choice and first
   three fallback sets;
3. the search's choice grown along the attribution order by doubling (the top 2, 4, 8, ...
   regions added), short of the whole image.

A flip that held only once grown is larger than it needs to be: the search pruned it at the
working copy, where it sat right at the decision boundary, and growing overshoots. With
``score_output`` (the output, or a copy of it rendered and encoded at a smaller size, scored) it
is pruned again where it has to hold: leave-one-out rounds scored on that output, the result
verified on the real output.

Nothing holding is not verified (``success`` False): the caller applies its failure policy. The
output is verified with the plain rule (margin 0), the searches with their margins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from safeview.counterfactual.coarse_to_fine import GRADIENT_COST, MAX_PRUNE_UNITS, prune_units
from safeview.counterfactual.gradient import RegionGradient, gradient_search
from safeview.counterfactual.greedy import Counterfactual, Predict

#: ``flagged(probabilities, margin)``: whether each row still carries the decision being removed,
#: cleared by ``margin`` (0 is the guard's plain rule).
Flagged = Callable[[np.ndarray, float], np.ndarray]


class Rendered(NamedTuple):
    """One candidate's output at full resolution: its mask, pixels and encoded file."""

    mask: np.ndarray
    image: np.ndarray
    encoded: bytes


#: ``render_full(chosen)``: the output that hides the regions ``chosen``.
RenderFull = Callable[[list[int]], Rendered]
#: ``verify(outputs)``: the guard's (B, C) probabilities on the decoded output files, one batch.
Verify = Callable[[list[Rendered]], np.ndarray]
#: ``score_output(sets)``: the guards' (B, C) probabilities on the output hiding each set of
#: regions, encoded and decoded (at full resolution, or a smaller copy of it where that is costly).
ScoreOutput = Callable[[list[list[int]]], np.ndarray]

#: Extra margins of the searches run again when no flip of the first one holds on the output.
WIDER_MARGINS = (0.1, 0.25)
#: The largest margin a search is run with.
MAX_MARGIN = 0.49
#: Outputs the pruning of a flip that held only once grown scores at most (each one rendered,
#: encoded, decoded and scored by every guard).
OUTPUT_PRUNE_PASSES = 40
#: What scoring one output costs, in the search's candidates (render, encode, decode, score).
OUTPUT_COST = 2
#: What one image's search and verification may cost in all, in the search's candidates (a
#: region-gradient step counts ``GRADIENT_COST``, an output ``OUTPUT_COST``): no output pruning
#: round starts past it.
COST_BUDGET = 220
#: Candidates rendered and verified per batch.
VERIFY_BATCH = 4


@dataclass
class Verified:
    """What :func:`search_verified` found: the output and how it was reached."""

    #: The first search as it ran (its depth, stages and flip describe the search).
    searched: Counterfactual
    #: The counterfactual whose ``chosen`` regions the output hides (``searched`` unless a
    #: larger candidate or a search with a wider margin was kept).
    counterfactual: Counterfactual
    mask: np.ndarray
    image: np.ndarray
    encoded: bytes
    #: The guard's probabilities on the decoded output.
    probabilities: np.ndarray
    #: The output no longer carries the decision (plain rule).
    holds: bool
    #: Area before pruning as a fraction of the image (at least the kept candidate's).
    unpruned_fraction: float
    warnings: list[str] = field(default_factory=list)
    search_passes: int = 0
    verify_passes: int = 0
    gradient_passes: int = 0
    #: What verification did after the search, in the form of the search's stages (a flip
    #: pruned on the output: ``"output-prune"``).
    stages: list[dict[str, object]] = field(default_factory=list)

    @property
    def chosen(self) -> list[int]:
        return self.counterfactual.chosen

    @property
    def success(self) -> bool:
        """The search flipped the decision and the output verifies it."""
        return self.counterfactual.flipped and self.holds


def search_verified(
    search: Callable[..., Counterfactual],
    predict: Predict,
    flagged: Flagged,
    render: Callable[[np.ndarray], np.ndarray],
    render_full: RenderFull,
    verify: Verify,
    labels: np.ndarray,
    attribution: np.ndarray,
    image: np.ndarray,
    *,
    margin: float = 0.0,
    region_gradient: RegionGradient | None = None,
    repair_steps: int = 3,
    score_output: ScoreOutput | None = None,
    output_prune_rounds: int = 4,
    output_prune_passes: int | None = OUTPUT_PRUNE_PASSES,
    cost_budget: int | None = COST_BUDGET,
) -> Verified:
    """Run ``search`` (a :class:`~safeview.counterfactual.Search`; ``render`` obfuscates the
    working ``image``) with ``margin`` and verify its choice on the output (see the module
    docstring for what is tried when it does not hold). With ``region_gradient``, a choice that
    does not hold is first repaired: grown by region gradients for at most ``repair_steps``
    steps, each candidate verified on the output. With ``score_output``, a flip that held only
    once enlarged is pruned on that output (at most ``output_prune_rounds`` rounds; no round
    starts past ``output_prune_passes`` outputs scored, or once the search and verification
    together have cost ``cost_budget``, in the units of :data:`COST_BUDGET`; ``None``: no
    bound)."""
    verify_passes = 0

    def run(margin: float) -> Counterfactual:
        def still_flagged(probs: np.ndarray) -> np.ndarray:
            return flagged(probs, margin)

        return search(predict, still_flagged, render, labels, attribution, image)

    def first_held(
        candidates: Sequence[list[int]],
    ) -> tuple[list[int], Rendered, np.ndarray] | None:
        """The first candidate whose output no longer flags, with that output and its scores."""
        nonlocal verify_passes
        for start in range(0, len(candidates), VERIFY_BATCH):
            chunk = candidates[start : start + VERIFY_BATCH]
            outputs = [render_full(candidate) for candidate in chunk]
            probs = verify(outputs)
            verify_passes += len(outputs)
            flags = flagged(probs, 0.0)
            for i in range(len(chunk)):
                if not flags[i]:
                    return list(chunk[i]), outputs[i], probs[i]
        return None

    gradient_passes = 0

    def repair(chosen: list[int]) -> tuple[list[int], Rendered, np.ndarray] | None:
        """``chosen`` grown by region gradients until its output holds (or None)."""
        nonlocal verify_passes, gradient_passes
        if region_gradient is None or repair_steps < 1:
            return None
        outputs: dict[tuple[int, ...], Rendered] = {}

        def score(sets: list[list[int]]) -> np.ndarray:
            nonlocal verify_passes
            rendered = [render_full(candidate) for candidate in sets]
            outputs.update((tuple(c), r) for c, r in zip(sets, rendered, strict=True))
            verify_passes += len(rendered)
            return verify(rendered)

        stats = {"images": 0, "batches": 0}
        found = gradient_search(
            score,
            lambda probs: flagged(probs, 0.0),
            labels,
            region_gradient,
            stats,
            start=chosen,
            max_steps=repair_steps,
            slack=float("inf"),
        )
        gradient_passes += stats.get("gradients", 0)
        if found is None:
            return None
        return found[0], outputs[tuple(found[0])], found[1]

    def prune_on_output(
        held: tuple[list[int], Rendered, np.ndarray],
    ) -> tuple[list[int], Rendered, np.ndarray]:
        """``held`` with the regions its output does not need dropped (verified on the output)."""
        nonlocal verify_passes
        chosen, _, probs = held
        if len(chosen) < 2 or score_output is None:
            return held
        stats = {"images": 0, "batches": 0}

        def left() -> int | None:
            allowed = [] if output_prune_passes is None else [output_prune_passes - stats["images"]]
            if cost_budget is not None:
                spent = search_passes + GRADIENT_COST * gradient_passes
                spent += OUTPUT_COST * (verify_passes + stats["images"])
                allowed.append((cost_budget - spent) // OUTPUT_COST)
            return max(0, min(allowed)) if allowed else None

        def still(scored: np.ndarray) -> np.ndarray:
            return flagged(scored, 0.0)

        pruned = list(chosen)
        if len(pruned) > MAX_PRUNE_UNITS:
            # Too many regions for one leave-one-out batch: groups of neighbouring attribution
            # rank first (the least attributed together), then what is left one by one.
            groups = _rank_groups(pruned, searched.mean_attribution, MAX_PRUNE_UNITS)
            pruned, probs, _ = prune_units(
                score_output,
                still,
                searched.area,
                groups,
                probs,
                output_prune_rounds,
                stats,
                budget=left,
            )
        if 1 < len(pruned) <= MAX_PRUNE_UNITS:
            pruned, probs, _ = prune_units(
                score_output,
                still,
                searched.area,
                [[r] for r in pruned],
                probs,
                output_prune_rounds,
                stats,
                budget=left,
            )
        verify_passes += stats["images"]
        smaller = len(pruned) < len(chosen)
        final = (first_held([pruned]) if smaller else None) or held
        stages.append(
            {
                "stage": "output-prune",
                "level": 0,
                "regions": len(chosen),
                "kept": len(final[0]),
                "scored": stats["images"] + int(smaller),
                "obfuscated": round(float(searched.area[final[0]].sum()) / labels.size, 6),
            }
        )
        return final

    stages: list[dict[str, object]] = []
    searched = result = run(margin)
    search_passes = searched.images_scored
    gradient_passes += searched.gradient_passes
    total = labels.size
    unpruned = round(float(searched.area[searched.chosen_unpruned].sum()) / total, 6)
    warnings: list[str] = []
    output = render_full(searched.chosen)
    probs = verify([output])
    verify_passes += 1
    probabilities = probs[0]
    holds = not bool(flagged(probs[:1], 0.0)[0])
    if searched.flipped and not holds:
        held = repair(searched.chosen) or first_held(searched.fallback_sets)
        for extra in WIDER_MARGINS:
            if held is not None:
                break
            wider = min(MAX_MARGIN, margin + extra)
            again = run(wider)
            search_passes += again.images_scored
            gradient_passes += again.gradient_passes
            if again.flipped:
                held = first_held([again.chosen, *again.fallback_sets[:3]])
                if held is not None:
                    result = again
                    warnings.append(
                        "the first flip did not hold at full resolution: searched again "
                        f"with margin {wider:.2f}"
                    )
        if held is None:
            held = first_held(_grown(result))
        if held is not None and score_output is not None and output_prune_rounds > 0:
            held = prune_on_output(held)
        if held is not None:
            chosen, output, probabilities = held
            holds = True
            result = dataclasses.replace(result, chosen=chosen)
            unpruned = max(unpruned, round(float(result.area[chosen].sum()) / total, 6))
            warnings.append(
                "the working-resolution flip did not hold at full resolution: "
                f"kept a candidate of {len(chosen)} regions verified on the output"
            )
    return Verified(
        searched=searched,
        counterfactual=result,
        mask=output.mask,
        image=output.image,
        encoded=output.encoded,
        probabilities=probabilities,
        holds=holds,
        unpruned_fraction=unpruned,
        warnings=warnings,
        search_passes=search_passes,
        verify_passes=verify_passes,
        gradient_passes=gradient_passes,
        stages=stages,
    )


def _rank_groups(chosen: list[int], mean_attribution: np.ndarray, limit: int) -> list[list[int]]:
    """``chosen`` as at most ``limit`` groups of regions adjacent in attribution rank."""
    ranked = sorted(chosen, key=lambda r: (float(mean_attribution[r]), r))
    size = -(-len(ranked) // limit)
    return [ranked[i : i + size] for i in range(0, len(ranked), size)]


def _grown(result: Counterfactual) -> list[list[int]]:
    """``result.chosen`` with the top 2, 4, 8, ... regions of its attribution order added, short
    of the whole image."""
    grown, k = [], 2
    while k < len(result.order):
        candidate = sorted(set(result.chosen) | set(result.order[:k]))
        if len(candidate) < len(result.order):
            grown.append(candidate)
        k *= 2
    return grown


__all__ = [
    "MAX_MARGIN",
    "OUTPUT_PRUNE_PASSES",
    "VERIFY_BATCH",
    "WIDER_MARGINS",
    "Flagged",
    "RenderFull",
    "Rendered",
    "ScoreOutput",
    "Verified",
    "Verify",
    "search_verified",
]
