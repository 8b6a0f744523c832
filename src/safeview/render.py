"""Obfuscation styles on a mask: blur (default), pixelate, solid fill, inpaint.

Each renderer has one verb, ``render(image, mask) -> image``, returns a new array and never mutates
its input. Strengths are defined relative to the image size, so the obfuscation the search scores at
working resolution looks the same to the guard as the one written at full resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import cv2
import numpy as np

from safeview.registry import Registry

#: The built-in styles, in order (``RENDERERS.names()`` also lists registered plug-ins).
STYLES = ("blur", "pixelate", "fill", "inpaint")


class Renderer(Protocol):
    name: str

    def render(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray: ...


def composite(image: np.ndarray, layer: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``layer`` where ``mask`` is true, ``image`` elsewhere (a new array). Only the mask's
    bounding box is blended (a small mask on a large frame costs a copy, not a full blend)."""
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    out = image.astype(np.uint8)  # a copy
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(mask.any(axis=0))
    box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    layer = np.broadcast_to(layer, image.shape) if np.ndim(layer) < image.ndim else layer
    out[box] = np.where(mask[box][..., None], layer[box], image[box]).astype(np.uint8)
    return out


def _small_size(image: np.ndarray, long_side: int) -> tuple[int, int]:
    height, width = image.shape[:2]
    scale = min(1.0, long_side / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


class _LayerRenderer:
    """A renderer whose obfuscated layer does not depend on the mask (computed once per image)."""

    name = "layer"

    def layer(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def render(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return composite(image, self.layer(image), mask)

    def bind(self, image: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        layer = self.layer(image)
        return lambda mask: composite(image, layer, mask)


class Blur(_LayerRenderer):
    """Heavy Gaussian blur.

    Parameters
    ----------
    strength:
        Blur radius as a fraction of the image's longer side (0.05 = 5%). Details smaller than
        about twice this are gone; raise it if shapes remain recognisable.
    """

    name = "blur"

    def __init__(self, strength: float = 0.05) -> None:
        if not 0 < strength <= 1:
            raise ValueError(f"blur strength must be in (0, 1], got {strength}")
        self.strength = strength

    def layer(self, image: np.ndarray) -> np.ndarray:
        # Blur at a fixed small resolution (sigma 2 px there) and upsample: the same look at any
        # input size, and fast for large images.
        long_side = max(4, round(2.0 / self.strength))
        small_size = _small_size(image, long_side)
        small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigmaX=2.0, borderType=cv2.BORDER_REFLECT)
        height, width = image.shape[:2]
        return np.asarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR))


class Pixelate(_LayerRenderer):
    """Mosaic of ``blocks`` blocks along the image's longer side."""

    name = "pixelate"

    def __init__(self, blocks: int = 16) -> None:
        if blocks < 1:
            raise ValueError(f"pixelate blocks must be >= 1, got {blocks}")
        self.blocks = blocks

    def layer(self, image: np.ndarray) -> np.ndarray:
        small = cv2.resize(image, _small_size(image, self.blocks), interpolation=cv2.INTER_AREA)
        height, width = image.shape[:2]
        return np.asarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST))


class Fill(_LayerRenderer):
    """A solid colour (neutral grey by default)."""

    name = "fill"

    def __init__(self, color: tuple[int, int, int] = (128, 128, 128)) -> None:
        self.color = tuple(int(c) for c in color)

    def layer(self, image: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.color, dtype=np.uint8), image.shape).copy()


class Inpaint:
    """OpenCV Telea inpainting of the masked pixels from their surroundings.

    Runs at most at ``long_side`` pixels and is upsampled, so cost does not grow with input size.
    """

    name = "inpaint"

    def __init__(self, radius: float = 0.02, long_side: int = 256) -> None:
        self.radius = radius
        self.long_side = long_side

    def render(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return image.copy()
        size = _small_size(image, self.long_side)
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        # Grow the small mask a little so no unsafe pixel leaks in from the downscaled border.
        small_mask = cv2.dilate(small_mask, np.ones((3, 3), np.uint8))
        radius = max(1.0, self.radius * max(size))
        filled = cv2.inpaint(small, small_mask, radius, cv2.INPAINT_TELEA)
        height, width = image.shape[:2]
        layer = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
        return composite(image, layer, mask)

    def bind(self, image: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return lambda mask: self.render(image, mask)


#: Every obfuscation style by name: ``factory(**options) -> Renderer``.
RENDERERS: Registry[Renderer] = Registry("style", sort=False)
RENDERERS.register("blur", Blur)
RENDERERS.register("pixelate", Pixelate)
RENDERERS.register("fill", Fill)
RENDERERS.register("inpaint", Inpaint)


def make_renderer(style: str, **options: Any) -> Renderer:
    """The renderer for ``style``; ``options`` go to it (e.g. ``strength`` of ``"blur"``,
    ``blocks`` of ``"pixelate"``), defaults otherwise."""
    return RENDERERS.create(style, **options)


def is_layered(renderer: Renderer) -> bool:
    """Whether ``renderer`` hides a mask by pasting a layer that does not depend on the mask
    (blur, pixelate, fill): each region's change to the image is then independent of the
    others', and a candidate can be composed from them (:mod:`safeview.counterfactual.inputs`)."""
    return isinstance(renderer, _LayerRenderer)


def bind(renderer: Renderer, image: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``mask -> rendered image`` for one image, reusing work that does not depend on the mask."""
    binder = getattr(renderer, "bind", None)
    if binder is not None:
        bound: Callable[[np.ndarray], np.ndarray] = binder(image)
        return bound
    return lambda mask: renderer.render(image, mask)
