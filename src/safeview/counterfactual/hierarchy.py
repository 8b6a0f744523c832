"""A region hierarchy: fine superpixels merged into coarser levels over the region adjacency graph.

The coarse-to-fine search (:mod:`safeview.counterfactual.coarse_to_fine`) looks for a flip where it
is cheap and sure, among a few large regions, and then refines inside the chosen ones. The levels
come from agglomerative clustering of the fine regions: adjacent regions are merged in order of the
Ward cost of their features (mean Lab colour and mean attribution), so a coarse region is a
connected union of fine regions that look alike *and* matter alike to the guard. Every level is a
partition of the same fine regions, so a region of one level is exactly the union of its children
one level down.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Hierarchy:
    """Fine regions and their coarser groupings.

    ``levels[0]`` is the identity (the fine regions); ``levels[i][r]`` is the level-``i`` region
    that fine region ``r`` belongs to, numbered 0..n_i-1; the last level is the coarsest.
    """

    labels: np.ndarray  # (H, W) fine region ids 0..K-1
    levels: tuple[np.ndarray, ...]
    area: np.ndarray  # pixels per fine region
    mean_attribution: np.ndarray  # per fine region

    @property
    def n_fine(self) -> int:
        return int(self.area.size)

    def sizes(self) -> list[int]:
        """Regions per level, finest first."""
        return [int(level.max()) + 1 for level in self.levels]

    def members(self, level: int, region: int) -> np.ndarray:
        """Fine region ids inside ``region`` of ``level``."""
        return np.flatnonzero(self.levels[level] == region)

    def level_means(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean attribution, area) per region of ``level``."""
        groups = self.levels[level]
        n = int(groups.max()) + 1
        area = np.bincount(groups, weights=self.area, minlength=n)
        total = np.bincount(groups, weights=self.area * self.mean_attribution, minlength=n)
        return total / np.maximum(area, 1), area


def _adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """Unique (a, b) pairs, a < b, of 4-adjacent labels."""
    pairs = [
        np.stack([labels[:, 1:].ravel(), labels[:, :-1].ravel()], axis=1),
        np.stack([labels[1:, :].ravel(), labels[:-1, :].ravel()], axis=1),
    ]
    both = np.concatenate(pairs)
    both = both[both[:, 0] != both[:, 1]]
    both.sort(axis=1)
    return np.unique(both, axis=0) if both.size else both.reshape(0, 2)


def build_hierarchy(
    labels: np.ndarray,
    image: np.ndarray,
    attribution: np.ndarray,
    *,
    factor: float = 2.0,
    min_regions: int = 2,
    attribution_weight: float = 1.0,
) -> Hierarchy:
    """Merge the fine regions of ``labels`` (0..K-1) into levels of about K/factor^i regions.

    Parameters
    ----------
    labels:
        Fine region ids 0..K-1 at the image's size (every id present).
    image:
        The RGB uint8 image the regions were made from (colour features).
    attribution:
        The attribution map (0..1) at the same size.
    factor:
        Ratio of region counts between consecutive levels.
    min_regions:
        The coarsest level keeps at least this many regions (fewer when the fine level has fewer,
        or when the adjacency graph has fewer connected components... it never merges across
        components).
    attribution_weight:
        Weight of attribution against Lab colour / 100 in the merging cost.
    """
    if factor <= 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    if labels.shape != attribution.shape or labels.shape != image.shape[:2]:
        raise ValueError("labels, image and attribution must have the same height and width")
    flat = labels.ravel()
    k = int(flat.max()) + 1
    area = np.bincount(flat, minlength=k).astype(np.float64)
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3) / 100.0
    attr = np.clip(attribution.astype(np.float64).ravel(), 0.0, 1.0)
    features = np.concatenate([lab.astype(np.float64), attribution_weight * attr[:, None]], axis=1)
    sums = np.stack(
        [np.bincount(flat, weights=features[:, c], minlength=k) for c in range(features.shape[1])],
        axis=1,
    )
    mean_attr = np.bincount(flat, weights=attr, minlength=k) / np.maximum(area, 1)

    # Agglomerative Ward clustering restricted to adjacent clusters; a lazy heap of merge costs.
    count = area.copy() / area.sum()  # sizes as fractions keep costs scale-free
    feats_sum = sums / area.sum()
    parent = np.arange(k)
    neighbours: list[set[int]] = [set() for _ in range(k)]
    for a, b in _adjacent_pairs(labels):
        neighbours[int(a)].add(int(b))
        neighbours[int(b)].add(int(a))
    version = np.zeros(k, dtype=np.int64)

    def cost(a: int, b: int) -> float:
        mean_a = feats_sum[a] / count[a]
        mean_b = feats_sum[b] / count[b]
        diff = mean_a - mean_b
        return float(count[a] * count[b] / (count[a] + count[b]) * diff.dot(diff))

    heap = [(cost(a, b), a, b, 0, 0) for a in range(k) for b in neighbours[a] if a < b]
    heapq.heapify(heap)

    def find(r: int) -> int:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = int(parent[r])
        return r

    levels = [np.arange(k)]
    alive = k
    target = max(min_regions, int(np.ceil(k / factor)))
    while heap and alive > min_regions:
        _, a, b, version_a, version_b = heapq.heappop(heap)
        if parent[a] != a or parent[b] != b or version[a] != version_a or version[b] != version_b:
            continue
        # Merge b into a.
        parent[b] = a
        count[a] += count[b]
        feats_sum[a] += feats_sum[b]
        version[a] += 1
        neighbours[a] = (neighbours[a] | neighbours[b]) - {a, b}
        for n in neighbours[b]:
            if n != a:
                neighbours[n].discard(b)
                neighbours[n].add(a)
        neighbours[b] = set()
        for n in neighbours[a]:
            heapq.heappush(heap, (cost(a, n), min(a, n), max(a, n), *_versions(version, a, n)))
        alive -= 1
        if alive <= target:
            roots = np.array([find(r) for r in range(k)])
            _, dense = np.unique(roots, return_inverse=True)
            if int(dense.max()) + 1 < int(levels[-1].max()) + 1:
                levels.append(dense.astype(np.int64))
            target = max(min_regions, int(np.ceil(alive / factor)))
    return Hierarchy(
        labels=labels, levels=tuple(levels), area=area.astype(np.int64), mean_attribution=mean_attr
    )


def _versions(version: np.ndarray, a: int, b: int) -> tuple[int, int]:
    low, high = min(a, b), max(a, b)
    return int(version[low]), int(version[high])
