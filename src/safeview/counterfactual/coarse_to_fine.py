"""Coarse-to-fine counterfactual search over a region hierarchy (safeview's default).

The paper's greedy search ranks regions by mean attribution and obfuscates the top-1, top-2, ...
until the guard's decision flips. On coarse regions it always flips but hides a lot; on fine ones
it hides little but often runs out of budget. This search does both, in that order:

1. **Coarse**: the greedy prefix search on the coarsest level of the hierarchy (a handful of
   regions), where a flip is cheap and sure: obfuscating every region there is the whole image.
2. **Refine**: each chosen region is replaced by its children one level down; the children are
   ranked by mean attribution and the shortest prefix that still flips is kept (all prefixes
   scored in batches, in order, stopping at the first flip). Repeated down to the finest level.
3. **Prune**: on the finest level, leave-one-out subsets are scored in one batch per round and
   the largest region whose removal keeps the flip is dropped, while one is.

The flips found on the way and their longer prefixes are offered, smallest area first, in
``Counterfactual.fallback_sets``: when the final set does not hold at full resolution, the caller
verifies the next ones (the coarse flip, the surest, comes last).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable

import numpy as np

from safeview.counterfactual.gradient import RegionGradient, gradient_search
from safeview.counterfactual.greedy import (
    Counterfactual,
    Predict,
    ScoreSets,
    StillFlagged,
    protected_pixels,
    set_scorer,
)
from safeview.counterfactual.hierarchy import Hierarchy

#: Candidates a search scores before its pruning stops (see ``prune_passes``).
PRUNE_PASSES = 190
#: What one region-gradient step costs, in candidates scored (a forward and backward pass of
#: the guard in torch against a batched onnxruntime forward pass: bench/README section 9g).
GRADIENT_COST = 8
#: Units one leave-one-out pruning round scores at most (one batch each; a larger set is pruned
#: as groups of a coarser level first).
MAX_PRUNE_UNITS = 24


#: The numeric options of :func:`coarse_to_fine_search`: least, most (None: no bound), whether
#: None is allowed, whether it counts something (a whole number).
_BOUNDS: dict[str, tuple[float, float | None, bool, bool]] = {
    "start_regions": (1, None, False, True),
    "batch_size": (1, None, False, True),
    "fine_budget": (0, None, False, True),
    "gradient_steps": (0, None, False, True),
    "max_prune_rounds": (0, None, False, True),
    "prune_levels": (0, None, False, True),
    "max_fallbacks": (1, None, False, True),
    "climb_above": (0, 1, False, False),
    "climb_prune_within": (0, None, False, False),
    "gradient_cost": (0, None, False, False),
    "prune_passes": (0, None, True, True),
}


def check_options(**options: object) -> None:
    """Raise ``ValueError`` naming the first of ``options`` (coarse-to-fine's, by name) that is
    out of range; others are left to the search. Called when the search is made, so a bad value
    is refused before any input is read, and by the search itself."""
    for name, value in options.items():
        if name not in _BOUNDS:
            continue
        least, most, nullable, whole = _BOUNDS[name]
        if value is None and nullable:
            continue
        inside = False
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            inside = least <= float(value) <= (float("inf") if most is None else most)
            inside = inside and (not whole or isinstance(value, numbers.Integral))
        if not inside:
            kind = "a whole number " if whole else ""
            allowed = f"in [{least:g}, {most:g}]" if most is not None else f">= {least:g}"
            raise ValueError(
                f"{name} must be {kind}{allowed}{' or None' if nullable else ''}, got {value!r}"
            )


def _first_flip(
    score: ScoreSets,
    still_flagged: StillFlagged,
    candidates: list[list[int]],
    batch_size: int,
    first_batch: int,
    stats: dict[str, int],
) -> tuple[int, np.ndarray]:
    """Index of the first candidate (a list of fine region ids) whose obfuscation flips, and its
    probabilities; (-1, last probabilities) when none does. Scores in batches, in order."""
    start = 0
    last = np.empty(0)
    while start < len(candidates):
        step = first_batch if start == 0 else batch_size
        chunk = candidates[start : start + step]
        probs = score(chunk)
        stats["images"] += len(chunk)
        stats["batches"] += 1
        flags = still_flagged(probs)
        for offset in range(len(chunk)):
            if not flags[offset]:
                return start + offset, probs[offset]
        last = probs[-1]
        start += len(chunk)
    return -1, last


def coarse_to_fine_search(
    predict: Predict,
    still_flagged: StillFlagged,
    render: Callable[[np.ndarray], np.ndarray],
    hierarchy: Hierarchy,
    *,
    fine_budget: int = 10,
    start_regions: int = 6,
    batch_size: int = 4,
    prune: bool = True,
    max_prune_rounds: int = 4,
    prune_levels: int = 2,
    max_fallbacks: int = 12,
    protected: np.ndarray | None = None,
    region_gradient: RegionGradient | None = None,
    gradient_steps: int = 4,
    climb_above: float = 0.1,
    climb_prune_within: float = 1.3,
    prune_passes: int | None = PRUNE_PASSES,
    gradient_cost: int = GRADIENT_COST,
    score_sets: ScoreSets | None = None,
) -> Counterfactual:
    """Find a small set of fine regions whose obfuscation flips the decision.

    Parameters
    ----------
    predict, still_flagged, render:
        As for :func:`safeview.counterfactual.greedy_search`.
    hierarchy:
        The fine regions and their coarser levels (:func:`build_hierarchy`).
    fine_budget:
        First try the paper's greedy prefixes of at most this many *fine* regions (cheap, and
        minimal when the attribution is sharp); only when none flips climb the hierarchy. 0 skips
        that step.
    start_regions:
        The coarse search runs on the finest level with at most this many regions.
    batch_size:
        Candidate images per forward pass.
    prune:
        Run the leave-one-out pruning on the finest level.
    max_prune_rounds:
        Bound on pruning rounds (each one forward pass of at most 24 images; larger sets are
        not pruned).
    prune_levels:
        Pruning rounds on each coarser level while refining (0: none), dropping whole children
        that are not needed while they are few and large.
    max_fallbacks:
        At most this many larger candidate sets are offered for full-resolution verification
        (smallest first; the coarse flip is always among them).
    protected:
        Optional boolean mask (the fine labels' shape) of pixels to keep visible where the flip
        allows (a face): pruning drops the units with the most protected pixels first. (Ranking
        them last is the attribution's job: the pipeline scales it down there.)
    region_gradient:
        Optional :data:`~safeview.counterfactual.gradient.RegionGradient` (differentiable
        judges): when the fine prefixes do not flip, the set is grown by region gradients
        (:func:`~safeview.counterfactual.gradient.gradient_search`) before climbing the
        hierarchy, which runs only if that finds no flip.
    gradient_steps:
        Gradient steps at most (each one backward pass and one batch of candidates). On the
        200 BSDS500 photographs every gradient flip came within 5 steps (bench/README 9f); a
        fifth step flipped 7 of 287 searches (the hierarchy's flip was smaller in 3 of them)
        and cost the 8 it did not flip, the slowest images, one more step (bench/README 9g).
    climb_above:
        A gradient flip that still hides more than this fraction of the image once pruned is
        compared with the hierarchy's: the coarse-to-fine steps run too, and the smaller flip is
        kept (the other one is offered as a fallback). Growing by gradients adds regions a few
        at a time and can overshoot where the hierarchy would refine; 1.0 never climbs then.
    climb_prune_within:
        The hierarchy's flip found by that climb is pruned only when it hides at most this many
        times the gradient flip's pruned area (else it is kept whole, as a fallback). Above
        1.3x, pruning made it the smaller flip in 2 of 12 searches on the photographs, and it is
        the costliest step of a hard image (bench/README section 9g).
    prune_passes:
        Pruning rounds start only while the search has cost less than this, in candidates
        scored, a region-gradient step counting ``gradient_cost`` (a round that would pass it
        scores only what is left of it; ``None``: no bound). Finding the flip is never cut
        short; only the polishing of a flip already found is, so a hard image's cost stays
        bounded (bench/README sections 9f and 9g) and the result is the same on any machine.
    gradient_cost:
        What one region-gradient step counts against ``prune_passes``.
    score_sets:
        Optional :data:`~safeview.counterfactual.greedy.ScoreSets` used instead of ``render``
        and ``predict`` (the pipeline's: candidates composed from the output's region deltas).
    """
    check_options(
        start_regions=start_regions,
        batch_size=batch_size,
        fine_budget=fine_budget,
        gradient_steps=gradient_steps,
        climb_above=climb_above,
        climb_prune_within=climb_prune_within,
        gradient_cost=gradient_cost,
        prune_passes=prune_passes,
    )
    labels = hierarchy.labels
    shielded = protected_pixels(labels, protected)
    total = float(labels.size)
    sizes = hierarchy.sizes()
    stats = {"images": 0, "batches": 0}

    def left() -> int | None:
        if prune_passes is None:
            return None
        spent = stats["images"] + gradient_cost * stats.get("gradients", 0)
        return max(0, prune_passes - spent)

    score = set_scorer(predict, render, labels, score_sets)
    order = [int(i) for i in np.argsort(-hierarchy.mean_attribution, kind="stable")]
    stages: list[dict[str, object]] = []
    # Supersets of flips found on the way: what to verify when the final set does not hold.
    larger: list[list[int]] = []

    def result(
        flipped: bool, depth: int, unpruned: list[int], chosen: list[int], probs: np.ndarray
    ) -> Counterfactual:
        return Counterfactual(
            order=order,
            mean_attribution=hierarchy.mean_attribution,
            area=hierarchy.area,
            flipped=flipped,
            depth=depth,
            chosen_unpruned=list(unpruned),
            chosen=list(chosen),
            probabilities=probs,
            images_scored=stats["images"],
            forward_batches=stats["batches"],
            gradient_passes=stats.get("gradients", 0),
            fallback_sets=_by_area(larger, chosen, hierarchy.area, max_fallbacks)
            if flipped
            else [],
            stages=stages,
        )

    def finish(chosen: list[int], probs: np.ndarray, depth: int) -> Counterfactual:
        unpruned = list(chosen)
        if prune and len(chosen) > 1:
            before = stats["images"]
            level, units = _units(hierarchy, chosen, MAX_PRUNE_UNITS)
            while True:
                chosen, probs, chain = prune_units(
                    score,
                    still_flagged,
                    hierarchy.area,
                    units,
                    probs,
                    max_prune_rounds,
                    stats,
                    max_set=MAX_PRUNE_UNITS,
                    shielded=shielded,
                    budget=left,
                )
                larger.extend(chain)
                # Too many fine regions to prune one by one: pruned as groups of a coarser
                # level first, then what is left as finer groups, down to fine regions.
                finer, units = _units(hierarchy, chosen, MAX_PRUNE_UNITS)
                if level == 0 or finer >= level or len(chosen) < 2:
                    break
                level = finer
            stages.append(
                _stage(
                    "prune",
                    0,
                    sizes[0],
                    len(chosen),
                    stats["images"] - before,
                    chosen,
                    hierarchy,
                    total,
                )
            )
        return result(True, depth, unpruned, chosen, probs)

    def smaller_single(found: Counterfactual) -> Counterfactual:
        """``found``, or one region of the top ``fine_budget`` smaller than it that flips alone
        (the smallest): a prefix flips with the regions ranked first, but the attribution's
        ranking is not the guard's, and a smaller region further down may do alone."""
        hidden = int(hierarchy.area[found.chosen].sum())
        singles = sorted(
            (
                r
                for r in order[:fine_budget]
                if r not in found.chosen
                and int(hierarchy.area[r]) < hidden
                and (shielded is None or shielded[r] == 0)
            ),
            key=lambda r: (int(hierarchy.area[r]), r),
        )
        if not singles:
            return found
        before = stats["images"]
        at, probs = _first_flip(
            score, still_flagged, [[r] for r in singles], batch_size, batch_size, stats
        )
        kept = [singles[at]] if at >= 0 else list(found.chosen)
        scored = stats["images"] - before
        stages.append(_stage("single", 0, sizes[0], len(kept), scored, kept, hierarchy, total))
        if at < 0:
            return _rescored(found, stats)
        larger.append(list(found.chosen))
        return result(True, 1, kept, kept, probs)

    # 0. Fine: the paper's greedy prefixes of the finest regions, within a small budget.
    if fine_budget:
        prefixes = [order[:k] for k in range(1, min(fine_budget, len(order)) + 1)]
        found, probs = _first_flip(
            score,
            still_flagged,
            prefixes,
            batch_size,
            min(2, batch_size),
            stats,
        )
        stages.append(
            _stage(
                "fine",
                0,
                sizes[0],
                found + 1 if found >= 0 else 0,
                stats["images"],
                prefixes[found] if found >= 0 else [],
                hierarchy,
                total,
            )
        )
        if found >= 0:
            larger.extend(prefixes[found + 1 : found + 3])
            return smaller_single(finish(prefixes[found], probs, found + 1))

    # 0b. Gradient: grow the set by region gradients, re-ranked at each step.
    by_gradient: Counterfactual | None = None
    if region_gradient is not None and gradient_steps > 0:
        before = stats["images"]
        grown = gradient_search(
            score,
            still_flagged,
            labels,
            region_gradient,
            stats,
            max_steps=gradient_steps,
            batch_size=batch_size,
        )
        chosen_grad = grown[0] if grown is not None else []
        stages.append(
            {
                **_stage(
                    "gradient",
                    0,
                    sizes[0],
                    len(chosen_grad),
                    stats["images"] - before,
                    chosen_grad,
                    hierarchy,
                    total,
                ),
                "gradients": stats.get("gradients", 0),
            }
        )
        if grown is not None:
            by_gradient = finish(grown[0], grown[1], len(grown[0]))
            if hierarchy.area[by_gradient.chosen].sum() <= climb_above * total:
                return by_gradient

    # 1. Coarse: greedy prefixes of the top level by mean attribution.
    top = next((i for i, n in enumerate(sizes) if n <= start_regions), len(sizes) - 1)
    means, _ = hierarchy.level_means(top)
    coarse_order = [int(i) for i in np.argsort(-means, kind="stable")]
    groups = hierarchy.levels[top]
    prefixes = [
        [int(r) for r in np.flatnonzero(np.isin(groups, coarse_order[:k]))]
        for k in range(1, len(coarse_order) + 1)
    ]
    before = stats["images"]
    found, probs = _first_flip(
        score, still_flagged, prefixes, batch_size, min(2, batch_size), stats
    )
    if found < 0:
        stages.append(
            _stage("coarse", top, sizes[top], 0, stats["images"] - before, [], hierarchy, total)
        )
        if by_gradient is not None:
            return _rescored(by_gradient, stats)
        everything = list(range(hierarchy.n_fine))
        return result(False, len(coarse_order), everything, everything, probs)
    depth = found + 1
    chosen = prefixes[found]
    chosen_probs = probs
    larger.extend(list(p) for p in prefixes[found : found + 2])
    stages.append(
        _stage("coarse", top, sizes[top], depth, stats["images"] - before, chosen, hierarchy, total)
    )

    # 2. Refine level by level: keep the shortest attribution-ranked prefix of the children.
    for level in range(top - 1, -1, -1):
        groups = hierarchy.levels[level]
        level_means, _ = hierarchy.level_means(level)
        children = sorted({int(groups[r]) for r in chosen}, key=lambda c: -level_means[c])
        before = stats["images"]
        if len(children) > 1:
            prefixes = [
                [int(r) for r in np.flatnonzero(np.isin(groups, children[:k]))]
                for k in range(1, len(children))
            ]
            found, probs = _first_flip(
                score, still_flagged, prefixes, batch_size, batch_size, stats
            )
            if found >= 0:
                chosen, chosen_probs = prefixes[found], probs
                larger.extend(list(p) for p in prefixes[found + 1 : found + 3])
        if prune_levels and level > 0:
            # Drop whole children that are not needed, while they are few and large.
            units: dict[int, list[int]] = {}
            for r in chosen:
                units.setdefault(int(groups[r]), []).append(r)
            if 1 < len(units) <= 12:
                chosen, chosen_probs, chain = prune_units(
                    score,
                    still_flagged,
                    hierarchy.area,
                    list(units.values()),
                    chosen_probs,
                    prune_levels,
                    stats,
                    shielded=shielded,
                    budget=left,
                )
                larger.extend(chain)
        kept = len({int(groups[r]) for r in chosen})
        stages.append(
            _stage(
                "refine",
                level,
                sizes[level],
                kept,
                stats["images"] - before,
                chosen,
                hierarchy,
                total,
            )
        )
    if by_gradient is None:
        return finish(chosen, chosen_probs, depth)
    hidden_by_gradient = float(hierarchy.area[by_gradient.chosen].sum())
    if float(hierarchy.area[chosen].sum()) <= climb_prune_within * hidden_by_gradient:
        by_hierarchy = finish(chosen, chosen_probs, depth)
    else:
        by_hierarchy = result(True, depth, chosen, chosen, chosen_probs)
    # Both found a flip: keep the smaller, offer the other (and what it passed) as fallbacks.
    smaller, other = sorted(
        (by_gradient, by_hierarchy), key=lambda c: int(hierarchy.area[c.chosen].sum())
    )
    larger.extend([list(other.chosen), list(other.chosen_unpruned)])
    return result(
        True, smaller.depth, smaller.chosen_unpruned, smaller.chosen, smaller.probabilities
    )


def _rescored(found: Counterfactual, stats: dict[str, int]) -> Counterfactual:
    """``found`` with the images scored since it was made counted in."""
    return dataclasses.replace(
        found,
        images_scored=stats["images"],
        forward_batches=stats["batches"],
        gradient_passes=stats.get("gradients", 0),
    )


def prune_units(
    score_sets: Callable[[list[list[int]]], np.ndarray],
    still_flagged: StillFlagged,
    area: np.ndarray,
    units: list[list[int]],
    probs: np.ndarray,
    max_rounds: int,
    stats: dict[str, int],
    max_set: int = 24,
    shielded: np.ndarray | None = None,
    budget: Callable[[], int | None] | None = None,
) -> tuple[list[int], np.ndarray, list[list[int]]]:
    """Drop units (lists of fine regions) that are not needed to keep the flip; ``score_sets``
    scores the fine regions of each set obfuscated.

    Each round scores every leave-one-out subset in one batch; the units whose removal alone keeps
    the flip are then dropped together, largest first (with ``shielded``, the protected pixels
    per fine region: the most protected first, then the largest), as far as the flip holds (their
    cumulative removals scored in a second batch), instead of one per round. Returns the
    remaining fine regions, their probabilities and every set passed through on the way (each a
    flip, larger than the result). ``budget()``: how many more sets may be scored (``None``:
    no bound); a round starts only if its leave-one-out batch fits, and its second batch is
    cut to what is left."""

    def union(kept: list[list[int]]) -> list[int]:
        return sorted(r for unit in kept for r in unit)

    def score(sets: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        scored = score_sets(sets)
        stats["images"] += len(sets)
        stats["batches"] += 1
        return scored, still_flagged(scored)

    chain = [union(units)]
    for _ in range(max_rounds):
        if len(units) <= 1 or len(units) > max_set:
            break
        allowed = budget() if budget is not None else None
        if allowed is not None and allowed < len(units):
            break
        alone, flags = score([union(units[:i] + units[i + 1 :]) for i in range(len(units))])
        removable = sorted(
            (i for i in range(len(units)) if not flags[i]),
            key=lambda i: (
                -float(shielded[units[i]].sum()) if shielded is not None else 0.0,
                -int(area[units[i]].sum()),
            ),
        )
        if not removable:
            break
        drop, probs = [removable[0]], alone[removable[0]]
        if len(removable) > 1 and (budget is None or budget() != 0):
            cumulative = [removable[:k] for k in range(2, len(removable) + 1)]
            allowed = budget() if budget is not None else None
            if allowed is not None:
                cumulative = cumulative[:allowed]
            sets = [union([u for j, u in enumerate(units) if j not in c]) for c in cumulative]
            together, flags = score(sets)
            for k in range(len(cumulative) - 1, -1, -1):
                if not flags[k] and len(cumulative[k]) < len(units):
                    drop, probs = cumulative[k], together[k]
                    break
        units = [unit for j, unit in enumerate(units) if j not in drop]
        chain.append(union(units))
    return chain[-1], probs, chain[:-1]


def _units(hierarchy: Hierarchy, chosen: list[int], limit: int) -> tuple[int, list[list[int]]]:
    """``chosen`` (fine regions) as at most ``limit`` units for pruning, and their level: the
    fine regions themselves (level 0) when they are few enough, else their groups at the finest
    level that has at most ``limit`` of them (the coarsest level when none has)."""
    units: dict[int, list[int]] = {}
    for level, groups in enumerate(hierarchy.levels):
        units = {}
        for r in chosen:
            units.setdefault(int(groups[r]), []).append(r)
        if len(units) <= limit:
            return level, list(units.values())
    return len(hierarchy.levels) - 1, list(units.values())


def _stage(
    name: str,
    level: int,
    regions: int,
    kept: int,
    scored: int,
    chosen: list[int],
    hierarchy: Hierarchy,
    total: float,
) -> dict[str, object]:
    return {
        "stage": name,
        "level": level,
        "regions": regions,
        "kept": kept,
        "scored": scored,
        "obfuscated": round(float(hierarchy.area[chosen].sum()) / total, 6),
    }


def _by_area(
    sets: list[list[int]], chosen: list[int], area: np.ndarray, limit: int
) -> list[list[int]]:
    """Distinct sets larger than ``chosen``, smallest area first, at most ``limit`` of them; the
    largest (the coarse flip, the surest) always kept last."""
    seen = {frozenset(chosen)}
    unique = []
    for candidate in sets:
        key = frozenset(candidate)
        if key not in seen:
            seen.add(key)
            unique.append(sorted(candidate))
    unique.sort(key=lambda c: int(area[c].sum()))
    if len(unique) > limit:
        unique = [*unique[: limit - 1], unique[-1]]
    return unique
