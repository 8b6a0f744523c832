"""Candidates composed in a guard's input space from per-region deltas.

A search scores tens to hundreds of candidates per image, each one a set of regions hidden. Made
one by one, each is a render, a resize and a normalisation before the guard's forward pass, and it
is made on the working copy, which is not quite the output: a flip found there often does not hold
once the output is rendered at full resolution (bench/README section 9f), and has to be repaired
and pruned again on the output, at several times the cost.

With a renderer whose layer does not depend on the mask (blur, pixelate, fill: the output is the
layer where the mask is set and the image elsewhere, so each region's change is independent of
the others) and a guard whose preprocessing is linear in the pixels (a resize and a per-channel
affine map), the guard's input for any set ``S`` of regions hidden is

    x(S) = P(image) + sum over k in S of [P(render(region k)) - P(image)]

exactly, up to the resize's rounding. :func:`guard_deltas` renders each region once, from the
output as it will be written (full resolution, or a copy at most ``OUTPUT_PROXY_SIDE`` long), and
checks that identity on one candidate of every other region before it is trusted: a guard whose
preprocessing is not linear (one that encodes, or normalises each image by its own statistics)
fails the check and its candidates are rendered as before. Whether a candidate flips is always
decided by the guard's forward pass on that input, and the search's final choice is still verified
on the encoded output.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

#: Input elements held per guard and image at most (K x C x H x W floats: 64 regions of a
#: 384x384 input, 113 MB). A segmentation with more regions scores candidates by rendering them.
MAX_DELTA_ELEMENTS = 64 * 3 * 384 * 384

#: The composed input may differ from the rendered one by at most this many grey levels (each
#: region's resize rounds to a level; a pixel near a boundary sums a few such roundings).
TOLERANCE_LEVELS = 4.0

#: Regions rendered and preprocessed per call while the deltas are made.
CHUNK = 16

#: ``render(chosen) -> image``: the image with the regions ``chosen`` hidden.
RenderSet = Callable[[list[int]], np.ndarray]


class GuardDeltas:
    """One guard's input for the original image and each region's change to it, made on first
    use: most images flip within a few regions, and only those are rendered.

    ``render(chosen)`` hides the regions ``chosen`` on ``original``; ``check``: the first
    candidate of two regions or more is also rendered, and the deltas are used only if composing
    it matched (:attr:`linear`)."""

    def __init__(
        self,
        preprocess: Callable[[list[np.ndarray]], torch.Tensor],
        original: np.ndarray,
        render: RenderSet,
        regions: int,
        *,
        check: bool = True,
        base: torch.Tensor | None = None,
    ) -> None:
        self._preprocess, self._render = preprocess, render
        if base is None:
            with torch.no_grad():
                base = preprocess([original])
        #: (1, C, H, W): the guard's input for the image with nothing hidden.
        self.base = base
        #: (K, C, H, W): the input with region k hidden, minus ``base`` (where made).
        self.deltas = torch.empty(
            (regions, *self.base.shape[1:]), dtype=self.base.dtype, device=self.base.device
        )
        self._made = np.zeros(regions, dtype=bool)
        self._checked = not check
        #: False once a composed candidate did not match its rendering (or was not finite).
        self.linear = True

    @property
    def regions(self) -> int:
        return int(self.deltas.shape[0])

    def _ensure(self, ids: np.ndarray) -> None:
        missing = [int(k) for k in np.unique(ids) if not self._made[k]]
        with torch.no_grad():
            for start in range(0, len(missing), CHUNK):
                chunk = missing[start : start + CHUNK]
                made = self._preprocess([self._render([k]) for k in chunk]) - self.base
                if not bool(torch.isfinite(made).all()):
                    self.linear = False
                self.deltas[chunk] = made
                self._made[chunk] = True

    def inputs(self, weights: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) inputs for (B, K) region weights (1: hidden, 0: kept; fractions blend,
        which region gradients differentiate through)."""
        if weights.requires_grad:  # a gradient is wanted for every region
            used = np.arange(self.regions)
        else:
            used = torch.nonzero(weights.abs().sum(dim=0)).flatten().cpu().numpy()
        if len(used) == 0:
            return self.base.expand(len(weights), *self.base.shape[1:]).clone()
        self._ensure(used)
        if len(used) == self.regions:  # no copy of the deltas
            flat, weights_used = self.deltas.reshape(self.regions, -1), weights
        else:
            flat, weights_used = self.deltas[used].reshape(len(used), -1), weights[:, used]
        mixed = weights_used.to(device=flat.device, dtype=flat.dtype) @ flat
        return self.base + mixed.reshape(-1, *self.base.shape[1:])

    def sets(self, sets: list[list[int]]) -> torch.Tensor | None:
        """Inputs for candidate sets of regions hidden; ``None`` when the deltas are not to be
        trusted (:attr:`linear` is False)."""
        with torch.no_grad():
            composed = self._compose([sorted(set(int(r) for r in chosen)) for chosen in sets])
            if not self._checked and self.linear:
                several = next((i for i, chosen in enumerate(sets) if len(set(chosen)) > 1), None)
                if several is not None:
                    self._checked = True
                    rendered = self._preprocess([self._render(list(sets[several]))])
                    error = float((composed[several] - rendered[0]).abs().max())
                    level = grey_level(self._preprocess)
                    tolerance = TOLERANCE_LEVELS * level
                    if not (np.isfinite(level) and level > 0 and error <= tolerance):
                        self.linear = False
        return composed if self.linear else None

    def _compose(self, sets: list[list[int]]) -> torch.Tensor:
        """``base`` plus the deltas of each set. Candidates in one batch mostly share their
        regions (leave-one-out subsets, growing prefixes): the regions common to all are summed
        once, and each candidate is made from that sum or from the union's, whichever is
        fewer additions away."""
        members = [set(chosen) for chosen in sets]
        union = set().union(*members)
        common = set.intersection(*members) if members else set()
        self._ensure(np.array(sorted(union), dtype=np.int64))
        low = self.base[0].clone()
        for k in sorted(common):
            low += self.deltas[k]
        high = None
        out = torch.empty((len(sets), *self.base.shape[1:]), dtype=self.base.dtype)
        out = out.to(self.base.device)
        for row, chosen in enumerate(members):
            extra, missing = chosen - common, union - chosen
            if len(extra) <= len(missing):
                out[row] = low
                for k in sorted(extra):
                    out[row] += self.deltas[k]
            else:
                if high is None:
                    high = low.clone()
                    for k in sorted(union - common):
                        high += self.deltas[k]
                out[row] = high
                for k in sorted(missing):
                    out[row] -= self.deltas[k]
        return out

    def all(self) -> GuardDeltas:
        """Every region's delta made (for the region gradients), then ``self``."""
        self._ensure(np.arange(self.regions))
        return self


def set_weights(sets: list[list[int]], regions: int) -> torch.Tensor:
    """(B, K) weights: 1 for the regions of each set, 0 elsewhere."""
    weights = torch.zeros((len(sets), regions), dtype=torch.float32)
    for row, chosen in enumerate(sets):
        weights[row, list(chosen)] = 1.0
    return weights


def grey_level(preprocess: Callable[[list[np.ndarray]], torch.Tensor]) -> float:
    """How far one grey level moves ``preprocess``'s output at most (NaN when it cannot say:
    a preprocessing that maps flat images to nothing finite is not linear in the pixels)."""
    flat = [np.full((8, 8, 3), value, dtype=np.uint8) for value in (100, 101)]
    with torch.no_grad():
        low, high = preprocess(flat)
        step = float((high - low).abs().max())
    return step if np.isfinite(step) else float("nan")


def guard_deltas(
    preprocess: Callable[[list[np.ndarray]], torch.Tensor],
    original: np.ndarray,
    render: RenderSet,
    regions: int,
    *,
    check: bool = True,
) -> GuardDeltas | None:
    """:class:`GuardDeltas` for ``regions`` regions, ``None`` when there is none or they would
    hold more than :data:`MAX_DELTA_ELEMENTS` elements."""
    if regions < 1:
        return None
    with torch.no_grad():
        base = preprocess([original])
    if regions * base.numel() > MAX_DELTA_ELEMENTS:
        return None
    return GuardDeltas(preprocess, original, render, regions, check=check, base=base)


__all__ = [
    "MAX_DELTA_ELEMENTS",
    "TOLERANCE_LEVELS",
    "GuardDeltas",
    "RenderSet",
    "grey_level",
    "guard_deltas",
    "set_weights",
]
