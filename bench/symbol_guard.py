"""The synthetic "symbol" category the benchmarks share: a saturated red patch, and a tiny guard
that fires when more than 1.5% of the image is that red (224 x 224 input, a step-like
response). Used by bench_policy.py and bench_video.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from safeview.guards.base import Decision, resize_batch

#: Red fraction of the image at which the synthetic guard fires.
SYMBOL_FRACTION = 0.015


class _Redness(torch.nn.Module):
    """logit(symbol) - logit(safe) = K * (mean saturated redness - what 1.5% of the image gives)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, kernel_size=1)
        self.head = torch.nn.Linear(1, 2)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1)
            self.conv.bias.fill_(-0.45)
            self.head.weight.copy_(torch.tensor([[0.0], [2000.0]]))
            self.head.bias.copy_(torch.tensor([0.0, -2000.0 * 0.37 * SYMBOL_FRACTION]))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class SymbolGuard:
    """The tiny red guard: a pasted red symbol (threshold guard, 224 x 224 input)."""

    version = "bench"
    categories = ("safe", "symbol")
    decision: Decision = "threshold"
    unsafe_category = "symbol"
    input_size = (224, 224)

    def __init__(self, name: str = "bench-symbol") -> None:
        self.name = name
        self.device = torch.device("cpu")
        self.module = _Redness()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def preprocess(self, images: Any) -> torch.Tensor:
        batch = resize_batch(images, self.input_size).astype(np.float32) / 255.0
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)
