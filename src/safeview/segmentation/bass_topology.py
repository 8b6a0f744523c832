"""BASS topology and label geometry: the simple-point table that keeps every superpixel simply
connected while boundary pixels move, the hexagonal starting grid, dense relabelling and the final
connected-components pass. Used by :mod:`safeview.segmentation.bass`."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

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
