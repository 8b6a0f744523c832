"""The network of a trained guard: a backbone trunk and a linear head."""

from __future__ import annotations

import torch


class GuardNet(torch.nn.Module):
    """Trunk -> flattened embedding -> linear head (two logits: safe, unsafe)."""

    def __init__(self, trunk: torch.nn.Module, dim: int, n_classes: int = 2) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = torch.nn.Linear(dim, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.trunk(x)
        return features.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.embed(x))
        return logits
