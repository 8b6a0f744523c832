"""BASS: Bayesian Adaptive Superpixel Segmentation (Uziel, Ronen, Freifeld, ICCV 2019), on the CPU.

The reference implementation is a CUDA binary; this is a numba re-implementation of its model and
inference, with the attribution map as an optional extra feature (the Image Safeguarding paper's
"attribution matrix guides the segmentation").

Model. Every pixel has a position (x, y) and a colour (CIE Lab, divided by 100), plus, for
``bass-guided``, the attribution value times ``attribution_weight``. A superpixel is a Gaussian in
colour with a fixed isotropic standard deviation ``i_std`` and a Gaussian in position whose
covariance is the posterior mean of a normal-inverse-Wishart prior,
``(a * S0 + S) / (a + n)``, where ``S`` is the superpixel's scatter, ``n`` its size, ``S0`` the
covariance of a disc of the initial superpixel area and ``a`` a prior pixel count (the initial area;
halved on a split, summed on a merge). It keeps superpixels compact without a hand-set compactness.

Inference. Start from a hexagonal grid. Then, for ``iterations`` outer iterations of ``sweeps``
sweeps each, relabel only boundary pixels, in four parity passes ((x mod 2, y mod 2)), so that no
two pixels updated together are 8-neighbours. A pixel takes, among its own label and its
4-neighbours' labels, the one of lowest energy (colour + position negative log-likelihood +
``beta`` times the number of 8-neighbours with another label), but only where a 256-entry table
says the change is a simple-point move for both labels (neither label's topology changes). Every
4th iteration each superpixel proposes a split into two (2-means on colour and position) accepted
by the Metropolis- Hastings ratio of the Dirichlet-process colour model (``Gamma(n1) Gamma(n2) /
Gamma(n)`` times the marginal likelihoods); two iterations later adjacent pairs propose merges,
whose ratio also carries ``1 / alpha``. So the number of superpixels adapts: flat images merge,
textured ones split. A final connected-components pass gives every stray fragment to a neighbour,
so every superpixel is 4-connected (the reference code can leave fragments).
"""

from __future__ import annotations

import math

import numpy as np

from safeview.segmentation.bass_kernels import _parameters, _statistics, _sweep, lab_features
from safeview.segmentation.bass_moves import _merge, _split
from safeview.segmentation.bass_topology import (
    _SIMPLE,
    _absorb_fragments,
    _relabel_dense,
    enforce_connectivity,
    hexagonal_grid,
    simple_point_table,
)

__all__ = [
    "BASS",
    "MAX_REGION_FRACTION",
    "MIN_ATTRIBUTION_DIFFERENCE",
    "GuidedBASS",
    "enforce_connectivity",
    "hexagonal_grid",
    "lab_features",
    "simple_point_table",
    "split_large_regions",
]

#: Above this share of the image, a ``bass-guided`` region with uneven attribution is cut in two
#: (``max_region_fraction``, see :class:`GuidedBASS` and bench/README 9d).
MAX_REGION_FRACTION = 0.03
#: How much the two halves' mean attribution must differ for a large region to be cut (bench 9d).
MIN_ATTRIBUTION_DIFFERENCE = 0.03


class BASS:
    """Bayesian Adaptive Superpixel Segmentation on the CPU (see the module docstring).

    Parameters
    ----------
    n_segments:
        Superpixels in the initial hexagonal grid; split and merge moves then change the count.
        Ignored when ``superpixel_size`` is given. 25 suits the counterfactual search (at most
        10 regions are tried); use hundreds for a fine over-segmentation.
    superpixel_size:
        Side in pixels of an initial (hexagonal) superpixel, instead of ``n_segments``.
    i_std:
        Standard deviation of colour within a superpixel, in Lab / 100 units. Smaller values
        follow weaker edges and split more (more superpixels on textured images); larger values
        give fewer, smoother superpixels.
    beta:
        Boundary smoothness: the energy cost of each 8-neighbour with a different label.
    alpha:
        Dirichlet-process concentration; only merges use it. Smaller values merge more readily.
    iterations:
        Outer iterations (each re-estimates the model and runs ``sweeps`` sweeps).
    sweeps:
        Boundary-relabelling sweeps (each four parity passes) per outer iteration.
    split_merge:
        Whether the count adapts (split every 4th iteration, merge two iterations later).
    attribution_weight:
        For ``bass-guided``: the attribution map (0..1) joins colour as a feature with this weight,
        so a change of the full attribution range counts like a change of ``attribution_weight``
        x 100 Lab units. 0.5 lets attribution edges compete with strong colour edges.
    min_size:
        Fragments smaller than this (pixels) are absorbed by a neighbour at the end.
    seed:
        Kept for a deterministic interface; the algorithm itself has no randomness.
    """

    name = "bass"

    def __init__(
        self,
        n_segments: int = 25,
        superpixel_size: float | None = None,
        i_std: float = 0.045,
        beta: float = 0.5,
        alpha: float = 0.5,
        iterations: int = 10,
        sweeps: int = 4,
        split_merge: bool = True,
        attribution_weight: float = 0.0,
        min_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if n_segments < 1:
            raise ValueError(f"n_segments must be >= 1, got {n_segments}")
        if i_std <= 0:
            raise ValueError(f"i_std must be > 0, got {i_std}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.n_segments = n_segments
        self.superpixel_size = superpixel_size
        self.i_std = i_std
        self.beta = beta
        self.alpha = alpha
        self.iterations = iterations
        self.sweeps = sweeps
        self.split_merge = split_merge
        self.attribution_weight = attribution_weight
        self.min_size = min_size
        self.seed = seed

    def segment(self, image: np.ndarray, attribution: np.ndarray | None = None) -> np.ndarray:
        height, width = image.shape[:2]
        feats = lab_features(image)
        if self.attribution_weight > 0:
            if attribution is None:
                raise ValueError("bass-guided needs an attribution map")
            guide = np.clip(np.asarray(attribution, dtype=np.float64), 0.0, 1.0)
            feats = np.concatenate([feats, self.attribution_weight * guide[..., None]], axis=2)
        feats = np.ascontiguousarray(feats)
        size = self.superpixel_size or math.sqrt(height * width / self.n_segments)
        size = max(2.0, min(size, float(max(height, width))))
        area = size * size
        prior_var = area / (4.0 * math.pi)  # per-axis variance of a disc of that area
        min_size = self.min_size if self.min_size is not None else max(4, int(area / 16))
        labels = hexagonal_grid(height, width, size)
        labels, k = _relabel_dense(labels)
        capacity = 4 * k + 16
        prior_count = np.full(capacity, area)
        sigma2 = self.i_std**2
        prior_mean = feats.reshape(-1, feats.shape[2]).mean(axis=0)
        tau2 = max(float(feats.reshape(-1, feats.shape[2]).var(axis=0).mean()), sigma2)
        inv_two_var = 1.0 / (2.0 * sigma2)
        tolerance = height * width // 2000  # a sweep that moves < 0.05% of pixels has converged
        for iteration in range(self.iterations):
            if self.split_merge and iteration < self.iterations - 2:
                if iteration % 4 == 1 and k < capacity // 2:
                    k = _split(
                        labels,
                        feats,
                        k,
                        prior_count,
                        prior_mean,
                        sigma2,
                        tau2,
                        size / 2.0,
                        max(min_size, 4),
                    )
                    labels = _absorb_fragments(labels, 1)
                    k, prior_count = self._compact(labels, prior_count)
                elif iteration % 4 == 3:
                    count, csum, csq, _, _ = _statistics(labels, feats, k)
                    if _merge(
                        labels,
                        count,
                        csum,
                        csq,
                        prior_count,
                        prior_mean,
                        sigma2,
                        tau2,
                        math.log(self.alpha),
                    ):
                        k, prior_count = self._compact(labels, prior_count)
            for _ in range(self.sweeps):
                count, csum, _, psum, pmom = _statistics(labels, feats, k)
                cmean, pmean, inv, logdet = _parameters(
                    count, csum, psum, pmom, prior_count, prior_var
                )
                changed = _sweep(
                    labels, feats, cmean, pmean, inv, logdet, inv_two_var, self.beta, _SIMPLE
                )
                if changed <= tolerance:
                    break
        return enforce_connectivity(labels, min_size)

    @staticmethod
    def _compact(labels: np.ndarray, prior_count: np.ndarray) -> tuple[int, np.ndarray]:
        """Renumber labels densely (in place) and carry their prior counts along."""
        present = np.unique(labels)
        remap = np.zeros(int(present[-1]) + 1, dtype=np.int64)
        remap[present] = np.arange(len(present))
        labels[...] = remap[labels]
        counts = np.full(max(prior_count.shape[0], 4 * len(present) + 16), prior_count.mean())
        counts[: len(present)] = prior_count[present]
        return len(present), counts


class GuidedBASS(BASS):
    """BASS with the attribution map as an extra feature (``attribution_weight`` 0.5 default).

    Large regions are then cut where the evidence inside them is uneven. BASS leaves some
    regions large (a uniform sky, a wall, the body of an object); the search can only hide a
    region whole, so a large region that carries a little of the evidence costs its whole area.
    A superpixel larger than ``max_region_fraction`` of the image (default
    :data:`MAX_REGION_FRACTION`, 3%) is cut in two at the median of its longest axis when the
    two halves' mean attribution (0..1) differs by at least ``min_attribution_difference``
    (default :data:`MIN_ATTRIBUTION_DIFFERENCE`, 0.03), repeatedly. A region whose evidence is
    even (a uniform unsafe object) stays whole, so the search hides all of it or none of it.
    ``max_region_fraction=None`` turns the cut off; ``min_attribution_difference=0`` cuts every
    large region geometrically (smaller areas, but a uniform object may be left half visible).
    """

    name = "bass-guided"

    def __init__(
        self,
        attribution_weight: float = 0.5,
        max_region_fraction: float | None = MAX_REGION_FRACTION,
        min_attribution_difference: float = MIN_ATTRIBUTION_DIFFERENCE,
        **options: object,
    ) -> None:
        if attribution_weight <= 0:
            raise ValueError("bass-guided needs attribution_weight > 0")
        if max_region_fraction is not None and not 0 < max_region_fraction <= 1:
            raise ValueError(
                f"max_region_fraction must be in (0, 1] or None, got {max_region_fraction}"
            )
        if not 0 <= min_attribution_difference <= 1:
            raise ValueError(
                f"min_attribution_difference must be in [0, 1], got {min_attribution_difference}"
            )
        super().__init__(attribution_weight=attribution_weight, **options)  # type: ignore[arg-type]
        self.max_region_fraction = max_region_fraction
        self.min_attribution_difference = min_attribution_difference

    def segment(self, image: np.ndarray, attribution: np.ndarray | None = None) -> np.ndarray:
        labels = super().segment(image, attribution)
        if self.max_region_fraction is None:
            return labels
        guide = np.clip(np.asarray(attribution, dtype=np.float64), 0.0, 1.0)
        return split_large_regions(
            labels,
            self.max_region_fraction,
            attribution=guide,
            min_difference=self.min_attribution_difference,
        )


def split_large_regions(
    labels: np.ndarray,
    max_fraction: float,
    attribution: np.ndarray | None = None,
    min_difference: float = 0.0,
) -> np.ndarray:
    """``labels`` with every region larger than ``max_fraction`` of the image cut in two at the
    median of its principal axis, repeatedly; 4-connected, numbered 0..K-1.

    With ``attribution``, a region is cut only where its two halves' mean attribution differs
    by at least ``min_difference``; without, every large region is cut until none is.
    """
    if attribution is not None and attribution.shape != labels.shape:
        raise ValueError(
            f"attribution shape {attribution.shape} does not match labels {labels.shape}"
        )
    labels = np.array(labels, dtype=np.int64, copy=True)
    limit = max(1.0, max_fraction * labels.size)
    count = int(labels.max()) + 1
    sizes = np.bincount(labels.ravel(), minlength=count)
    pending = [r for r in range(count) if sizes[r] > limit]
    while pending:
        region = pending.pop()
        ys, xs = np.nonzero(labels == region)
        if len(ys) <= limit:
            continue
        points = np.stack([ys, xs], axis=1).astype(np.float64)
        points -= points.mean(axis=0)
        _, _, axes = np.linalg.svd(points, full_matrices=False)
        along = points @ axes[0]
        upper = along > np.median(along)
        if not upper.any() or upper.all():
            continue  # nothing to cut along (a single row of identical points)
        if attribution is not None:
            inside = attribution[ys, xs]
            if abs(inside[upper].mean() - inside[~upper].mean()) < min_difference:
                continue  # even evidence: the region stays whole
        labels[ys[upper], xs[upper]] = count
        pending += [region, count]
        count += 1
    return enforce_connectivity(labels, 1)
