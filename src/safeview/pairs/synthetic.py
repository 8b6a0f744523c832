"""A synthetic safety category for running SafetyPairs end to end where no unsafe data exists.

"Unsafe" = a conspicuous symbol (a black ring and cross on a white disc, like a prohibition sign)
pasted onto a photograph at a random place, size and angle; "safe" = other photographs, untouched.
A guard must find the symbol, an editor must remove it, and a pair differs only where it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from safeview.io import atomic_write, encode_image, load_image
from safeview.train.data import image_files


def paste_symbol(
    pixels: np.ndarray, rng: np.random.Generator, scale: tuple[float, float] = (0.14, 0.24)
) -> tuple[np.ndarray, np.ndarray]:
    """``pixels`` with the symbol pasted, and the symbol's mask (bool, H x W)."""
    height, width = pixels.shape[:2]
    radius = max(4, int(rng.uniform(*scale) * min(height, width) / 2))
    cy = int(rng.integers(radius, max(radius + 1, height - radius)))
    cx = int(rng.integers(radius, max(radius + 1, width - radius)))
    angle = rng.uniform(0, np.pi)
    out = pixels.copy()
    canvas = np.zeros((height, width), dtype=np.uint8)
    cv2.circle(canvas, (cx, cy), radius, 1, -1)
    out[canvas > 0] = (245, 245, 245)
    thickness = max(2, radius // 4)
    cv2.circle(out, (cx, cy), radius - thickness // 2, (10, 10, 10), thickness, cv2.LINE_AA)
    arm = radius - thickness
    for theta in (angle, angle + np.pi / 2):
        dx, dy = int(arm * np.cos(theta)), int(arm * np.sin(theta))
        cv2.line(out, (cx - dx, cy - dy), (cx + dx, cy + dy), (10, 10, 10), thickness, cv2.LINE_AA)
    # The mask covers every pixel the symbol touched (anti-aliased edges included).
    cv2.circle(canvas, (cx, cy), radius + 2, 1, -1)
    return out, canvas > 0


def make_synthetic(
    source: str | Path,
    output: str | Path,
    category: str = "symbol",
    seed: int = 0,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write ``output/safe/*.jpg`` and ``output/CATEGORY/*.jpg`` (one folder per category) from
    the photographs under ``source``: alternate photos get the symbol. Also writes the symbol
    masks to ``output/masks/CATEGORY/*.png`` (the ground truth an editor can be checked against)."""
    source, output = Path(source), Path(output)
    photos = image_files(source)
    if not photos:
        raise ValueError(f"{source} has no images")
    if limit is not None:
        photos = photos[:limit]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(photos))
    counts = {"safe": 0, category: 0}
    for rank, index in enumerate(order):
        path = photos[index]
        pixels = load_image(path).pixels
        name = f"{path.stem}.jpg"
        if rank % 2 == 0:
            pixels, mask = paste_symbol(pixels, rng)
            atomic_write(output / category / name, encode_image(pixels, "JPEG", quality=95))
            atomic_write(
                output / "masks" / category / f"{path.stem}.png",
                encode_image(np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8), "PNG"),
            )
            counts[category] += 1
        else:
            atomic_write(output / "safe" / name, encode_image(pixels, "JPEG", quality=95))
            counts["safe"] += 1
        if progress is not None:
            progress(1)
    return counts
