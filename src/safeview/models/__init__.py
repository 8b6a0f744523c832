"""What guards and training share: backbones, the trained guard's network and its checkpoint file.

:mod:`safeview.guards` reads checkpoints through this package and :mod:`safeview.train` writes
them through it; this package never imports :mod:`safeview.train`, and training reaches
:mod:`safeview.guards` only through it (the pretrained trunks of the built-in guards, the device
rule).
"""

from safeview.guards.base import select_device
from safeview.models.backbones import (
    Backbone,
    available_backbones,
    make_backbone,
    normalize,
    register_backbone,
)
from safeview.models.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    file_digest,
    load_checkpoint,
    network_from_checkpoint,
    save_checkpoint,
)
from safeview.models.network import GuardNet

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Backbone",
    "GuardNet",
    "available_backbones",
    "file_digest",
    "load_checkpoint",
    "make_backbone",
    "network_from_checkpoint",
    "normalize",
    "register_backbone",
    "save_checkpoint",
    "select_device",
]
