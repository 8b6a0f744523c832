"""The service's settings: limits and defaults from ``SAFEVIEW_*`` variables (the table in
:mod:`safeview.service.app`)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from safeview.rationale.policy import Policy

#: Attributions a request may choose unless the operator says otherwise (``ablationcam`` runs one
#: forward pass per channel: minutes per image, so it is opt-in).
DEFAULT_ATTRIBUTIONS = ("fullgrad", "gradcam", "gradcam++", "xgradcam")


def all_attributions() -> list[str]:
    """Every registered attribution (``safeview.attribution.ATTRIBUTIONS``, plug-ins included)."""
    from safeview.attribution import ATTRIBUTIONS

    return ATTRIBUTIONS.names()


def all_rationales() -> list[str]:
    """Every registered rationale backend (``safeview.rationale.RATIONALES``)."""
    from safeview.rationale import RATIONALES

    return RATIONALES.names()


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


#: The word for "the server's default policy" in ``SAFEVIEW_PRELOAD``.
PRELOAD_POLICY = "policy"


def _preload(value: str) -> tuple[str, ...]:
    """SAFEVIEW_PRELOAD: guard names, policy names, ``policy`` (the server's default policy);
    ``0``, ``none``, ``false``, ``no`` or empty: none."""
    if value.strip().lower() in ("", "0", "none", "false", "no", "off"):
        return ()
    return _csv(value)


@dataclass
class Settings:
    """Service limits and defaults; :meth:`from_env` reads ``SAFEVIEW_*`` variables.

    ``guard`` set: requests without a ``guard`` or ``policy`` use that one guard. Unset (the
    default): they use the server's policy, ``policy``: ``"default"`` (the built-in one) or the
    operator's policy file, offered to requests under its file stem (a request names a policy;
    it never gives a path). ``preload`` names guards, policies, or ``"policy"`` for the server's
    policy.
    """

    guard: str | None = None
    guards: tuple[str, ...] = ("open-nsfw", "imagenet")
    #: ``SAFEVIEW_POLICY``: ``"default"`` or the operator's policy file (see :attr:`policies`).
    policy: str = "default"
    max_body_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    timeout_s: float = 60.0
    max_concurrency: int = 2
    max_queue: int = 16
    api_key: str | None = None
    device: str | None = None
    preload: tuple[str, ...] = (PRELOAD_POLICY,)
    max_inputs: int = 16
    max_parts: int = 16
    body_timeout_s: float = 30.0
    max_inflight_bytes: int = 64 * 1024 * 1024
    attributions: tuple[str, ...] = DEFAULT_ATTRIBUTIONS
    rationales: tuple[str, ...] = ("grounded",)
    instructblip_model: str | None = None
    #: Video uploads (``POST /v1/safeguard/video``): the body's size (0: no video route), and
    #: the caps checked from the container's header before any frame is decoded, and again
    #: while decoding: seconds, frames, pixels per frame; the deadline of a clip's work.
    max_video_bytes: int = 32 * 1024 * 1024
    max_video_seconds: float = 60.0
    max_video_frames: int = 3600
    max_video_pixels: int = 1920 * 1080
    video_timeout_s: float = 600.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: The policies requests may name (the built-in one and the operator's), loaded once.
    _policies: dict[str, Policy] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.guard = self.guard or None
        self._load_policies()
        unknown = [a for a in self.attributions if a not in all_attributions()]
        if unknown:
            raise ValueError(f"SAFEVIEW_ATTRIBUTIONS: unknown {', '.join(unknown)}")
        unknown = [r for r in self.rationales if r not in all_rationales()]
        if unknown:
            raise ValueError(f"SAFEVIEW_RATIONALES: unknown {', '.join(unknown)}")
        for name in ("max_video_seconds", "max_video_frames", "max_video_pixels"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SAFEVIEW_{name.upper()} must be > 0")
        if self.max_video_bytes < 0 or self.video_timeout_s <= 0:
            raise ValueError("SAFEVIEW_MAX_VIDEO_BYTES must be >= 0, SAFEVIEW_VIDEO_TIMEOUT_S > 0")
        if "instructblip" in self.rationales and not (
            self.instructblip_model and os.path.isdir(self.instructblip_model)
        ):
            raise ValueError(
                "rationale instructblip needs SAFEVIEW_INSTRUCTBLIP_MODEL: a local model folder "
                "(the service never downloads a model)"
            )

    def _load_policies(self) -> None:
        """The built-in policy, and the operator's file (``SAFEVIEW_POLICY``) read and checked
        now: a bad file stops the start, not the first request."""
        from safeview.policy import DEFAULT_POLICY, OPENAI_MODEL_NAMES, load_policy

        self._policies = {DEFAULT_POLICY: load_policy()}
        source = (self.policy or DEFAULT_POLICY).strip()
        if source == DEFAULT_POLICY or source in OPENAI_MODEL_NAMES:
            return
        path = Path(source)
        if not path.is_file():
            raise ValueError(
                f"SAFEVIEW_POLICY: {source!r} is neither {DEFAULT_POLICY!r} nor a policy file"
            )
        try:
            loaded = load_policy(path)
        except ValueError as exc:
            raise ValueError(f"SAFEVIEW_POLICY: {exc}") from None
        name = path.stem
        if name in (DEFAULT_POLICY, PRELOAD_POLICY) or name in OPENAI_MODEL_NAMES:
            raise ValueError(f"SAFEVIEW_POLICY: rename {path.name}: {name!r} is a reserved name")
        if not any(category.judges for category in loaded.categories.values()):
            raise ValueError(f"SAFEVIEW_POLICY: {source}: no category has a guard")
        # Named by its stem: reports and responses never show the server's paths.
        self._policies[name] = dataclasses.replace(loaded, name=name)

    @property
    def video_body_limit(self) -> int:
        """The largest video request body: ``max_video_bytes``, within the bytes all in-flight
        bodies may hold (a larger body could never be taken: 413, not a 503 forever)."""
        return min(self.max_video_bytes, self.max_inflight_bytes)

    @property
    def policies(self) -> tuple[str, ...]:
        """The policy names a request may give (besides OpenAI's model names)."""
        return tuple(self._policies)

    @property
    def default_policy(self) -> str:
        """The server's policy: the operator's file (by its stem) if given, else ``default``."""
        return list(self._policies)[-1]

    def policy_named(self, name: str) -> Policy:
        """The policy a request names: one of :attr:`policies`, or an OpenAI moderation model
        name (the server's policy). Anything else (a path included) is a ``KeyError``."""
        from safeview.policy import OPENAI_MODEL_NAMES

        if name in OPENAI_MODEL_NAMES:
            name = self.default_policy
        return self._policies[name]

    def options_policy(self, policy: Policy) -> Policy | None:
        """``policy`` as :class:`~safeview.options.SafeguardOptions` takes it: None for the
        built-in one (the library's default, so every request for it shares one pipeline)."""
        from safeview.policy import DEFAULT_POLICY

        return None if policy is self._policies[DEFAULT_POLICY] else policy

    def check_policy_guards(self) -> None:
        """Every guard the server's policies name is loadable (registered, or a checkpoint
        file); a name clash between a policy and a guard is refused (``safeview-NAME``)."""
        from safeview.guards import available_guards, is_checkpoint_path

        for policy in self._policies.values():
            for category, judge in policy.judges():
                known = judge.guard in available_guards() or (
                    is_checkpoint_path(judge.guard) and os.path.isfile(judge.guard)
                )
                if not known:
                    raise ValueError(
                        f"SAFEVIEW_POLICY: {policy.name}: category {category.id} names guard "
                        f"{judge.guard!r}, which is neither registered nor a checkpoint file"
                    )
        clash = sorted(set(self._policies) & set(self.guards))
        if clash:
            raise ValueError(f"{clash[0]!r} is both a guard and a policy: rename one")

    def preload_sources(self) -> list[tuple[str, Policy | None]]:
        """What to load at start: ``(guard name, None)`` or ``("", policy)`` for each entry of
        :attr:`preload`."""
        sources: list[tuple[str, Policy | None]] = []
        for name in self.preload:
            if name in self.guards:
                sources.append((name, None))
            else:
                policy = self.default_policy if name == PRELOAD_POLICY else name
                sources.append(("", self.policy_named(policy)))
        return sources

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        guard = env.get("SAFEVIEW_GUARD", "").strip() or None
        settings = cls(
            guard=guard,
            policy=env.get("SAFEVIEW_POLICY", "").strip() or "default",
            max_body_bytes=int(env.get("SAFEVIEW_MAX_BODY_BYTES", 20 * 1024 * 1024)),
            max_pixels=int(env.get("SAFEVIEW_MAX_PIXELS", 40_000_000)),
            timeout_s=float(env.get("SAFEVIEW_TIMEOUT_S", 60.0)),
            max_concurrency=int(env.get("SAFEVIEW_MAX_CONCURRENCY", 2)),
            max_queue=int(env.get("SAFEVIEW_MAX_QUEUE", 16)),
            api_key=env.get("SAFEVIEW_API_KEY") or None,
            device=env.get("SAFEVIEW_DEVICE") or None,
            preload=_preload(env.get("SAFEVIEW_PRELOAD", guard or PRELOAD_POLICY)),
            max_inputs=int(env.get("SAFEVIEW_MAX_INPUTS", 16)),
            max_parts=int(env.get("SAFEVIEW_MAX_PARTS", 16)),
            body_timeout_s=float(env.get("SAFEVIEW_BODY_TIMEOUT_S", 30.0)),
            max_inflight_bytes=int(env.get("SAFEVIEW_MAX_INFLIGHT_BYTES", 64 * 1024 * 1024)),
            attributions=_csv(env.get("SAFEVIEW_ATTRIBUTIONS", ",".join(DEFAULT_ATTRIBUTIONS))),
            rationales=_csv(env.get("SAFEVIEW_RATIONALES", "grounded")),
            instructblip_model=env.get("SAFEVIEW_INSTRUCTBLIP_MODEL") or None,
            max_video_bytes=int(env.get("SAFEVIEW_MAX_VIDEO_BYTES", 32 * 1024 * 1024)),
            max_video_seconds=float(env.get("SAFEVIEW_MAX_VIDEO_SECONDS", 60.0)),
            max_video_frames=int(env.get("SAFEVIEW_MAX_VIDEO_FRAMES", 3600)),
            max_video_pixels=int(env.get("SAFEVIEW_MAX_VIDEO_PIXELS", 1920 * 1080)),
            video_timeout_s=float(env.get("SAFEVIEW_VIDEO_TIMEOUT_S", 600.0)),
        ).with_guard_files(_csv(env.get("SAFEVIEW_GUARD_FILES", "")))
        if settings.guard is not None and settings.guard not in settings.guards:
            raise ValueError(
                f"SAFEVIEW_GUARD: unknown guard {settings.guard!r} (available: "
                f"{', '.join(settings.guards)}; unset: the policy)"
            )
        settings.check_policy_guards()
        offered = (*settings.guards, *settings.policies, PRELOAD_POLICY)
        unknown = [name for name in settings.preload if name not in offered]
        if unknown:
            raise ValueError(
                f"SAFEVIEW_PRELOAD: unknown guard {', '.join(map(repr, unknown))} (available: "
                f"{', '.join(settings.guards)}; policies: {', '.join(settings.policies)}; "
                f"{PRELOAD_POLICY!r} for the server's policy; 'none' preloads nothing)"
            )
        return settings

    def with_guard_files(self, paths: list[str] | tuple[str, ...]) -> Settings:
        """Offer checkpoints from ``safeview train`` as guards named by their file stem
        (``/models/self-harm.pt`` -> ``self-harm``)."""
        from pathlib import Path

        from safeview.guards import register_guard
        from safeview.guards.trained import TrainedGuard, read_checkpoint

        for raw in paths:
            path = Path(raw).resolve()
            read_checkpoint(path)  # refuse a bad file at start-up, not on the first request
            name = path.stem
            if name in self.guards:
                raise ValueError(f"guard file {raw}: the name {name!r} is already a guard")

            def factory(device: Any, path: Path = path) -> TrainedGuard:
                return TrainedGuard(path, device)

            register_guard(name, factory)
            self.guards = (*self.guards, name)
        return self
