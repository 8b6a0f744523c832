"""The guard checkpoint file: written by ``safeview train``, read by
:class:`safeview.guards.trained.TrainedGuard`. Its format lives here, in one place.

A checkpoint is a plain ``torch.save`` dict of tensors and JSON-like metadata, read back with
``weights_only=True`` (no pickled code runs). Keys: ``format`` (:data:`CHECKPOINT_FORMAT`),
``format_version`` (:data:`CHECKPOINT_VERSION`; a reader refuses newer versions), ``kind``
(``finetune`` or ``probe``), ``category``, ``categories`` (``["safe", CATEGORY]``), ``backbone``
(a name for :func:`safeview.models.backbones.make_backbone`), ``backbone_weights``,
``feature_dim``, ``input_size`` ([height, width]), ``normalization`` (a scheme of
:func:`safeview.models.backbones.normalize`), ``config`` (the training settings), ``created``
(UTC, ISO 8601), ``state_dict`` (a :class:`safeview.models.network.GuardNet`'s weights), and
whatever the trainer adds (``data``, ``split``, ``test_keys``, ``metrics``, ``probe`` or
``training``).
"""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from safeview.io import atomic_write
from safeview.models.backbones import Backbone, make_backbone
from safeview.models.network import GuardNet

CHECKPOINT_FORMAT = "safeview-guard"
CHECKPOINT_VERSION = 1


def save_checkpoint(
    output: str | Path,
    network: GuardNet,
    backbone: Backbone,
    *,
    kind: str,
    category: str,
    config: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    """Write ``network`` (on ``backbone``) as a checkpoint to ``output``, atomically."""
    output = Path(output)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "kind": kind,
        "category": category,
        "categories": ["safe", category],
        "backbone": backbone.name,
        "backbone_weights": backbone.weights,
        "feature_dim": backbone.dim,
        "input_size": list(backbone.input_size),
        "normalization": backbone.normalization,
        "config": config,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "state_dict": state,
        **extra,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
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


def network_from_checkpoint(data: dict[str, Any], path: str | Path) -> GuardNet:
    """The :class:`GuardNet` a loaded checkpoint describes, with its weights (``path`` names the
    file in errors)."""
    backbone = make_backbone(data["backbone"], pretrained=False)
    network = GuardNet(backbone.trunk, int(data["feature_dim"]), len(data["categories"]))
    try:
        network.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise ValueError(
            f"{path}: weights do not fit backbone {data['backbone']!r}: {str(exc).splitlines()[0]}"
        ) from None
    return network


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file (a checkpoint's identity in a guard's version)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
