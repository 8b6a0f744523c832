"""A guard trained by ``safeview train``: a backbone trunk and a linear head, from a checkpoint.

The checkpoint is a plain ``torch.save`` dict of tensors and JSON-like metadata, read back with
``weights_only=True`` (no pickled code runs). It records the backbone, the input size and pixel
normalisation it was trained with, its categories (``("safe", CATEGORY)``) and its test metrics.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeview.guards.base import Decision, resize_batch, select_device

CHECKPOINT_FORMAT = "safeview-guard"
CHECKPOINT_VERSION = 1


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


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, validated; a clear ValueError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"guard checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not a readable guard checkpoint: {first}") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a safeview guard checkpoint (made by `safeview train`)")
    if int(data.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path} has checkpoint version {data.get('format_version')}; this safeview reads "
            f"up to {CHECKPOINT_VERSION}"
        )
    return data


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class TrainedGuard:
    """A guard from a ``safeview train`` checkpoint; flags while p(category) >= threshold."""

    decision: Decision = "threshold"

    def __init__(self, path: str | Path, device: str | torch.device | None = None) -> None:
        from safeview.train.backbones import make_backbone

        self.path = Path(path)
        data = read_checkpoint(self.path)
        self.checkpoint = {k: v for k, v in data.items() if k != "state_dict"}
        self.device = select_device(device)
        self.category: str = data["category"]
        self.categories = tuple(data["categories"])
        self.unsafe_category: str | None = self.category
        self.input_size = (int(data["input_size"][0]), int(data["input_size"][1]))
        self.normalization: str = data["normalization"]
        backbone = make_backbone(data["backbone"], pretrained=False)
        network = GuardNet(backbone.trunk, int(data["feature_dim"]), len(self.categories))
        try:
            network.load_state_dict(data["state_dict"])
        except RuntimeError as exc:
            raise ValueError(
                f"{self.path}: weights do not fit backbone {data['backbone']!r}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        self.module: torch.nn.Module = network.eval().to(self.device)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.name = self.path.name
        kind = data.get("kind", "finetune")
        self.version = f"{data['backbone']} {kind} sha256:{file_digest(self.path)[:12]}"
        self.metrics: dict[str, Any] = dict(data.get("metrics", {}))

    def preprocess(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        from safeview.train.backbones import normalize

        batch = resize_batch(images, self.input_size)
        return torch.from_numpy(normalize(batch, self.normalization)).to(self.device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)
