"""FullGrad (Srinivas & Fleuret, NeurIPS 2019) in one forward and one backward pass.

    FullGrad(x) = psi(|x * dy/dx|) + sum over layers l, channels c of psi(|b_lc * dy/dz_lc|)

where z_l is the output of a layer with a bias b_l (convolutions with a bias, batch norms with their
effective bias) and psi min-max normalises one channel and upsamples it to the input size.
Resizing is linear, so the normalised channels of a layer (indeed of every layer at one resolution)
are summed first and upsampled once: the result is the same as the ``grad-cam`` package's
per-channel loop, at a fraction of the cost.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_EPS = 1e-7


def bias_layers(module: torch.nn.Module) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """Every conv/batch-norm layer with a bias, with the bias it adds to each output channel."""
    layers: list[tuple[torch.nn.Module, torch.Tensor]] = []
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            # Effective bias of an eval-mode batch norm: beta - mean * gamma / sqrt(var + eps).
            assert layer.running_mean is not None and layer.running_var is not None
            weight = (
                layer.weight if layer.weight is not None else torch.ones_like(layer.running_mean)
            )
            shift = layer.bias if layer.bias is not None else torch.zeros_like(weight)
            bias = shift - layer.running_mean * weight / torch.sqrt(layer.running_var + layer.eps)
            layers.append((layer, bias.detach()))
        elif isinstance(layer, torch.nn.Conv2d) and layer.bias is not None:
            layers.append((layer, layer.bias.detach()))
    return layers


def _normalise_channels(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each (batch, channel) map of a (B, C, H, W) tensor to [0, 1]."""
    flat = x.flatten(2)
    low = flat.amin(dim=2, keepdim=True)
    flat = flat - low
    flat = flat / (_EPS + flat.amax(dim=2, keepdim=True))
    return flat.view_as(x)


class FullGrad:
    """FullGrad saliency for a classifier ``module`` (NCHW in, logits out).

    Use :meth:`attribute`; the object holds no hooks between calls.
    """

    name = "fullgrad"

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.layers = bias_layers(module)
        if not self.layers:
            raise ValueError("FullGrad needs at least one Conv2d/BatchNorm2d layer with a bias")

    def attribute(self, x: torch.Tensor, target: int | list[int]) -> np.ndarray:
        """Saliency maps (B, H, W) in [0, 1] for the logit ``target`` (one per image or shared)."""
        from safeview.guards.base import module_lock

        with module_lock(self.module):
            return self._attribute(x, target)

    def _attribute(self, x: torch.Tensor, target: int | list[int]) -> np.ndarray:
        x = x.detach().clone().requires_grad_(True)
        captured: list[tuple[torch.Tensor, torch.Tensor]] = []
        handles = []
        for layer, bias in self.layers:

            def hook(
                _m: torch.nn.Module, _i: object, out: torch.Tensor, bias: torch.Tensor = bias
            ) -> None:
                captured.append((out, bias))

            handles.append(layer.register_forward_hook(hook))
        try:
            with torch.enable_grad():
                logits = self.module(x)
                targets = [target] * x.shape[0] if isinstance(target, int) else list(target)
                chosen = logits[torch.arange(x.shape[0]), torch.as_tensor(targets)]
                grads = torch.autograd.grad(
                    chosen.sum(), [x] + [out for out, _ in captured], allow_unused=True
                )
        finally:
            for handle in handles:
                handle.remove()
        height, width = x.shape[2:]
        with torch.no_grad():
            input_term = _normalise_channels((x * grads[0]).abs()).sum(dim=1)
            by_size: dict[tuple[int, ...], torch.Tensor] = {}
            for (out, bias), grad in zip(captured, grads[1:], strict=True):
                if grad is None:
                    continue
                contribution = _normalise_channels((grad * bias.view(1, -1, 1, 1)).abs()).sum(1)
                size = tuple(out.shape[2:])
                by_size[size] = by_size[size] + contribution if size in by_size else contribution
            total = input_term
            for size, summed in by_size.items():
                if size != (height, width):
                    summed = F.interpolate(
                        summed[:, None], size=(height, width), mode="bilinear", align_corners=False
                    )[:, 0]
                total = total + summed
            total = total.clamp_min(0)
            flat = total.flatten(1)
            flat = flat - flat.amin(dim=1, keepdim=True)
            flat = flat / (_EPS + flat.amax(dim=1, keepdim=True))
        return flat.view(-1, height, width).float().cpu().numpy()
