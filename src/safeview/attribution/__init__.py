"""Attribution maps for the guard's target class, chosen by name.

``"fullgrad"`` (default, our own one-backward implementation), and ``"gradcam"``, ``"gradcam++"``,
``"xgradcam"``, ``"ablationcam"`` from the ``grad-cam`` package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from safeview.guards import Guard
from safeview.registry import Registry

#: The built-in methods, in order (``ATTRIBUTIONS.names()`` also lists registered plug-ins).
METHODS = ("fullgrad", "gradcam", "gradcam++", "xgradcam", "ablationcam")


class AttributionMethod(Protocol):
    name: str

    def attribute(self, x: torch.Tensor, target: int | list[int]) -> np.ndarray:
        """(B, H, W) maps in [0, 1] for the preprocessed batch ``x``."""
        ...


#: Every attribution method by name: ``factory(guard) -> AttributionMethod``.
ATTRIBUTIONS: Registry[AttributionMethod] = Registry("attribution method", sort=False)


@ATTRIBUTIONS.register("fullgrad")
def _fullgrad(guard: Guard) -> AttributionMethod:
    from safeview.attribution.fullgrad import FullGrad

    return FullGrad(guard.module)


def _cam(method: str) -> Callable[[Guard], AttributionMethod]:
    def factory(guard: Guard) -> AttributionMethod:
        from safeview.attribution.cams import GradCAMFamily

        width, height = guard.input_size
        example = torch.zeros(1, 3, height, width, device=guard.device)
        return GradCAMFamily(method, guard.module, example)

    return factory


for _name in METHODS[1:]:
    ATTRIBUTIONS.register(_name, _cam(_name))


def make_attribution(method: str, guard: Guard) -> AttributionMethod:
    """Build the attribution method ``method`` for ``guard``'s module (build it once and reuse it:
    the Grad-CAM family runs a forward pass to find its layer). A guard without gradients (a
    detector-backed guard) brings its own, ``guard.own_attribution``, used whatever is asked."""
    ATTRIBUTIONS.factory(method)  # an unknown name fails even for such a guard
    own: AttributionMethod | None = getattr(guard, "own_attribution", None)
    if own is not None:
        return own
    return ATTRIBUTIONS.factory(method)(guard)


def attribute(
    guard: Guard, image: np.ndarray, target: int, method: str | AttributionMethod = "fullgrad"
) -> np.ndarray:
    """The attribution map of ``image`` (RGB uint8) for ``target``, at the guard's input size."""
    explainer = make_attribution(method, guard) if isinstance(method, str) else method
    return explainer.attribute(guard.preprocess([image]), target)[0]


__all__ = ["ATTRIBUTIONS", "METHODS", "AttributionMethod", "attribute", "make_attribution"]
