"""Guard training: fine-tuned backbones and linear probes, saved as checkpoints that load as
guards (``--guard guard.pt``)."""

from safeview.train.backbones import Backbone, available_backbones, make_backbone, register_backbone
from safeview.train.data import Dataset, find_dataset, split
from safeview.train.trainer import TrainConfig, TrainResult, metrics, train_guard

__all__ = [
    "Backbone",
    "Dataset",
    "TrainConfig",
    "TrainResult",
    "available_backbones",
    "find_dataset",
    "make_backbone",
    "metrics",
    "register_backbone",
    "split",
    "train_guard",
]
