"""Attribution maps for the guard's target class, chosen by name.

``"fullgrad"`` (default, our own one-backward implementation), and ``"gradcam"``, ``"gradcam++"``,
``"xgradcam"``, ``"ablationcam"`` from the ``grad-cam`` package.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from safeview.guards import Guard

METHODS = ("fullgrad", "gradcam", "gradcam++", "xgradcam", "ablationcam")


class AttributionMethod(Protocol):
    name: str

    def attribute(self, x: torch.Tensor, target: int | list[int]) -> np.ndarray:
        """(B, H, W) maps in [0, 1] for the preprocessed batch ``x``."""
        ...


def make_attribution(method: str, guard: Guard) -> AttributionMethod:
    """Build the attribution method ``method`` for ``guard``'s module."""
    if method == "fullgrad":
        from safeview.attribution.fullgrad import FullGrad

        return FullGrad(guard.module)
    if method in METHODS:
        from safeview.attribution.cams import GradCAMFamily

        width, height = guard.input_size
        example = torch.zeros(1, 3, height, width, device=guard.device)
        return GradCAMFamily(method, guard.module, example)
    raise ValueError(f"unknown attribution method {method!r} (available: {', '.join(METHODS)})")


def attribute(
    guard: Guard, image: np.ndarray, target: int, method: str | AttributionMethod = "fullgrad"
) -> np.ndarray:
    """The attribution map of ``image`` (RGB uint8) for ``target``, at the guard's input size."""
    explainer = make_attribution(method, guard) if isinstance(method, str) else method
    return explainer.attribute(guard.preprocess([image]), target)[0]


__all__ = ["METHODS", "AttributionMethod", "attribute", "make_attribution"]
