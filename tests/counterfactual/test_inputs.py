"""Candidates composed from per-region deltas: exact for a linear preprocessing and a layered
style, refused for a preprocessing that is not linear, made only for the regions asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import safeview.counterfactual.inputs as inputs_module
from safeview.counterfactual.inputs import GuardDeltas, guard_deltas, set_weights
from safeview.render import Blur, Fill, bind
from tests.conftest import RedGuard, red_square_image

CELL = 16


def _setup(renderer=None):
    guard = RedGuard()
    image = red_square_image()
    cells = image.shape[0] // CELL
    labels = np.kron(np.arange(cells * cells).reshape(cells, cells), np.ones((CELL, CELL), int))
    render = bind(renderer or Blur(), image)
    calls: list[list[int]] = []

    def render_set(chosen: list[int]) -> np.ndarray:
        calls.append(list(chosen))
        return render(np.isin(labels, chosen))

    return guard, image, labels, render_set, calls


@pytest.mark.parametrize("renderer", [Blur(), Fill()], ids=["blur", "fill"])
def test_composed_inputs_match_the_rendered_candidates(renderer) -> None:
    guard, image, labels, render_set, _ = _setup(renderer)
    deltas = guard_deltas(guard.preprocess, image, render_set, int(labels.max()) + 1)
    assert deltas is not None
    rng = np.random.default_rng(0)
    sets = [sorted(rng.choice(64, size=k, replace=False).tolist()) for k in (1, 3, 10, 40)]
    composed = deltas.sets(sets)
    assert composed is not None and deltas.linear
    rendered = guard.preprocess([render_set(s) for s in sets])
    # The resize rounds each region's change to a grey level: a few levels at most.
    assert float((composed - rendered).abs().max()) <= 4 / 255 + 1e-6
    probs = guard.probabilities(guard.module(composed))
    expected = guard.probabilities(guard.module(rendered))
    assert torch.allclose(probs, expected, atol=1e-3)


def test_only_the_regions_asked_for_are_rendered() -> None:
    guard, image, labels, render_set, calls = _setup()
    deltas = guard_deltas(guard.preprocess, image, render_set, int(labels.max()) + 1)
    assert deltas is not None
    deltas.sets([[5], [5, 9]])
    singles = [c for c in calls if len(c) == 1]
    assert sorted(c[0] for c in singles) == [5, 9]  # two deltas, not 64
    assert [5, 9] in calls  # the linearity check rendered the first candidate of two regions
    deltas.sets([[5, 9, 12]])
    assert sorted(c[0] for c in calls if len(c) == 1) == [5, 9, 12]
    assert calls.count([5, 9, 12]) == 0  # checked once only


def test_a_preprocessing_that_is_not_linear_is_refused() -> None:
    guard, image, labels, render_set, _ = _setup()

    def standardised(images):  # each image by its own mean and deviation: not linear
        x = guard.preprocess(images)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) / x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)

    deltas = guard_deltas(standardised, image, render_set, int(labels.max()) + 1)
    assert deltas is not None
    assert deltas.sets([[1]]) is not None  # one region alone is exact by construction
    assert deltas.sets([[1, 2, 3, 20, 21, 27, 28]]) is None
    assert not deltas.linear
    assert deltas.sets([[1]]) is None  # and stays refused


def test_the_memory_bound_and_no_regions() -> None:
    guard, image, _, render_set, _ = _setup()
    assert guard_deltas(guard.preprocess, image, render_set, 0) is None
    bound = inputs_module.MAX_DELTA_ELEMENTS
    per_region = guard.preprocess([image]).numel()
    assert guard_deltas(guard.preprocess, image, render_set, bound // per_region + 1) is None


def test_weights_that_want_a_gradient_get_one_for_every_region() -> None:
    guard, image, labels, render_set, _ = _setup()
    deltas = guard_deltas(guard.preprocess, image, render_set, 64, check=False)
    assert isinstance(deltas, GuardDeltas)
    m = set_weights([[]], 64).requires_grad_(True)
    x = deltas.inputs(m)
    objective = guard.module(x)[0, 1]
    (grad,) = torch.autograd.grad(objective, [m])
    square = {int(r) for r in np.unique(labels[40:72, 40:72])}
    # Hiding a red cell lowers the "unsafe" logit; cells far from it do nothing.
    assert all(grad[0, r] < 0 for r in square)
    assert float(grad[0, 63].abs()) < float(grad[0, min(square)].abs())
    # Nothing hidden is the original's input.
    plain = deltas.inputs(set_weights([[]], 64))
    assert torch.equal(plain, guard.preprocess([image]))
