"""Region gradients: a first-order estimate, for every region at once, of what obfuscating it does.

FullGrad ranks regions once, on the original image. When hiding its top regions does not flip the
decision (the guard's evidence is spread over a whole object, or shifts once the first part is
hidden), the ranking is stale. The search then asks a sharper question at the current candidate:
with the mask relaxed to one weight per region, ``m_k`` in [0, 1], the guard's input is

    x(m) = P(image) + sum_k m_k * (P(render(region k)) - P(image))

(``P`` the guard's preprocessing: a resize and a per-pixel affine map, so this is the input of the
rendered candidate exactly, up to rounding), and one forward and backward pass gives
``d objective / d m_k`` for every region ``k``: how much hiding it would lower the judges' hold on
the decision. :func:`gradient_search` adds the regions it ranks first, scores the additions in one
batch with the real renderer and guard, and asks again from there.

The estimate only orders candidates; whether a candidate flips is always decided by scoring it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from safeview.counterfactual.greedy import StillFlagged
from safeview.counterfactual.inputs import MAX_DELTA_ELEMENTS, GuardDeltas, guard_deltas

#: ``region_gradient(chosen, slack) -> (K,)``: d objective / d m_k at the mask hiding ``chosen``;
#: the objective is how firmly the flagged decisions still hold (negative entries help a flip),
#: summed over the judges not cleared by more than ``slack`` (log-probability).
RegionGradient = Callable[[list[int], float], np.ndarray]

#: A judge whose decision is cleared by more than this (log-probability) no longer pulls the
#: gradient; one cleared by less still does (a flip that did not survive encoding was marginal).
SLACK = 1.0


@dataclass(frozen=True)
class GradientJudge:
    """One flagged judge the gradient is taken for: its guard's module, preprocessing and rule."""

    module: torch.nn.Module
    preprocess: Callable[[list[np.ndarray]], torch.Tensor]
    probabilities: Callable[[torch.Tensor], torch.Tensor]
    target: int
    #: ``"threshold"`` (p(target) >= threshold) or ``"top1"`` (target is the top class).
    decision: str
    threshold: float


def _objective(judge: GradientJudge, logits: torch.Tensor) -> torch.Tensor:
    """How firmly ``judge``'s decision holds, in log-probability (> 0 while it is flagged)."""
    log_probs = torch.log(judge.probabilities(logits).clamp_min(1e-12))[0]
    target = log_probs[judge.target]
    if judge.decision == "threshold":
        return target - float(np.log(max(judge.threshold, 1e-12)))
    others = torch.cat([log_probs[: judge.target], log_probs[judge.target + 1 :]])
    return target - others.max() if others.numel() else target


def region_gradient(
    judges: Sequence[GradientJudge],
    render: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    image: np.ndarray,
    lock: Callable[[torch.nn.Module], object] | None = None,
    deltas: Callable[[int], GuardDeltas | None] | None = None,
) -> RegionGradient | None:
    """A :data:`RegionGradient` for ``judges`` on the working ``image`` and its region ``labels``
    (0..K-1), rendered by ``render`` (``mask -> image``). ``deltas(i)``, when given, are judge
    ``i``'s region deltas made from the output (:mod:`safeview.counterfactual.inputs`, the inputs
    the search scores); a judge without them has its own made on the working copy, on the first
    call. ``None`` when there is no judge or the deltas would not fit the memory bound.
    ``lock(module)``, when given, is a context manager held around each module's passes."""
    if not judges:
        return None
    n = int(labels.max()) + 1
    prepared: list[tuple[GradientJudge, GuardDeltas]] = []

    def render_set(chosen: list[int]) -> np.ndarray:
        lookup = np.zeros(n, dtype=bool)
        lookup[chosen] = True
        return render(lookup[labels])

    def prepare() -> None:
        for position, judge in enumerate(judges):
            made = deltas(position) if deltas is not None else None
            if made is None:
                made = guard_deltas(judge.preprocess, image, render_set, n, check=False)
            if made is None:
                raise MemoryError(f"region deltas for {n} regions exceed the memory bound")
            prepared.append((judge, made.all()))

    def gradient(chosen: list[int], slack: float = SLACK) -> np.ndarray:
        if not prepared:
            prepare()
        weights = torch.zeros((1, n), dtype=torch.float32)
        weights[0, list(chosen)] = 1.0
        total = np.zeros(n, dtype=np.float64)
        for judge, made in prepared:
            m = weights.clone().to(made.deltas.device).requires_grad_(True)
            with torch.enable_grad(), _held(lock, judge.module):
                objective = _objective(judge, judge.module(made.inputs(m)))
                if float(objective.detach()) < -slack:  # this judge is well cleared: leave it
                    continue
                (grad,) = torch.autograd.grad(objective, [m])
            values = grad[0].detach().cpu().numpy().astype(np.float64)
            total += np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        return total

    probe = judges[0].preprocess([image])
    if n * probe.numel() > MAX_DELTA_ELEMENTS:
        return None
    return gradient


class _held:
    def __init__(self, lock: Callable[[torch.nn.Module], object] | None, module: torch.nn.Module):
        self._context = lock(module) if lock is not None else None

    def __enter__(self) -> None:
        if self._context is not None:
            self._context.__enter__()  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        if self._context is not None:
            self._context.__exit__(*exc)  # type: ignore[attr-defined]


def gradient_search(
    score: Callable[[list[list[int]]], np.ndarray],
    still_flagged: StillFlagged,
    labels: np.ndarray,
    gradient: RegionGradient,
    stats: dict[str, int],
    *,
    start: Sequence[int] = (),
    max_steps: int = 8,
    batch_size: int = 4,
    max_area: float = 0.6,
    slack: float = SLACK,
) -> tuple[list[int], np.ndarray] | None:
    """Grow a set of regions from ``start`` until its obfuscation flips, by region gradients.

    ``score(sets)`` returns the judges' probabilities on each set of regions obfuscated (the
    working copy in the search; the encoded full-resolution output when repairing a flip that
    did not hold there). Each step ranks the regions not yet chosen by their gradient (most
    negative first; regions whose gradient does not help are never added), scores the first
    1..``batch_size`` of them added, in one batch, and stops at the first that flips. Otherwise
    it keeps the largest addition (pruning removes what was not needed) and asks the gradient
    again. Returns the flipping set and its probabilities, or ``None`` after ``max_steps``
    steps, or when the set would exceed ``max_area`` of the image (the hierarchy is surer
    there). ``slack``: see
    :data:`RegionGradient` (a repair, whose working copy reads cleared while its output does
    not, passes infinity)."""
    n = int(labels.max()) + 1
    area = np.bincount(labels.ravel(), minlength=n).astype(np.float64) / labels.size
    chosen = sorted(set(int(r) for r in start))
    for _ in range(max_steps):
        grad = gradient(chosen, slack)
        stats["gradients"] = stats.get("gradients", 0) + 1
        taken = set(chosen)
        ranked = [int(r) for r in np.argsort(grad, kind="stable") if r not in taken and grad[r] < 0]
        if not ranked:
            return None
        candidates = [sorted(taken | set(ranked[:j])) for j in range(1, batch_size + 1)]
        candidates = [c for c in candidates[: len(ranked)] if area[c].sum() <= max_area]
        if not candidates:
            return None
        probs = score(candidates)
        stats["images"] += len(candidates)
        stats["batches"] += 1
        flags = still_flagged(probs)
        for i, candidate in enumerate(candidates):
            if not flags[i]:
                return candidate, probs[i]
        chosen = candidates[-1]
    return None


__all__ = [
    "MAX_DELTA_ELEMENTS",
    "SLACK",
    "GradientJudge",
    "RegionGradient",
    "gradient_search",
    "region_gradient",
]
