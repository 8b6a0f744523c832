"""BASS split and merge moves: a superpixel proposes a split into two (2-means on colour and
position), adjacent pairs propose merges; each is accepted by the Metropolis-Hastings ratio of the
Dirichlet-process colour model (its marginal likelihood is :func:`_log_marginal`). Used by
:mod:`safeview.segmentation.bass`."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _log_marginal(
    n: float, s: np.ndarray, ss: np.ndarray, prior_mean: np.ndarray, sigma2: float, tau2: float
) -> float:
    """log p(colours) of a cluster: Gaussian, known variance sigma2, mean ~ N(prior_mean, tau2)."""
    total = 0.0
    for f in range(s.shape[0]):
        centred_sum = s[f] - n * prior_mean[f]
        centred_sq = ss[f] - 2.0 * prior_mean[f] * s[f] + n * prior_mean[f] * prior_mean[f]
        total += -0.5 * n * math.log(2.0 * math.pi * sigma2)
        total += 0.5 * math.log(sigma2 / (sigma2 + n * tau2))
        total += -centred_sq / (2.0 * sigma2)
        total += tau2 * centred_sum * centred_sum / (2.0 * sigma2 * (sigma2 + n * tau2))
    return total


@njit(cache=True, parallel=True)
def _split(
    labels: np.ndarray,
    feats: np.ndarray,
    k: int,
    prior_count: np.ndarray,
    prior_mean: np.ndarray,
    sigma2: float,
    tau2: float,
    position_scale: float,
    min_size: int,
) -> int:
    """Propose a 2-means split of every superpixel; apply those the MH ratio accepts."""
    height, width, nf = feats.shape
    n_pixels = height * width
    flat = labels.ravel()
    order = np.argsort(flat, kind="mergesort")
    starts = np.zeros(k + 1, dtype=np.int64)
    for i in range(n_pixels):
        starts[flat[i] + 1] += 1
    for i in range(k):
        starts[i + 1] += starts[i]
    accept = np.zeros(k, dtype=np.bool_)
    side = np.zeros(n_pixels, dtype=np.bool_)
    for lab in prange(k):
        begin = starts[lab]
        end = starts[lab + 1]
        n = end - begin
        if n < 2 * min_size:
            continue
        # 2-means on (colour / sigma, position / position_scale), seeded by the farthest pair
        # along the colour direction of largest spread.
        sigma = math.sqrt(sigma2)
        dim = nf + 2
        points = np.empty((n, dim))
        for t in range(n):
            idx = order[begin + t]
            y = idx // width
            x = idx % width
            for f in range(nf):
                points[t, f] = feats[y, x, f] / sigma
            points[t, nf] = y / position_scale
            points[t, nf + 1] = x / position_scale
        spread = np.zeros(nf)
        means = np.zeros(dim)
        for t in range(n):
            for d in range(dim):
                means[d] += points[t, d]
        for d in range(dim):
            means[d] /= n
        for t in range(n):
            for f in range(nf):
                diff = points[t, f] - means[f]
                spread[f] += diff * diff
        axis = 0
        for f in range(nf):
            if spread[f] > spread[axis]:
                axis = f
        low = 0
        high = 0
        for t in range(n):
            if points[t, axis] < points[low, axis]:
                low = t
            if points[t, axis] > points[high, axis]:
                high = t
        centre = np.empty((2, dim))
        for d in range(dim):
            centre[0, d] = points[low, d]
            centre[1, d] = points[high, d]
        assign = np.zeros(n, dtype=np.int64)
        for _ in range(5):
            sums = np.zeros((2, dim))
            counts = np.zeros(2)
            for t in range(n):
                d0 = 0.0
                d1 = 0.0
                for d in range(dim):
                    a0 = points[t, d] - centre[0, d]
                    a1 = points[t, d] - centre[1, d]
                    d0 += a0 * a0
                    d1 += a1 * a1
                c = 1 if d1 < d0 else 0
                assign[t] = c
                counts[c] += 1.0
                for d in range(dim):
                    sums[c, d] += points[t, d]
            if counts[0] == 0 or counts[1] == 0:
                break
            for c in range(2):
                for d in range(dim):
                    centre[c, d] = sums[c, d] / counts[c]
        n1 = 0
        for t in range(n):
            n1 += assign[t]
        n0 = n - n1
        if n0 < min_size or n1 < min_size:
            continue
        s_all = np.zeros(nf)
        ss_all = np.zeros(nf)
        s_part = np.zeros((2, nf))
        ss_part = np.zeros((2, nf))
        for t in range(n):
            idx = order[begin + t]
            y = idx // width
            x = idx % width
            c = assign[t]
            for f in range(nf):
                v = feats[y, x, f]
                s_all[f] += v
                ss_all[f] += v * v
                s_part[c, f] += v
                ss_part[c, f] += v * v
        log_ratio = math.lgamma(n0) + math.lgamma(n1) - math.lgamma(n)
        log_ratio += _log_marginal(n0, s_part[0], ss_part[0], prior_mean, sigma2, tau2)
        log_ratio += _log_marginal(n1, s_part[1], ss_part[1], prior_mean, sigma2, tau2)
        log_ratio -= _log_marginal(n, s_all, ss_all, prior_mean, sigma2, tau2)
        if log_ratio > 0.0:
            accept[lab] = True
            for t in range(n):
                if assign[t] == 1:
                    side[order[begin + t]] = True
    new_label = np.full(k, -1, dtype=np.int64)
    next_label = k
    for lab in range(k):
        if accept[lab]:
            new_label[lab] = next_label
            prior_count[lab] /= 2.0
            prior_count[next_label] = prior_count[lab]
            next_label += 1
    for idx in range(n_pixels):
        if side[idx]:
            labels[idx // width, idx % width] = new_label[flat[idx]]
    return next_label


@njit(cache=True)
def _merge(
    labels: np.ndarray,
    count: np.ndarray,
    csum: np.ndarray,
    csq: np.ndarray,
    prior_count: np.ndarray,
    prior_mean: np.ndarray,
    sigma2: float,
    tau2: float,
    log_alpha: float,
) -> int:
    """Merge adjacent pairs whose MH ratio favours one superpixel; each label merges once per
    step (as in BASS: a greedy agglomeration that re-tests merged groups chains dissimilar
    regions together and was measured worse on BSDS500)."""
    height, width = labels.shape
    k = count.shape[0]
    target = np.arange(k)
    used = np.zeros(k, dtype=np.bool_)
    merged = 0
    for y in range(height):
        for x in range(width):
            a = labels[y, x]
            for direction in range(2):
                ny = y + direction
                nx = x + 1 - direction
                if ny >= height or nx >= width:
                    continue
                b = labels[ny, nx]
                if a == b or used[a] or used[b]:
                    continue
                na = count[a]
                nb = count[b]
                if na <= 0 or nb <= 0:
                    continue
                log_ratio = -log_alpha + math.lgamma(na + nb) - math.lgamma(na) - math.lgamma(nb)
                log_ratio += _log_marginal(
                    na + nb, csum[a] + csum[b], csq[a] + csq[b], prior_mean, sigma2, tau2
                )
                log_ratio -= _log_marginal(na, csum[a], csq[a], prior_mean, sigma2, tau2)
                log_ratio -= _log_marginal(nb, csum[b], csq[b], prior_mean, sigma2, tau2)
                if log_ratio > 0.0:
                    used[a] = True
                    used[b] = True
                    target[b] = a
                    prior_count[a] += prior_count[b]
                    merged += 1
    if merged:
        for y in range(height):
            for x in range(width):
                labels[y, x] = target[labels[y, x]]
    return merged
