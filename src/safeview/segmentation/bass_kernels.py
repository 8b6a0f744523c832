"""BASS numba kernels: pixel features, per-superpixel statistics and model parameters, the energy
of a pixel under a label, and the parallel boundary-relabelling sweep (four parity passes). Used by
:mod:`safeview.segmentation.bass`; the model is described there."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from safeview.segmentation.bass_topology import _code


def lab_features(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 CIE Lab / 100 of an RGB uint8 image (D65, as scikit-image's rgb2lab)."""
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return np.asarray(lab, dtype=np.float64) / 100.0


@njit(cache=True, parallel=True)
def _statistics(labels: np.ndarray, feats: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Per label: count, colour sums, colour sums of squares, position sums, position moments."""
    height, width, nf = feats.shape
    chunks = 4
    # One accumulator per band of rows, summed at the end: no races between threads.
    count = np.zeros((chunks, k))
    csum = np.zeros((chunks, k, nf))
    csq = np.zeros((chunks, k, nf))
    psum = np.zeros((chunks, k, 2))
    pmom = np.zeros((chunks, k, 3))  # yy, xy, xx
    band = (height + chunks - 1) // chunks
    for c in prange(chunks):
        for y in range(c * band, min(height, (c + 1) * band)):
            for x in range(width):
                lab = labels[y, x]
                count[c, lab] += 1.0
                for f in range(nf):
                    v = feats[y, x, f]
                    csum[c, lab, f] += v
                    csq[c, lab, f] += v * v
                psum[c, lab, 0] += y
                psum[c, lab, 1] += x
                pmom[c, lab, 0] += y * y
                pmom[c, lab, 1] += x * y
                pmom[c, lab, 2] += x * x
    return count.sum(0), csum.sum(0), csq.sum(0), psum.sum(0), pmom.sum(0)


@njit(cache=True)
def _parameters(
    count: np.ndarray,
    csum: np.ndarray,
    psum: np.ndarray,
    pmom: np.ndarray,
    prior_count: np.ndarray,
    prior_var: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Colour means, position means, inverse position covariances (yy, xy, xx) and log-dets."""
    k = count.shape[0]
    nf = csum.shape[1]
    cmean = np.zeros((k, nf))
    pmean = np.zeros((k, 2))
    inv = np.zeros((k, 3))
    logdet = np.zeros(k)
    for i in range(k):
        n = count[i]
        if n <= 0:
            inv[i, 0] = 1e-12
            inv[i, 2] = 1e-12
            logdet[i] = 1e12
            continue
        for f in range(nf):
            cmean[i, f] = csum[i, f] / n
        my = psum[i, 0] / n
        mx = psum[i, 1] / n
        pmean[i, 0] = my
        pmean[i, 1] = mx
        a = prior_count[i]
        syy = pmom[i, 0] - n * my * my
        sxy = pmom[i, 1] - n * mx * my
        sxx = pmom[i, 2] - n * mx * mx
        cyy = (a * prior_var + syy) / (a + n)
        cxy = sxy / (a + n)
        cxx = (a * prior_var + sxx) / (a + n)
        det = cyy * cxx - cxy * cxy
        if det < 1e-9:
            det = 1e-9
        inv[i, 0] = cxx / det
        inv[i, 1] = -cxy / det
        inv[i, 2] = cyy / det
        logdet[i] = math.log(det)
    return cmean, pmean, inv, logdet


@njit(cache=True)
def _energy(
    feats: np.ndarray,
    y: int,
    x: int,
    lab: int,
    cmean: np.ndarray,
    pmean: np.ndarray,
    inv: np.ndarray,
    logdet: np.ndarray,
    inv_two_var: float,
) -> float:
    e = 0.0
    for f in range(feats.shape[2]):
        d = feats[y, x, f] - cmean[lab, f]
        e += d * d * inv_two_var
    dy = y - pmean[lab, 0]
    dx = x - pmean[lab, 1]
    e += 0.5 * (inv[lab, 0] * dy * dy + 2.0 * inv[lab, 1] * dy * dx + inv[lab, 2] * dx * dx)
    e += 0.5 * logdet[lab]
    return e


@njit(cache=True)
def _cost(
    labels: np.ndarray,
    feats: np.ndarray,
    y: int,
    x: int,
    lab: int,
    cmean: np.ndarray,
    pmean: np.ndarray,
    inv: np.ndarray,
    logdet: np.ndarray,
    inv_two_var: float,
    beta: float,
    simple: np.ndarray,
) -> float:
    """Energy of pixel (y, x) under label ``lab``; infinite where the move is not a simple point."""
    code = _code(labels, y, x, lab)
    if not simple[code]:
        return math.inf
    same = 0
    for b in range(8):
        same += code >> b & 1
    energy = _energy(feats, y, x, lab, cmean, pmean, inv, logdet, inv_two_var)
    return energy + beta * (8 - same)


@njit(cache=True, parallel=True)
def _sweep(
    labels: np.ndarray,
    feats: np.ndarray,
    cmean: np.ndarray,
    pmean: np.ndarray,
    inv: np.ndarray,
    logdet: np.ndarray,
    inv_two_var: float,
    beta: float,
    simple: np.ndarray,
) -> int:
    """One sweep: four parity passes over boundary pixels. Returns the number of changes."""
    height, width = labels.shape
    changed = 0
    dys = (-1, 0, 1, 0)
    dxs = (0, 1, 0, -1)
    for parity in range(4):
        py = parity // 2
        px = parity % 2
        # Rows of one parity pass never touch each other's 8-neighbourhoods: run them in parallel.
        for row in prange((height - py + 1) // 2):
            y = py + 2 * row
            candidates = np.empty(4, dtype=np.int64)
            for x in range(px, width, 2):
                own = labels[y, x]
                n_candidates = 0
                for i in range(4):
                    ny = y + dys[i]
                    nx = x + dxs[i]
                    if 0 <= ny < height and 0 <= nx < width:
                        other = labels[ny, nx]
                        if other != own:
                            seen = False
                            for j in range(n_candidates):
                                if candidates[j] == other:
                                    seen = True
                            if not seen:
                                candidates[n_candidates] = other
                                n_candidates += 1
                if n_candidates == 0:
                    continue
                # Leaving its own label must keep that label's topology too.
                best = own
                best_energy = _cost(
                    labels, feats, y, x, own, cmean, pmean, inv, logdet, inv_two_var, beta, simple
                )
                if best_energy == math.inf:
                    continue
                for j in range(n_candidates):
                    lab = candidates[j]
                    e = _cost(
                        labels,
                        feats,
                        y,
                        x,
                        lab,
                        cmean,
                        pmean,
                        inv,
                        logdet,
                        inv_two_var,
                        beta,
                        simple,
                    )
                    if e < best_energy:
                        best_energy = e
                        best = lab
                if best != own:
                    labels[y, x] = best
                    changed += 1
    return changed
