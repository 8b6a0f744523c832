"""Grad-CAM, Grad-CAM++, XGrad-CAM and Ablation-CAM from the ``grad-cam`` package.

The target layer is found automatically: the last module, called exactly once in a forward pass,
whose output is still a spatial (N, C, H, W) map with H, W > 1, i.e. the last convolutional feature
map before global pooling.
"""

from __future__ import annotations

import numpy as np
import torch

from safeview.guards.base import module_lock

_CAM_CLASSES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "ablationcam": "AblationCAM",
}


def find_target_layer(module: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """The last once-called module with a spatial 4-D output in a forward pass on ``example``."""
    calls: list[tuple[torch.nn.Module, tuple[int, ...]]] = []
    counts: dict[int, int] = {}
    handles = []
    with module_lock(module):  # released even when adding a hook or the forward pass raises
        try:
            for child in module.modules():
                if child is module or any(True for _ in child.children()):
                    continue

                def hook(m: torch.nn.Module, _i: object, out: object) -> None:
                    counts[id(m)] = counts.get(id(m), 0) + 1
                    if isinstance(out, torch.Tensor):
                        calls.append((m, tuple(out.shape)))

                handles.append(child.register_forward_hook(hook))
            with torch.no_grad():
                module(example)
        finally:
            for handle in handles:
                handle.remove()
    for layer, shape in reversed(calls):
        if len(shape) == 4 and shape[2] > 1 and shape[3] > 1 and counts[id(layer)] == 1:
            return layer
    raise ValueError("no spatial feature map found for a CAM target layer")


class GradCAMFamily:
    """An adapter from a ``pytorch_grad_cam`` method to our ``attribute(x, target)`` verb."""

    def __init__(self, name: str, module: torch.nn.Module, example: torch.Tensor) -> None:
        if name not in _CAM_CLASSES:
            raise ValueError(f"unknown CAM method {name!r}")
        self.name = name
        self.module = module
        self.target_layer = find_target_layer(module, example)

    def attribute(self, x: torch.Tensor, target: int | list[int]) -> np.ndarray:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam_class = getattr(pytorch_grad_cam, _CAM_CLASSES[self.name])
        targets = [target] * x.shape[0] if isinstance(target, int) else list(target)
        # Guards freeze their weights; without an input that requires grad, the CAM's backward
        # pass would have nothing to differentiate.
        x = x.detach().clone().requires_grad_(True)
        with (
            module_lock(self.module),
            cam_class(model=self.module, target_layers=[self.target_layer]) as cam,
        ):
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
        return np.asarray(maps, dtype=np.float32)
