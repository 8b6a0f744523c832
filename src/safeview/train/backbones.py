"""Backbones a guard can be trained on; they live in :mod:`safeview.models.backbones`, which
guards and training share. These names stay importable from here."""

from safeview.models.backbones import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPEN_NSFW_MEAN_BGR,
    Backbone,
    BackboneFactory,
    available_backbones,
    make_backbone,
    normalize,
    register_backbone,
)

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OPEN_NSFW_MEAN_BGR",
    "Backbone",
    "BackboneFactory",
    "available_backbones",
    "make_backbone",
    "normalize",
    "register_backbone",
]
