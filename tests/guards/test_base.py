"""The frozen inference copy of a guard's module: built in the background after enough images,
equal to the original, and never used when it would not be. (Where onnxruntime scores the guard,
guards/runtime.py, no frozen copy is needed: these tests turn it off.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import safeview.guards.base as base
from safeview.guards.base import inference_module, scores
from tests.conftest import RedGuard, red_square_image


def _wait_built(guard: RedGuard, timeout: float = 60.0) -> torch.nn.Module:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        module = base._INFERENCE.get(guard.module)
        if module is not None:
            return module
        time.sleep(0.05)
    raise AssertionError("the frozen copy was not built in time")


def _images(n: int) -> list[np.ndarray]:
    return [red_square_image(64, square=(8 * (i % 5), 10, 10 + i % 7)) for i in range(n)]


def test_frozen_copy_after_enough_images_scores_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "FREEZE_AFTER", 8)
    monkeypatch.setenv("SAFEVIEW_FREEZE", "1")
    monkeypatch.setenv("SAFEVIEW_ONNX", "0")
    guard = RedGuard()
    images = _images(12)
    eager = scores(guard, images[:4])  # 4 images: below the bar, nothing is built
    assert inference_module(guard) is guard.module and guard.module not in base._INFERENCE
    scores(guard, images[4:8])  # crosses it: the copy is built in a background thread
    frozen = _wait_built(guard)
    assert isinstance(frozen, torch.jit.ScriptModule)
    assert inference_module(guard) is frozen
    again = scores(guard, images[:4])
    np.testing.assert_allclose(again, eager, atol=1e-5)
    # The original module keeps its gradients and hooks for attribution.
    assert isinstance(guard.module, torch.nn.Module) and guard.module is not frozen


def test_no_frozen_copy_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "FREEZE_AFTER", 2)
    monkeypatch.delenv("SAFEVIEW_FREEZE", raising=False)
    monkeypatch.setenv("SAFEVIEW_ONNX", "0")
    guard = RedGuard()
    scores(guard, _images(6))
    assert inference_module(guard) is guard.module
    assert guard.module not in base._INFERENCE


class _Branchy(torch.nn.Module):
    """Its output depends on the batch in Python: a trace would bake one branch in."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = RedGuard().module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        if x.shape[0] == 2:  # what tracing sees
            return logits
        return logits.flip(-1)


def test_a_copy_that_differs_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "FREEZE_AFTER", 2)
    monkeypatch.setenv("SAFEVIEW_FREEZE", "1")
    monkeypatch.setenv("SAFEVIEW_ONNX", "0")
    guard = RedGuard()
    guard.module = _Branchy()
    scores(guard, _images(3))
    assert _wait_built(guard) is guard.module  # checked on another batch size: kept eager


@pytest.mark.parametrize("onnx", ["0", "1"])
def test_scores_inputs_scores_what_scores_does(monkeypatch: pytest.MonkeyPatch, onnx: str) -> None:
    monkeypatch.setenv("SAFEVIEW_ONNX", onnx)
    guard = RedGuard()
    images = [red_square_image(), np.zeros((40, 50, 3), np.uint8), red_square_image(size=64)]
    expected = scores(guard, images, batch_size=2)
    got = base.scores_inputs(guard, guard.preprocess(images), batch_size=2)
    assert got.shape == expected.shape == (3, 2)
    assert np.allclose(got, expected, atol=1e-5)
