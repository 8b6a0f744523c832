"""A tiny backbone (registered as ``tiny-test``) and small synthetic safe/unsafe data sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from safeview.io import encode_image
from safeview.train.backbones import Backbone, register_backbone
from tests.conftest import red_square_image


class TinyTrunk(torch.nn.Module):
    """conv-bn-relu x2, global average pool: 16-d embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, padding=1, stride=2),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x).mean(dim=(2, 3))
        return out


def tiny_backbone(pretrained: bool, weights: str | Path | None) -> Backbone:
    torch.manual_seed(1)
    return Backbone("tiny-test", TinyTrunk().eval(), 16, (32, 32), "unit", False, "random")


register_backbone("tiny-test", tiny_backbone)


def scene(rng: np.random.Generator, unsafe: bool, size: int = 64) -> np.ndarray:
    """A random two-tone scene; unsafe ones carry a red square somewhere."""
    row, col = (int(v) for v in rng.integers(4, size - 24, size=2))
    image = red_square_image(size, square=(row, col, int(rng.integers(14, 20))))
    if not unsafe:  # paint the square over with the background around it
        image = red_square_image(size, square=(0, 0, 0))
    noise = rng.integers(-20, 21, size=image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def write_dataset(root: Path, n: int = 15, seed: int = 0, layout: str = "safe/unsafe") -> Path:
    rng = np.random.default_rng(seed)
    unsafe_dir = "unsafe" if layout == "safe/unsafe" else "red"
    for folder, unsafe in (("safe", False), (unsafe_dir, True)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / folder / f"{i:03d}.png").write_bytes(encode_image(scene(rng, unsafe), "PNG"))
    return root


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data")
