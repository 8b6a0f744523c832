"""safeview: image safeguarding with minimal, explained obfuscation.

    >>> import safeview
    >>> report = safeview.safeguard("photo.jpg")          # open_nsfw guard, FullGrad, SLIC, blur
    >>> report.success, report.obfuscated_fraction
    >>> safeview.classify("photo.jpg").scores_before
    >>> safeview.safeguard_video("clip.mp4", "out/clip.mp4").video.spans   # flagged spans

Heavy dependencies (torch models, scikit-image) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from safeview.guards import load_guard
    from safeview.io import ImageInputError, load_image
    from safeview.options import SafeguardOptions
    from safeview.pipeline import Pipeline, SearchFailedError, classify, safeguard
    from safeview.rationale import Rationale, explain
    from safeview.report import SCHEMA_VERSION, Region, Report
    from safeview.segmentation import segment
    from safeview.video import classify_video, safeguard_video

_EXPORTS = {
    "safeguard": "safeview.pipeline",
    "classify": "safeview.pipeline",
    "SearchFailedError": "safeview.pipeline",
    "Pipeline": "safeview.pipeline",
    "SafeguardOptions": "safeview.options",
    "load_guard": "safeview.guards",
    "segment": "safeview.segmentation",
    "safeguard_video": "safeview.video",
    "classify_video": "safeview.video",
    "explain": "safeview.rationale",
    "Rationale": "safeview.rationale",
    "load_image": "safeview.io",
    "ImageInputError": "safeview.io",
    "Report": "safeview.report",
    "Region": "safeview.report",
    "SCHEMA_VERSION": "safeview.report",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'safeview' has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION",
    "ImageInputError",
    "Pipeline",
    "Rationale",
    "Region",
    "Report",
    "SafeguardOptions",
    "SearchFailedError",
    "__version__",
    "classify",
    "classify_video",
    "explain",
    "load_guard",
    "load_image",
    "safeguard",
    "safeguard_video",
    "segment",
]
