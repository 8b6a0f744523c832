"""MediaPipe's bundled graphs (hands, faces), run offline with the models inside the wheel.

``mediapipe`` 0.10.21 is the last release whose wheel carries its ``.tflite`` models (later ones
download them), and its legacy ``solutions`` graphs load them from the package itself. Two things
stand between it and this project's environment, both handled here:

- its metadata pins ``numpy<2`` and ``protobuf<5`` and pulls in jax, sentencepiece, sounddevice
  and ``opencv-contrib-python`` (a second OpenCV). ``setup.sh`` installs it with ``--no-deps``;
  what it really imports for these graphs is numpy, OpenCV (the headless build serves), protobuf,
  attrs and matplotlib (listed in pyproject's ``detectors`` extra).
- with protobuf 5+ its Python code that edits calculator options reads
  ``FieldDescriptor.label``, which protobuf 7 removed. :class:`_Graph` edits the options itself
  (scalar fields only, which is all the thresholds are) and sets the TFLite thread count, which the
  legacy API does not expose. On import its C++ bindings print one harmless line,
  ``AttributeError: 'MessageFactory' object has no attribute 'GetPrototype'`` (they fall back to
  serialised protos, which is what the graphs' outputs are read with anyway).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

MEDIAPIPE_VERSION = "0.10.21"


def _import_mediapipe() -> Any:
    try:
        import mediapipe
    except ImportError as exc:
        raise ImportError(
            f"the hands and faces detectors need mediapipe=={MEDIAPIPE_VERSION} (installed by "
            f"setup.sh: pip install --no-deps mediapipe=={MEDIAPIPE_VERSION})"
        ) from exc
    if mediapipe.__version__ != MEDIAPIPE_VERSION:
        # Later wheels download their models at run time: never on these machines.
        raise ImportError(
            f"mediapipe {mediapipe.__version__} is installed; the detectors need "
            f"{MEDIAPIPE_VERSION}, the last release with its models inside the wheel"
        )
    return mediapipe


def _setter(fields: Mapping[str, Any]) -> Callable[[Any], None]:
    def change(message: Any) -> None:
        for field, value in fields.items():
            setattr(message, field, value)

    return change


def _edit_options(node: Any, options_type: Any, change: Callable[[Any], None]) -> None:
    """Apply ``change`` to ``node``'s options of ``options_type``, wherever the graph keeps them:
    proto3-style ``node_options`` (a packed copy) or the proto2 ``options`` extension."""
    for element in node.node_options:
        if element.type_url.endswith("/" + options_type.DESCRIPTOR.full_name):
            message = options_type.FromString(element.value)
            change(message)
            element.value = message.SerializeToString()
            return
    if node.node_options:  # options of another type: add ours beside them
        message = options_type()
        change(message)
        node.node_options.add().Pack(message)
        return
    change(node.options.Extensions[options_type.ext])


class MediaPipeGraph:
    """One of MediaPipe's bundled CPU graphs, run on single images.

    Parameters
    ----------
    graph:
        The ``.binarypb`` path inside the ``mediapipe`` package, e.g.
        ``"mediapipe/modules/hand_landmark/hand_landmark_tracking_cpu.binarypb"``.
    outputs:
        The output streams to read.
    options:
        ``{"node_name.field": value}`` for scalar calculator options (thresholds), with node
        names as they appear in the expanded graph
        (``"palmdetectioncpu__TensorsToDetectionsCalculator"``).
    side_inputs:
        The graph's input side packets (model choice, number of hands...).
    threads:
        Threads of each TFLite (XNNPACK) interpreter in the graph.
    """

    def __init__(
        self,
        graph: str,
        *,
        outputs: list[str],
        options: Mapping[str, float | int | bool],
        side_inputs: Mapping[str, Any] | None = None,
        threads: int = 1,
    ) -> None:
        # The hook below only runs when there are options to set; every graph here has thresholds.
        if not options:
            raise ValueError("MediaPipeGraph needs at least one calculator option")
        _import_mediapipe()
        from mediapipe.calculators.tensor import inference_calculator_pb2
        from mediapipe.python import solution_base

        inference_options = inference_calculator_pb2.InferenceCalculatorOptions

        def set_threads(message: Any) -> None:
            message.delegate.xnnpack.num_threads = threads

        class _Graph(solution_base.SolutionBase):
            def _modify_calculator_options(
                self, config: Any, calculator_params: Mapping[str, Any]
            ) -> None:
                wanted: dict[str, dict[str, Any]] = {}
                for key, value in calculator_params.items():
                    node, _, field = key.rpartition(".")
                    wanted.setdefault(node, {})[field] = value
                for node in config.node:
                    if node.calculator.startswith("InferenceCalculator"):
                        _edit_options(node, inference_options, set_threads)
                    fields = wanted.pop(node.name, None)
                    if fields is not None:
                        options_type = solution_base.CALCULATOR_TO_OPTIONS[node.calculator]
                        _edit_options(node, options_type, _setter(fields))
                if wanted:
                    raise ValueError(f"no such nodes in {graph}: {sorted(wanted)}")

        self._graph = _Graph(
            binary_graph_path=graph,
            side_inputs=dict(side_inputs or {}),
            calculator_params=dict(options),
            outputs=list(outputs),
        )
        # A graph runs one image at a time: concurrent callers (service threads) take turns.
        self._lock = threading.Lock()

    def process(self, pixels: np.ndarray) -> Any:
        """The graph's outputs (a named tuple of protos) for an RGB uint8 image."""
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {pixels.shape}")
        with self._lock:
            return self._graph.process(np.ascontiguousarray(pixels))

    def close(self) -> None:
        with self._lock:
            self._graph.close()
