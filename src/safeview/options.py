"""One options contract: every ``safeguard()`` option with its default, validated once.

The API, the CLI, the service, batch and Ray all build one :class:`SafeguardOptions` (from keywords
or :meth:`SafeguardOptions.from_mapping`) before any image is touched; a bad value is a
``ValueError`` naming the option. :meth:`SafeguardOptions.to_dict` is the JSON form (what the
batch manifest records as ``settings``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from safeview.counterfactual import DEFAULT_SEARCH
from safeview.io import DEFAULT_MAX_PIXELS

OnFailure = Literal["blur-all", "keep", "error"]
ON_FAILURE = ("blur-all", "keep", "error")


@dataclass(frozen=True)
class SafeguardOptions:
    """Everything that decides how :func:`safeview.safeguard` treats an image.

    ``guard`` and ``attribution`` are registered names (a guard may also be a checkpoint path from
    ``safeview train``) or ready objects; the ``*_options`` go to the chosen stage's factory.
    Without a ``guard``, every category of ``policy`` is checked (default: the built-in policy,
    with every offline guard); ``threshold`` applies to a single guard, a policy has its own.
    See :func:`safeview.safeguard` for what each option means.
    """

    guard: Any = None
    policy: Any = None
    attribution: Any = "fullgrad"
    segmenter: str = "bass-guided"
    segmenter_options: dict[str, Any] = field(default_factory=dict)
    search: str = DEFAULT_SEARCH
    search_options: dict[str, Any] = field(default_factory=dict)
    style: str = "blur"
    style_options: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    max_regions: int = 10
    margin: float = 0.0
    prune: bool = True
    on_failure: OnFailure = "blur-all"
    working_size: int | None = None
    batch_size: int | None = None
    device: Any = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    rationale: str | None = None
    rationale_options: dict[str, Any] = field(default_factory=dict)
    #: Clips only: sampling, tracking, verification, audio, encoding and caps
    #: (:class:`safeview.video.VideoOptions`).
    video_options: dict[str, Any] = field(default_factory=dict)
    #: Detectors (by name, e.g. ``("faces",)``) whose detections the search keeps visible where
    #: the flip allows: tried last, dropped first (see :mod:`safeview.protect`).
    protect: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "segmenter_options", "search_options", "style_options", "rationale_options",
            "video_options",
        ):  # fmt: skip
            value = getattr(self, name)
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ValueError(f"{name} must be a mapping, got {type(value).__name__}")
            object.__setattr__(self, name, dict(value))
        object.__setattr__(self, "protect", _names(self.protect))
        self._validate()

    # The order of the checks keeps the messages safeguard() gave before this contract existed.
    def _validate(self) -> None:
        from safeview.render import make_renderer

        make_renderer(self.style, **self.style_options)  # unknown style / bad option
        if self.on_failure not in ON_FAILURE:
            raise ValueError(
                f"unknown on_failure {self.on_failure!r} (available: {', '.join(ON_FAILURE)})"
            )
        if not isinstance(self.threshold, (int, float)) or not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not isinstance(self.max_regions, int) or self.max_regions < 1:
            raise ValueError(f"max_regions must be >= 1, got {self.max_regions}")
        if not isinstance(self.margin, (int, float)) or not 0.0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin}")
        for name in ("working_size", "max_pixels"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.make_segmenter()
        self.make_search()
        self._validate_policy()
        self._validate_guard()
        self._validate_attribution()
        if self.rationale is not None:
            from safeview.rationale import RATIONALES

            RATIONALES.check_options(self.rationale, self.rationale_options)
        self.make_video_options()
        if self.protect:
            from safeview.detectors import DETECTORS

            for name in self.protect:
                if name not in DETECTORS:
                    raise ValueError(
                        f"protect: unknown detector {name!r} "
                        f"(available: {', '.join(DETECTORS.names())})"
                    )

    def _validate_policy(self) -> None:
        if self.policy is None:
            return
        if self.guard is not None:
            raise ValueError("give a guard or a policy, not both (a policy names its own guards)")
        from safeview.policy import resolve_policy
        from safeview.rationale.policy import Policy

        if isinstance(self.policy, Policy):
            return
        if not isinstance(self.policy, str):
            raise ValueError(f"policy must be a name or a file, got {type(self.policy).__name__}")
        resolve_policy(self.policy)

    @property
    def policy_name(self) -> str | None:
        """The policy checked (None with a single guard)."""
        if self.guard is not None:
            return None
        if self.policy is None:
            return "default"
        return str(getattr(self.policy, "name", self.policy))

    def _validate_guard(self) -> None:
        from safeview.guards import available_guards, is_checkpoint_path

        if not isinstance(self.guard, str):
            return
        if is_checkpoint_path(self.guard):
            if not os.path.isfile(self.guard):
                raise ValueError(f"guard checkpoint {self.guard} does not exist")
        elif self.guard not in available_guards():
            raise ValueError(
                f"unknown guard {self.guard!r} (available: {', '.join(available_guards())}, "
                "or a checkpoint from `safeview train`)"
            )

    def _validate_attribution(self) -> None:
        from safeview.attribution import ATTRIBUTIONS

        if isinstance(self.attribution, str):
            ATTRIBUTIONS.factory(self.attribution)

    def search_settings(self) -> dict[str, Any]:
        """The search's options from the common ones (max_regions, prune, batch_size), overridden
        by ``search_options``."""
        settings: dict[str, Any] = {}
        if self.search == "greedy":
            settings = {"max_regions": self.max_regions, "prune": self.prune}
        elif self.search == "powerset":
            settings = {"top_n": self.max_regions}
        elif self.search == "coarse-to-fine":
            settings = {"prune": self.prune}
        if self.batch_size is not None:
            if not isinstance(self.batch_size, int) or self.batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
            settings["batch_size"] = self.batch_size
        settings.update(self.search_options)
        return settings

    def make_segmenter(self) -> Any:
        from safeview.segmentation import make_segmenter

        return make_segmenter(self.segmenter, **self.segmenter_options)

    def make_search(self) -> Any:
        from safeview.counterfactual import make_search

        return make_search(self.search, **self.search_settings())

    def make_video_options(self) -> Any:
        """The :class:`safeview.video.VideoOptions` of ``video_options`` (validated)."""
        from safeview.video.options import VideoOptions

        return VideoOptions.from_mapping(self.video_options)

    def make_renderer(self) -> Any:
        from safeview.render import make_renderer

        return make_renderer(self.style, **self.style_options)

    def replace(self, **changes: Any) -> SafeguardOptions:
        """A copy with ``changes`` (validated again)."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ValueError(_unknown_message(unknown))
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SafeguardOptions:
        """From a dict (batch options, service form fields): strings are converted to each
        option's type (``"0.4"`` -> 0.4, ``"false"`` -> False, JSON text for the ``*_options``);
        empty strings and ``None`` mean the default; an unknown key is an error."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ValueError(_unknown_message(unknown))
        defaults = cls()
        kept: dict[str, Any] = {}
        for name, value in values.items():
            if value is None or value == "":
                if name in _NULLABLE:
                    kept[name] = None
                continue
            if isinstance(value, str):
                value = _convert(name, value, getattr(defaults, name))
            kept[name] = value
        return cls(**kept)

    def to_dict(self) -> dict[str, Any]:
        """JSON values: names for guard and attribution objects, ``str`` for a device."""
        values = {name: getattr(self, name) for name in self.names()}
        for name in ("guard", "attribution", "policy"):
            if values[name] is not None and not isinstance(values[name], str):
                values[name] = getattr(values[name], "name", type(values[name]).__name__)
        if values["device"] is not None:
            values["device"] = str(values["device"])
        converted: dict[str, Any] = json.loads(json.dumps(values, default=str))
        return converted


def _names(value: Any) -> tuple[str, ...]:
    """``protect`` as a tuple of names: from a tuple or list, or a comma-separated string."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"protect must be detector names, got {value!r}")
    return tuple(dict.fromkeys(v for v in value if v))


_NULLABLE = frozenset({"guard", "policy", "working_size", "batch_size", "device", "rationale"})
_INTS = frozenset({"max_regions", "working_size", "batch_size", "max_pixels"})
_FLOATS = frozenset({"threshold", "margin"})


def _unknown_message(unknown: list[str]) -> str:
    return (
        f"unknown option {', '.join(map(repr, unknown))} "
        f"(available: {', '.join(SafeguardOptions.names())})"
    )


def _convert(name: str, text: str, default: Any) -> Any:
    try:
        if name in _INTS:
            return int(text)
        if name in _FLOATS:
            return float(text)
    except ValueError:
        kind = "an integer" if name in _INTS else "a number"
        raise ValueError(f"{name}: not {kind}: {text[:100]!r}") from None
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}: not a boolean: {text[:100]!r}")
    if isinstance(default, tuple):
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                return tuple(json.loads(stripped))
            except (json.JSONDecodeError, TypeError):
                raise ValueError(f"{name}: not a JSON list: {text[:100]!r}") from None
        return _names(stripped)
    if isinstance(default, dict):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"{name}: not a JSON object: {text[:100]!r}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"{name}: not a JSON object: {text[:100]!r}")
        return parsed
    return text


__all__ = ["DEFAULT_SEARCH", "ON_FAILURE", "OnFailure", "SafeguardOptions"]
