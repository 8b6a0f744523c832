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
from numba import njit, prange

_OFFSETS_8 = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def simple_point_table() -> np.ndarray:
    """For each 8-neighbour configuration (bit i = neighbour i has the label), whether the centre
    pixel is a simple point: adding it to or removing it from the label changes no topology
    ((4, 8) connectivity: 4-connected label, 8-connected complement)."""
    table = np.zeros(256, dtype=np.bool_)
    four = {(-1, 0), (0, 1), (1, 0), (0, -1)}
    for code in range(256):
        inside = {_OFFSETS_8[i] for i in range(8) if code >> i & 1}
        outside = set(_OFFSETS_8) - inside

        def components(points: set[tuple[int, int]], eight: bool) -> list[set[tuple[int, int]]]:
            found, seen = [], set()
            for start in points:
                if start in seen:
                    continue
                group, stack = set(), [start]
                while stack:
                    p = stack.pop()
                    if p in seen:
                        continue
                    seen.add(p)
                    group.add(p)
                    for q in points:
                        dy, dx = abs(q[0] - p[0]), abs(q[1] - p[1])
                        near = max(dy, dx) == 1 if eight else dy + dx == 1
                        if near and q not in seen:
                            stack.append(q)
                found.append(group)
            return found

        t4 = sum(1 for c in components(inside, eight=False) if c & four)
        t8 = len(components(outside, eight=True))
        table[code] = t4 == 1 and t8 == 1
    return table


_SIMPLE = simple_point_table()


def lab_features(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 CIE Lab / 100 of an RGB uint8 image (D65, as scikit-image's rgb2lab)."""
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return np.asarray(lab, dtype=np.float64) / 100.0


def hexagonal_grid(height: int, width: int, size: float) -> np.ndarray:
    """Labels of a hexagonal tiling with cells of about ``size`` x ``size`` pixels."""
    dx = size * math.sqrt(2.0 / math.sqrt(3.0))  # hexagon of area size^2
    dy = dx * math.sqrt(3.0) / 2.0
    labels, _ = _relabel_dense(_hexagonal_grid(height, width, dx, dy))
    return labels


@njit(cache=True)
def _hexagonal_grid(height: int, width: int, dx: float, dy: float) -> np.ndarray:
    """Nearest centre of a hexagonal lattice (rows dy apart, odd rows shifted by dx / 2)."""
    columns = int(width / dx) + 3
    labels = np.empty((height, width), dtype=np.int64)
    for y in range(height):
        row0 = math.floor((y - dy / 2.0) / dy)
        for x in range(width):
            best = 1e30
            best_id = 0
            for row in range(row0 - 1, row0 + 3):
                if row < 0:
                    continue
                cy = dy / 2.0 + row * dy
                shift = dx / 2.0 + (dx / 2.0 if row % 2 else 0.0)
                col0 = math.floor((x - shift) / dx)
                for col in range(col0 - 1, col0 + 3):
                    if col < 0:
                        continue
                    cx = shift + col * dx
                    d = (y - cy) * (y - cy) + (x - cx) * (x - cx)
                    if d < best:
                        best = d
                        best_id = row * columns + col
            labels[y, x] = best_id
    return labels


@njit(cache=True)
def _relabel_dense(labels: np.ndarray) -> tuple[np.ndarray, int]:
    top = labels.max() + 1
    mapping = -np.ones(top, dtype=np.int64)
    out = np.empty_like(labels)
    count = 0
    for y in range(labels.shape[0]):
        for x in range(labels.shape[1]):
            lab = labels[y, x]
            if mapping[lab] < 0:
                mapping[lab] = count
                count += 1
            out[y, x] = mapping[lab]
    return out, count


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
def _code(labels: np.ndarray, y: int, x: int, lab: int) -> int:
    """8-neighbour configuration of label ``lab`` around (y, x) (outside the image = not lab)."""
    height, width = labels.shape
    dys = (-1, -1, -1, 0, 1, 1, 1, 0)
    dxs = (-1, 0, 1, 1, 1, 0, -1, -1)
    code = 0
    for i in range(8):
        ny = y + dys[i]
        nx = x + dxs[i]
        if 0 <= ny < height and 0 <= nx < width and labels[ny, nx] == lab:
            code |= 1 << i
    return code


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


def enforce_connectivity(labels: np.ndarray, min_size: int = 1) -> np.ndarray:
    """Give every 4-connected fragment that is not its label's largest piece (or is smaller than
    ``min_size`` pixels) to a neighbouring label. Returns 4-connected labels 0..K-1."""
    dense, _ = _relabel_dense(_absorb_fragments(np.ascontiguousarray(labels, np.int64), min_size))
    return dense


@njit(cache=True)
def _absorb_fragments(labels: np.ndarray, min_size: int) -> np.ndarray:
    """:func:`enforce_connectivity` keeping the label ids (some may disappear)."""
    height, width = labels.shape
    n = height * width
    flat = labels.ravel().copy()
    component = -np.ones(n, dtype=np.int64)
    comp_label = np.empty(n, dtype=np.int64)
    comp_size = np.zeros(n, dtype=np.int64)
    stack = np.empty(n, dtype=np.int64)
    n_comp = 0
    for start in range(n):
        if component[start] >= 0:
            continue
        lab = flat[start]
        component[start] = n_comp
        top = 0
        stack[top] = start
        top += 1
        size = 0
        while top > 0:
            top -= 1
            p = stack[top]
            size += 1
            py = p // width
            px = p % width
            for d in range(4):
                qy = py + (d == 1) - (d == 3)
                qx = px + (d == 0) - (d == 2)
                if 0 <= qy < height and 0 <= qx < width:
                    q = qy * width + qx
                    if component[q] < 0 and flat[q] == lab:
                        component[q] = n_comp
                        stack[top] = q
                        top += 1
        comp_label[n_comp] = lab
        comp_size[n_comp] = size
        n_comp += 1
    top_label = flat.max() + 1
    largest = -np.ones(top_label, dtype=np.int64)
    for c in range(n_comp):
        lab = comp_label[c]
        if largest[lab] < 0 or comp_size[c] > comp_size[largest[lab]]:
            largest[lab] = c
    keep = np.zeros(n_comp, dtype=np.bool_)
    for lab in range(top_label):
        if largest[lab] >= 0:
            keep[largest[lab]] = True
    for c in range(n_comp):
        if comp_size[c] < min_size and n_comp > 1:
            keep[c] = False
    if not keep.any():
        keep[largest[comp_label[0]]] = True
    # Absorb orphans into a kept neighbour; repeat while orphans border only orphans.
    owner = np.arange(n_comp)
    remaining = n_comp - keep.sum()
    while remaining > 0:
        progress = 0
        contact = np.zeros(n_comp, dtype=np.int64) - 1
        for p in range(n):
            c = owner[component[p]]
            if keep[c] or contact[c] >= 0:
                continue
            py = p // width
            px = p % width
            for d in range(4):
                qy = py + (d == 1) - (d == 3)
                qx = px + (d == 0) - (d == 2)
                if 0 <= qy < height and 0 <= qx < width:
                    other = owner[component[qy * width + qx]]
                    if other != c and keep[other]:
                        contact[c] = other
                        break
        for c in range(n_comp):
            if not keep[c] and owner[c] == c and contact[c] >= 0:
                owner[c] = contact[c]
                keep[c] = True
                progress += 1
        remaining -= progress
        if progress == 0:
            break
    out = np.empty(n, dtype=np.int64)
    for p in range(n):
        c = component[p]
        while owner[c] != c:
            c = owner[c]
        out[p] = comp_label[c]
    return out.reshape(height, width)


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
    """BASS with the attribution map as an extra feature (``attribution_weight`` 0.5 default)."""

    name = "bass-guided"

    def __init__(self, attribution_weight: float = 0.5, **options: object) -> None:
        if attribution_weight <= 0:
            raise ValueError("bass-guided needs attribution_weight > 0")
        super().__init__(attribution_weight=attribution_weight, **options)  # type: ignore[arg-type]
