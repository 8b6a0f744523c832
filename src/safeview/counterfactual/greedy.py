"""Greedy counterfactual search over regions (the paper's "counterfactual subobject explanation").

Regions are ranked by mean attribution, descending. The top-1, top-2, ... regions are obfuscated
together (with the renderer the output will use) until the guard's decision flips, at most
``max_regions`` regions. Prefixes are scored in batches (2, then ``batch_size`` at a time) and the
search stops at the first batch that contains a flip, so an easy image costs one small forward
pass, not ten. A pruning
pass then drops every chosen region whose removal keeps the flip, largest first, so the obfuscated
area is minimal (the paper has no such step; both areas are reported).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Scores a list of RGB uint8 images: (B, C) probabilities.
Predict = Callable[[list[np.ndarray]], np.ndarray]
#: Whether each row of (B, C) probabilities still carries the decision being removed.
StillFlagged = Callable[[np.ndarray], np.ndarray]
#: ``score_sets(sets) -> (B, C)``: the probabilities with each set of region ids hidden. The
#: pipeline composes these in the guards' input space from the output's region deltas
#: (:mod:`safeview.counterfactual.inputs`); without it a search renders each candidate.
ScoreSets = Callable[[list[list[int]]], np.ndarray]


def set_scorer(
    predict: Predict,
    render: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    score_sets: ScoreSets | None = None,
) -> ScoreSets:
    """``score_sets`` when given, else each set rendered on ``labels`` and scored by ``predict``."""
    if score_sets is not None:
        return score_sets

    def rendered(sets: list[list[int]]) -> np.ndarray:
        return predict([render(np.isin(labels, chosen)) for chosen in sets])

    return rendered


@dataclass
class Counterfactual:
    """The outcome of :func:`greedy_search` on one image."""

    order: list[int]  # region ids, highest mean attribution first
    mean_attribution: np.ndarray  # per region id
    area: np.ndarray  # pixels per region id
    flipped: bool
    depth: int  # regions tried: the prefix length that flipped, or the budget when none did
    chosen_unpruned: list[int]
    chosen: list[int]
    probabilities: np.ndarray  # guard probabilities of the chosen obfuscation (or the last tried)
    images_scored: int = 0
    forward_batches: int = 0
    #: Region-gradient evaluations (one forward and one backward pass per judge each).
    gradient_passes: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    #: Other flipping sets (or candidates) to verify when ``chosen`` does not hold at full
    #: resolution, in order of preference (each hides more than the one before).
    fallback_sets: list[list[int]] = field(default_factory=list)
    #: What the search did, stage by stage (for the report).
    stages: list[dict[str, object]] = field(default_factory=list)

    def mask(self, labels: np.ndarray, pruned: bool = True) -> np.ndarray:
        """Boolean mask of the chosen regions on ``labels``."""
        return np.isin(labels, self.chosen if pruned else self.chosen_unpruned)


def region_means(labels: np.ndarray, attribution: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean attribution, pixel count) per label of a 0..K-1 label map."""
    if labels.shape != attribution.shape:
        raise ValueError(f"labels {labels.shape} and attribution {attribution.shape} differ")
    flat = labels.ravel()
    count = np.bincount(flat)
    total = np.bincount(flat, weights=attribution.ravel().astype(np.float64), minlength=len(count))
    return total / np.maximum(count, 1), count


def protected_pixels(labels: np.ndarray, protected: np.ndarray | None) -> np.ndarray | None:
    """Protected pixels per label of a 0..K-1 label map (None without a mask)."""
    if protected is None:
        return None
    if protected.shape != labels.shape:
        raise ValueError(f"protected {protected.shape} and labels {labels.shape} differ")
    return np.bincount(
        labels.ravel(),
        weights=protected.ravel().astype(np.float64),
        minlength=int(labels.max()) + 1,
    )


def greedy_search(
    predict: Predict,
    still_flagged: StillFlagged,
    render: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    attribution: np.ndarray,
    *,
    max_regions: int = 10,
    batch_size: int = 4,
    prune: bool = True,
    protected: np.ndarray | None = None,
    score_sets: ScoreSets | None = None,
) -> Counterfactual:
    """Find the shortest attribution-ranked prefix of regions whose obfuscation flips the decision.

    Parameters
    ----------
    predict:
        Scores RGB images, returning (B, C) probabilities.
    still_flagged:
        Maps probabilities to "decision still holds" per row (e.g. p(unsafe) >= 0.5).
    render:
        ``mask -> obfuscated image`` for the image being searched
        (see :func:`safeview.render.bind`).
    labels, attribution:
        The region label map (0..K-1) and the attribution map, both at the image's size.
    max_regions:
        Region budget. The paper uses 10.
    batch_size:
        Prefixes scored per forward pass after the first pass (which scores the top-1 and top-2
        prefixes). Larger batches waste work on easy images; smaller ones add passes on hard ones.
        4 suits CPUs; raise it on a GPU.
    prune:
        Drop chosen regions that are not needed to keep the flip.
    protected:
        Optional boolean mask (labels' shape) of pixels to keep visible where the flip allows
        (a face): pruning drops the regions with the most protected pixels first. (Ranking them
        last is the attribution's job: the pipeline scales it down there.)
    """
    if max_regions < 1:
        raise ValueError(f"max_regions must be >= 1, got {max_regions}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    score = set_scorer(predict, render, labels, score_sets)
    means, area = region_means(labels, attribution)
    order = [int(i) for i in np.argsort(-means, kind="stable")]
    budget = min(max_regions, len(order))
    images_scored = 0
    batches = 0
    flipped_at = 0
    last_probs = np.empty(0)
    chosen_probs = np.empty(0)
    depth = 0
    while depth < budget and not flipped_at:
        # The first batch is small: most flips come within the first two regions.
        step = min(2, batch_size) if depth == 0 else batch_size
        sizes = range(depth + 1, min(depth + step, budget) + 1)
        probs = score([order[:k] for k in sizes])
        images_scored += len(sizes)
        batches += 1
        flags = still_flagged(probs)
        for offset, k in enumerate(sizes):
            if not flags[offset]:
                flipped_at = k
                chosen_probs = probs[offset]
                break
        last_probs = probs[-1]
        depth = sizes[-1]
    if not flipped_at:
        return Counterfactual(
            order=order,
            mean_attribution=means,
            area=area,
            flipped=False,
            depth=budget,
            chosen_unpruned=order[:budget],
            chosen=order[:budget],
            probabilities=last_probs,
            images_scored=images_scored,
            forward_batches=batches,
        )
    chosen = order[:flipped_at]
    result = Counterfactual(
        order=order,
        mean_attribution=means,
        area=area,
        flipped=True,
        depth=flipped_at,
        chosen_unpruned=list(chosen),
        chosen=list(chosen),
        probabilities=chosen_probs,
        images_scored=images_scored,
        forward_batches=batches,
        # Longer prefixes, to verify at full resolution when this one does not hold there.
        fallback_sets=[order[:k] for k in range(flipped_at + 1, budget + 1)],
    )
    if prune and len(chosen) > 1:
        _prune(result, score, still_flagged, protected_pixels(labels, protected))
        if result.chosen != result.chosen_unpruned:
            result.fallback_sets.insert(0, list(result.chosen_unpruned))
    return result


def _prune(
    result: Counterfactual,
    score: ScoreSets,
    still_flagged: StillFlagged,
    shielded: np.ndarray | None = None,
) -> None:
    """Remove regions one at a time (largest removable first; with ``shielded``, the protected
    pixels per region, the most protected first) while the flip holds.

    Each round scores every leave-one-out subset in one batch.
    """
    chosen = list(result.chosen)
    while len(chosen) > 1:
        subsets = [[r for r in chosen if r != drop] for drop in chosen]
        probs = score(subsets)
        result.images_scored += len(subsets)
        result.forward_batches += 1
        flags = still_flagged(probs)
        removable = [i for i in range(len(chosen)) if not flags[i]]
        if not removable:
            break
        best = max(
            removable,
            key=lambda i: (
                shielded[chosen[i]] if shielded is not None else 0.0,
                result.area[chosen[i]],
            ),
        )
        result.probabilities = probs[best]
        chosen = subsets[best]
    result.chosen = chosen
