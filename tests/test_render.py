from __future__ import annotations

import numpy as np
import pytest

from safeview.io import resize
from safeview.render import STYLES, bind, make_renderer


@pytest.mark.parametrize("style", STYLES)
def test_only_masked_pixels_change_and_input_is_not_mutated(style: str) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    before = image.copy()
    mask = np.zeros((60, 80), dtype=bool)
    mask[10:30, 20:50] = True
    out = make_renderer(style).render(image, mask)
    np.testing.assert_array_equal(image, before)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    # Obfuscation destroys the detail: masked pixels differ a lot from the noise they replace.
    assert np.abs(out[mask].astype(int) - image[mask].astype(int)).mean() > 30


@pytest.mark.parametrize("style", STYLES)
def test_bound_renderer_matches_render(style: str) -> None:
    image = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:20, 5:20] = True
    renderer = make_renderer(style)
    np.testing.assert_array_equal(bind(renderer, image)(mask), renderer.render(image, mask))


@pytest.mark.parametrize("style", ["blur", "pixelate"])
def test_strength_is_relative_to_image_size(style: str) -> None:
    """What the search scores at working size is what the guard sees of the full-size output."""
    yy, xx = np.mgrid[:800, :1200]
    image = np.stack([(xx // 7 % 2) * 255, (yy // 11 % 2) * 255, (xx * yy) % 256], -1)
    image = image.astype(np.uint8)
    mask = np.zeros((800, 1200), dtype=bool)
    mask[200:600, 300:900] = True
    renderer = make_renderer(style)
    small = resize(image, (300, 200))
    small_mask = resize(mask.astype(np.uint8), (300, 200), nearest=True).astype(bool)
    at_working = renderer.render(small, small_mask).astype(float)
    at_full_then_down = resize(renderer.render(image, mask), (300, 200)).astype(float)
    inside = small_mask.copy()
    inside[:, :] &= np.pad(small_mask[2:-2, 2:-2], 2)  # ignore the boundary ring
    assert np.abs(at_working - at_full_then_down)[inside].mean() < 12


def test_unknown_style() -> None:
    with pytest.raises(ValueError, match="unknown style"):
        make_renderer("smudge")


@pytest.mark.parametrize("kind", ["empty", "full", "scattered", "box"])
def test_composite_blends_only_the_masks_box_and_equals_a_full_blend(kind: str) -> None:
    from safeview.render import composite

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    layer = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    mask = {
        "empty": np.zeros((45, 70), bool),
        "full": np.ones((45, 70), bool),
        "scattered": rng.random((45, 70)) < 0.2,
        "box": np.pad(np.ones((5, 9), bool), ((20, 20), (30, 31))),
    }[kind]
    out = composite(image, layer, mask)
    assert out is not image and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.where(mask[..., None], layer, image))
