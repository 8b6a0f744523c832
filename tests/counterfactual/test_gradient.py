"""Region gradients and the searches that use them, on the tiny red-square guard."""

from __future__ import annotations

import numpy as np
import pytest

import safeview.counterfactual.gradient as gradient_module
from safeview.counterfactual import build_hierarchy, coarse_to_fine_search
from safeview.counterfactual.gradient import GradientJudge, gradient_search, region_gradient
from safeview.counterfactual.verify import Rendered, search_verified
from safeview.guards.base import is_flagged
from safeview.render import Blur, bind
from tests.conftest import RedGuard, red_square_image

CELL = 16  # 128 / 16 = an 8 x 8 grid of regions


def _grid(size: int = 128) -> np.ndarray:
    cells = size // CELL
    return np.kron(np.arange(cells * cells).reshape(cells, cells), np.ones((CELL, CELL), int))


def _square_cells(labels: np.ndarray, image: np.ndarray) -> set[int]:
    red = (image[..., 0] > 200) & (image[..., 1] < 60)
    return {int(r) for r in np.unique(labels[red])}


def _setup(square: tuple[int, int, int] = (40, 40, 32)):
    guard = RedGuard()
    image = red_square_image(square=square)
    labels = _grid()
    render = bind(Blur(), image)
    judge = GradientJudge(
        module=guard.module,
        preprocess=guard.preprocess,
        probabilities=guard.probabilities,
        target=1,
        decision="threshold",
        threshold=0.5,
    )
    gradient = region_gradient([judge], render, labels, image)
    assert gradient is not None

    def predict(images: list[np.ndarray]) -> np.ndarray:
        return guard.probabilities(guard.module(guard.preprocess(images))).detach().numpy()

    def still_flagged(probs: np.ndarray) -> np.ndarray:
        return is_flagged(guard, probs, 1, 0.5)

    return guard, image, labels, render, gradient, predict, still_flagged


def test_the_gradient_points_at_the_red_square() -> None:
    _, image, labels, _, gradient, predict, still_flagged = _setup()
    assert still_flagged(predict([image]))[0]
    grad = gradient([], 1.0)
    square = _square_cells(labels, image)
    assert grad.shape == (int(labels.max()) + 1,)
    # Every cell holding red helps more than any cell without it; cells without red barely do.
    assert max(grad[sorted(square)]) < min(np.delete(grad, sorted(square)))
    assert np.all(grad[sorted(square)] < 0)


def test_gradient_search_flips_with_square_cells_only() -> None:
    _, image, labels, render, gradient, predict, still_flagged = _setup()
    stats = {"images": 0, "batches": 0}
    found = gradient_search(
        lambda sets: predict([render(np.isin(labels, s)) for s in sets]),
        still_flagged,
        labels,
        gradient,
        stats,
    )
    assert found is not None
    chosen, probs = found
    assert set(chosen) <= _square_cells(labels, image)
    # The flip is real: scored again, the rendered set is not flagged.
    assert not still_flagged(predict([render(np.isin(labels, chosen))]))[0]
    assert not still_flagged(probs[None])[0]
    assert stats["gradients"] >= 1 and stats["images"] >= 1


def test_no_gradient_when_the_deltas_would_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    guard, image, labels, render, *_ = _setup()
    monkeypatch.setattr(gradient_module, "MAX_DELTA_ELEMENTS", 10)
    judge = GradientJudge(guard.module, guard.preprocess, guard.probabilities, 1, "threshold", 0.5)
    assert region_gradient([judge], render, labels, image) is None
    assert region_gradient([], render, labels, image) is None


def test_coarse_to_fine_grows_by_gradient_when_the_attribution_misleads() -> None:
    _, image, labels, render, gradient, predict, still_flagged = _setup()
    square = _square_cells(labels, image)
    # An attribution that ranks every cell but the square's first: the fine prefixes miss it.
    attribution = np.where(np.isin(labels, sorted(square)), 0.0, 1.0)
    hierarchy = build_hierarchy(labels, image, attribution)
    plain = coarse_to_fine_search(predict, still_flagged, render, hierarchy, fine_budget=4)
    with_gradient = coarse_to_fine_search(
        predict, still_flagged, render, hierarchy, fine_budget=4, region_gradient=gradient
    )
    assert with_gradient.flipped
    stages = [stage["stage"] for stage in with_gradient.stages]
    assert stages[:2] == ["fine", "gradient"] and "coarse" not in stages
    assert set(with_gradient.chosen) <= square
    assert with_gradient.gradient_passes >= 1
    area = with_gradient.area[with_gradient.chosen].sum()
    assert area <= plain.area[plain.chosen].sum()
    assert not still_flagged(predict([render(np.isin(labels, with_gradient.chosen))]))[0]


def test_a_flip_that_does_not_hold_on_the_output_is_repaired_by_gradient() -> None:
    guard, image, labels, render, gradient, predict, _ = _setup()
    square = _square_cells(labels, image)
    chosen_first: list[list[int]] = []

    def search(predict_, still_flagged_, render_, labels_, attribution, image_, **_options):
        hierarchy = build_hierarchy(labels_, image_, attribution)
        result = coarse_to_fine_search(predict_, still_flagged_, render_, hierarchy)
        chosen_first.append(list(result.chosen))
        return result

    def flagged(probs: np.ndarray, margin: float) -> np.ndarray:
        return is_flagged(guard, probs, 1, 0.5, margin)

    def render_full(chosen: list[int]) -> Rendered:
        mask = np.isin(labels, chosen)
        pixels = render(mask)
        return Rendered(mask, pixels, pixels.tobytes())

    # The "encoded output" reads stricter than the working copy: p(unsafe) + 0.15, so the first,
    # marginal flip does not hold there and more of the square must go.
    def verify(outputs: list[Rendered]) -> np.ndarray:
        pixels = [np.frombuffer(o.encoded, np.uint8).reshape(image.shape) for o in outputs]
        probs = predict(pixels)
        unsafe = np.clip(probs[:, 1] + 0.15, 0, 1)
        return np.stack([1 - unsafe, unsafe], axis=1)

    attribution = np.isin(labels, sorted(square)).astype(float)
    verified = search_verified(
        search, predict, flagged, render, render_full, verify, labels, attribution, image,
        region_gradient=gradient,
    )  # fmt: skip
    assert verified.success and verified.holds
    assert not flagged(verify([render_full(verified.chosen)]), 0.0)[0]
    assert set(chosen_first[0]) < set(verified.chosen) <= square
    assert verified.gradient_passes >= 1
    assert any("did not hold at full resolution" in w for w in verified.warnings)
    # Without gradients the same search falls back to larger sets (at least as large).
    fallback = search_verified(
        search, predict, flagged, render, render_full, verify, labels, attribution, image
    )
    assert fallback.mask.sum() >= verified.mask.sum()
