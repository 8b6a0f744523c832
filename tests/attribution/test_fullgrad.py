from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from safeview.attribution import METHODS, attribute, make_attribution
from safeview.attribution.cams import find_target_layer
from safeview.attribution.fullgrad import FullGrad, bias_layers


def tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, stride=2, padding=1, bias=False),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 3),
    )
    for module in model.modules():  # non-trivial running statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def _grad_cam_fullgrad(model: torch.nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    from pytorch_grad_cam import FullGrad as PackageFullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with PackageFullGrad(model=model, target_layers=[]) as cam:
        return np.asarray(cam(input_tensor=x, targets=[ClassifierOutputTarget(target)]))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_matches_grad_cam_package_on_a_tiny_cnn() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    ours = FullGrad(model).attribute(x, 2)
    assert ours.shape == (2, 48, 64)
    for i in range(2):
        # One image at a time: grad-cam 1.5.7's FullGrad returns an all-zero map for every
        # image after the first of a batch.
        theirs = _grad_cam_fullgrad(model, x[i : i + 1], 2)[0]
        assert _pearson(ours[i], theirs) >= 0.99
        # and a batch gives each image the map it gets alone
        np.testing.assert_allclose(
            ours[i], FullGrad(model).attribute(x[i : i + 1], 2)[0], atol=1e-5
        )
    assert ours.min() >= 0 and ours.max() == pytest.approx(1.0, abs=1e-5)


def test_bias_layers_fold_batch_norm() -> None:
    model = tiny_cnn()
    layers = bias_layers(model)
    # two biased convs + three batch norms; the bias-free conv is skipped
    assert len(layers) == 5
    bn = model[1]
    expected = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(dict((id(m), b) for m, b in layers)[id(bn)], expected.detach())


def test_target_matters() -> None:
    model = tiny_cnn()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    explainer = FullGrad(model)
    assert not np.allclose(explainer.attribute(x, 0), explainer.attribute(x, 1))


def test_fullgrad_finds_the_red_square(red_guard, red_square) -> None:
    heatmap = attribute(red_guard, red_square, target=1)
    assert heatmap.shape == (64, 64)
    inside = heatmap[22:34, 22:34].mean()  # the square at 40..72 of 128 -> 20..36 of 64
    outside = np.concatenate([heatmap[:12].ravel(), heatmap[-12:].ravel()]).mean()
    assert inside > 3 * outside


def test_cam_target_layer_is_last_spatial_map() -> None:
    model = tiny_cnn()
    layer = find_target_layer(model, torch.zeros(1, 3, 32, 32))
    assert layer is model[8]  # the last ReLU before pooling


@pytest.mark.parametrize("method", [m for m in METHODS if m != "fullgrad"])
def test_grad_cam_family_adapters(method: str, red_guard, red_square) -> None:
    explainer = make_attribution(method, red_guard)
    heatmap = attribute(red_guard, red_square, 1, explainer)
    assert heatmap.shape == (64, 64)
    assert np.isfinite(heatmap).all()


def test_unknown_method(red_guard) -> None:
    with pytest.raises(ValueError, match="unknown attribution"):
        make_attribution("lime", red_guard)


@pytest.mark.slow
@pytest.mark.parametrize("guard_name", ["open-nsfw", "imagenet"])
def test_matches_grad_cam_package_on_real_guards(guard_name: str) -> None:
    from safeview.guards import load_guard, scores

    guard = load_guard(guard_name, "cpu")
    image = data.astronaut()
    target = int(np.argmax(scores(guard, [image])[0]))
    x = guard.preprocess([image])
    ours = FullGrad(guard.module).attribute(x, target)[0]
    theirs = _grad_cam_fullgrad(guard.module, x, target)[0]
    assert _pearson(ours, theirs) >= 0.99
    cam = attribute(guard, image, target, make_attribution("gradcam", guard))
    assert cam.shape == (224, 224) and cam.max() > 0
