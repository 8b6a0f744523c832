"""A guard trained by ``safeview train``: a backbone trunk and a linear head, from a checkpoint.

The checkpoint's format (a ``torch.save`` dict read with ``weights_only=True``, so no pickled code
runs) is defined in :mod:`safeview.models.checkpoint`. It records the backbone, the input size and
pixel normalisation it was trained with, its categories (``("safe", CATEGORY)``) and its test
metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeview.guards.base import Decision, resize_batch, select_device
from safeview.models.backbones import normalize
from safeview.models.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    file_digest,
    network_from_checkpoint,
)
from safeview.models.checkpoint import load_checkpoint as read_checkpoint
from safeview.models.network import GuardNet

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "GuardNet",
    "TrainedGuard",
    "file_digest",
    "read_checkpoint",
]


class TrainedGuard:
    """A guard from a ``safeview train`` checkpoint; flags while p(category) >= threshold."""

    decision: Decision = "threshold"

    def __init__(self, path: str | Path, device: str | torch.device | None = None) -> None:
        self.path = Path(path)
        data = read_checkpoint(self.path)
        self.checkpoint = {k: v for k, v in data.items() if k != "state_dict"}
        self.device = select_device(device)
        self.category: str = data["category"]
        self.categories = tuple(data["categories"])
        self.unsafe_category: str | None = self.category
        self.input_size = (int(data["input_size"][0]), int(data["input_size"][1]))
        self.normalization: str = data["normalization"]
        network = network_from_checkpoint(data, self.path)
        self.module: torch.nn.Module = network.eval().to(self.device)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.name = self.path.name
        kind = data.get("kind", "finetune")
        self.version = f"{data['backbone']} {kind} sha256:{file_digest(self.path)[:12]}"
        self.metrics: dict[str, Any] = dict(data.get("metrics", {}))

    def preprocess(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        batch = resize_batch(images, self.input_size)
        return torch.from_numpy(normalize(batch, self.normalization)).to(self.device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)
