"""Request options: form fields and query parameters -> one validated :class:`SafeguardOptions`,
within what the operator allows; their OpenAPI description; one :class:`Pipeline` per options.

The options contract (:meth:`SafeguardOptions.from_mapping`) converts and validates the values,
so a stage registered by a plug-in (a segmenter, a style...) is accepted without changes here.
The operator's restrictions come first: the searches of :data:`REQUEST_SEARCHES`, the attributions
of ``SAFEVIEW_ATTRIBUTIONS``, the rationale backends of ``SAFEVIEW_RATIONALES``, the service's
guards and policies and ``max_regions`` in ``1..MAX_REGIONS``. A request's ``policy`` is a name
the server offers (``default``, the operator's policy, an OpenAI moderation model name), never a
path: the request does not make the server read a file.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from safeview.options import ON_FAILURE, SafeguardOptions
from safeview.service.errors import ServiceError
from safeview.service.settings import Settings, all_attributions, all_rationales

#: What a request may set; the rest (device, pixel budget, batch sizes...) is the operator's.
REQUEST_OPTIONS = (
    "guard",
    "policy",
    "attribution",
    "segmenter",
    "segmenter_options",
    "style",
    "on_failure",
    "threshold",
    "max_regions",
    "search",
    "margin",
    "rationale",
    "protect",
)
#: Detectors a request may protect (``protect=faces``); the others cost too much per request.
REQUEST_PROTECT = ("faces",)
#: Searches a request may ask for; ``powerset`` costs up to 2^max_regions forward passes.
REQUEST_SEARCHES = ("coarse-to-fine", "greedy")
#: The largest ``max_regions`` a request may ask for.
MAX_REGIONS = 20
#: The video options (:class:`~safeview.video.VideoOptions`) a video request may set, as plain
#: fields; the caps are the operator's (``SAFEVIEW_MAX_VIDEO_*``), the encoder's settings too.
REQUEST_VIDEO_OPTIONS = (
    "sample_every", "costly_guards", "costly_every", "key_every", "verify_every", "audio",
)  # fmt: skip


def _invalid(message: str) -> ServiceError:
    return ServiceError(422, "invalid_option", message)


def request_options(source: Mapping[str, str], settings: Settings) -> tuple[SafeguardOptions, bool]:
    """(the options, whether a visualisation was asked for) of a request's fields; a value that
    is bad or not allowed here is a 422 ``invalid_option`` naming the option."""
    values: dict[str, Any] = {
        key: source[key] for key in REQUEST_OPTIONS if source.get(key) not in (None, "")
    }
    _choose_judges(values, settings)
    rationale = values.get("rationale")
    if rationale is not None:
        if rationale not in all_rationales():
            raise _invalid(f"rationale: unknown {rationale[:100]!r}")
        if rationale not in settings.rationales:
            raise _invalid(
                f"rationale: {rationale!r} is not enabled on this server (SAFEVIEW_RATIONALES: "
                f"{', '.join(settings.rationales) or 'none'})"
            )
        if rationale == "instructblip":
            values["rationale_options"] = {"model": settings.instructblip_model}
    protect = values.get("protect")
    if protect is not None:
        unknown = [n for n in str(protect).split(",") if n.strip() not in REQUEST_PROTECT]
        if unknown:
            raise _invalid(
                f"protect: {unknown[0][:100]!r} is not offered here (available: "
                f"{', '.join(REQUEST_PROTECT)})"
            )
    search = values.get("search")
    if search is not None and search not in REQUEST_SEARCHES:
        raise _invalid(
            f"search: {search[:100]!r} is not offered here (available: "
            f"{', '.join(REQUEST_SEARCHES)})"
        )
    attribution = values.get("attribution")
    if attribution is not None and attribution not in settings.attributions:
        known = attribution in all_attributions()
        raise _invalid(
            f"attribution: {attribution[:100]!r} is "
            + ("not enabled on this server (SAFEVIEW_ATTRIBUTIONS)" if known else "unknown")
            + f" ({', '.join(settings.attributions)})"
        )
    try:
        options = SafeguardOptions.from_mapping(
            {**values, "device": settings.device, "max_pixels": settings.max_pixels}
        )
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    if not 1 <= options.max_regions <= MAX_REGIONS:
        raise _invalid(f"max_regions: must be in 1..{MAX_REGIONS}")
    _check_cost(options.segmenter_options)
    viz = source.get("viz", "").lower() in ("1", "true", "yes")
    return options, viz


def video_request_options(source: Mapping[str, str], settings: Settings) -> SafeguardOptions:
    """The options of a video request: those of an image request (:func:`request_options`)
    and the :data:`REQUEST_VIDEO_OPTIONS`, with the server's caps; ``rationale`` and ``viz``
    are images' only (a 422)."""
    for name in ("rationale", "viz"):
        if source.get(name) not in (None, "", "false", "0", "no"):
            raise _invalid(f"{name}: not offered for videos")
    options, _viz = request_options(source, settings)
    video: dict[str, Any] = {
        key: source[key] for key in REQUEST_VIDEO_OPTIONS if source.get(key) not in (None, "")
    }
    video.update(
        max_bytes=max(1, settings.video_body_limit),
        max_duration=settings.max_video_seconds,
        max_frames=settings.max_video_frames,
        max_frame_pixels=settings.max_video_pixels,
    )
    try:
        return options.replace(video_options=video)
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def _choose_judges(values: dict[str, Any], settings: Settings) -> None:
    """``guard`` (one of the service's guards) or ``policy`` (a name the server offers; as
    a :class:`Policy` object, None for the built-in one), or the server's default."""
    guard, policy = values.get("guard"), values.pop("policy", None)
    if guard is not None and policy is not None:
        raise _invalid("give a guard or a policy, not both (a policy names its own guards)")
    if guard is None and policy is None:
        if settings.guard is not None:
            guard = values["guard"] = settings.guard
        else:
            policy = settings.default_policy
    if guard is not None:
        if guard not in settings.guards:
            raise _invalid(f"guard: unknown {guard[:100]!r} ({', '.join(settings.guards)})")
        return
    try:
        chosen = settings.policy_named(policy)
    except KeyError:
        raise _invalid(
            f"policy: unknown {policy[:100]!r} (offered: {', '.join(settings.policies)}, or an "
            "OpenAI moderation model name; a request names a policy, never a file)"
        ) from None
    values["policy"] = settings.options_policy(chosen)


#: Bounds on segmenter options a request may set: segmentation cannot be cancelled mid-way (only
#: the guard's forward passes check the deadline), so a request must not make it arbitrarily long.
SEGMENTER_OPTION_BOUNDS: dict[str, tuple[float, float]] = {
    "n_segments": (1, 400),
    "iterations": (1, 30),
    "sweeps": (1, 8),
    "superpixel_size": (4, 10_000),
    "max_num_iter": (1, 50),
    "scale": (1, 10_000),
    "min_size": (50, 100_000),
    "markers": (1, 400),
}


def _check_cost(segmenter_options: Mapping[str, Any]) -> None:
    for key, value in segmenter_options.items():
        bounds = SEGMENTER_OPTION_BOUNDS.get(key)
        if bounds is None or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid(f"segmenter_options.{key}: not a number")
        low, high = bounds
        if not low <= value <= high:
            raise _invalid(f"segmenter_options.{key}: must be in {low:g}..{high:g} on this server")


def option_schemas(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """The OpenAPI schema of each request option, the choices from the registries."""
    from safeview.policy import OPENAI_MODEL_NAMES
    from safeview.render import RENDERERS
    from safeview.segmentation import SEGMENTERS

    return {
        "guard": {
            "type": "string",
            "description": "one guard instead of a policy (not with policy)",
            **({"enum": list(settings.guards)} if settings else {}),
        },
        "policy": {
            "type": "string",
            "description": "check every category of this policy, each with its guards (not "
            "with guard); an OpenAI moderation model name means the server's policy. Default: "
            + (
                f"guard {settings.guard}"
                if settings and settings.guard
                else f"policy {settings.default_policy if settings else 'default'}"
            ),
            **({"enum": [*settings.policies, *sorted(OPENAI_MODEL_NAMES)]} if settings else {}),
        },
        "attribution": {"type": "string", "enum": all_attributions()},
        "segmenter": {"type": "string", "enum": SEGMENTERS.names()},
        "segmenter_options": {
            "type": "string",
            "description": 'a JSON object of the segmenter\'s options, e.g. {"n_segments": 40}',
        },
        "search": {"type": "string", "enum": list(REQUEST_SEARCHES)},
        "style": {"type": "string", "enum": RENDERERS.names()},
        "on_failure": {"type": "string", "enum": list(ON_FAILURE)},
        "threshold": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "max_regions": {"type": "integer", "minimum": 1, "maximum": MAX_REGIONS},
        "margin": {"type": "number", "minimum": 0, "exclusiveMaximum": 0.5},
        "rationale": {"type": "string", "enum": all_rationales()},
        "protect": {
            "type": "string",
            "enum": list(REQUEST_PROTECT),
            "description": "keep these detections visible where the flip allows (faces: tried "
            "last, dropped first); the report's 'protected' says whether one was obfuscated",
        },
        "viz": {"type": "boolean"},
    }


def video_option_schemas(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """The OpenAPI schema of each option of a video request."""
    from safeview.video.options import AUDIO_MODES

    schemas = {
        name: schema
        for name, schema in option_schemas(settings).items()
        if name not in ("rationale", "viz")
    }
    schemas.update(
        sample_every={
            "type": "integer",
            "minimum": 1,
            "description": "every N-th frame is scored (and each shot's first and the last)",
        },
        costly_guards={
            "type": "string",
            "description": "guards that score only every costly_every seconds (and cuts, "
            "and where another guard flags): auto (those that declare themselves costly, the "
            "OCR), none, or names separated by commas",
        },
        costly_every={
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "seconds between two frames a costly guard scores: what only it "
            "would flag and is shown for less than that can be missed",
        },
        key_every={
            "type": "integer",
            "minimum": 1,
            "description": "in a flagged span, the search runs on every K-th frame",
        },
        verify_every={
            "type": "integer",
            "minimum": 1,
            "description": "in a flagged span, every V-th output frame is scored again",
        },
        audio={"type": "string", "enum": list(AUDIO_MODES)},
    )
    return schemas


def safeguard_video_extra(settings: Settings | None = None) -> dict[str, Any]:
    """The OpenAPI parameters and request body of ``POST /v1/safeguard/video``."""
    return _upload_extra(video_option_schemas(settings), "video/*")


def safeguard_extra(settings: Settings | None = None) -> dict[str, Any]:
    """The OpenAPI parameters and request body of ``POST /v1/safeguard``."""
    return _upload_extra(option_schemas(settings), "image/*")


def _upload_extra(schemas: dict[str, Any], media: str) -> dict[str, Any]:
    """The options as query parameters, and a body that is the file (raw, or ``media``) or a
    multipart form of the file and the options."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in schemas.items()
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": binary,
                media: binary,
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            **schemas,
                        },
                    }
                },
            },
        },
    }


class PipelineCache:
    """The last ``size`` :class:`Pipeline` objects, one per distinct options (least recently used
    goes first): requests with the same options share the built stages."""

    def __init__(self, size: int = 8) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self._pipelines: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, options: SafeguardOptions) -> Any:
        """The pipeline of ``options``, built on first use."""
        from safeview.pipeline import Pipeline

        key = json.dumps(options.to_dict(), sort_keys=True)
        with self._lock:
            pipeline = self._pipelines.get(key)
            if pipeline is not None:
                self._pipelines.move_to_end(key)
                return pipeline
        built = Pipeline(options)  # outside the lock: building may take a while
        with self._lock:
            pipeline = self._pipelines.setdefault(key, built)
            self._pipelines.move_to_end(key)
            while len(self._pipelines) > self.size:
                self._pipelines.popitem(last=False)
        return pipeline

    def __len__(self) -> int:
        return len(self._pipelines)


__all__ = [
    "MAX_REGIONS",
    "REQUEST_OPTIONS",
    "REQUEST_PROTECT",
    "REQUEST_SEARCHES",
    "REQUEST_VIDEO_OPTIONS",
    "PipelineCache",
    "option_schemas",
    "request_options",
    "safeguard_extra",
    "safeguard_video_extra",
    "video_option_schemas",
    "video_request_options",
]
