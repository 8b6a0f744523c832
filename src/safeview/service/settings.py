"""The service's settings: limits and defaults from ``SAFEVIEW_*`` variables (the table in
:mod:`safeview.service.app`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

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


def _preload(value: str) -> tuple[str, ...]:
    """SAFEVIEW_PRELOAD: guard names; ``0``, ``none``, ``false``, ``no`` or empty: none."""
    if value.strip().lower() in ("", "0", "none", "false", "no", "off"):
        return ()
    return _csv(value)


@dataclass
class Settings:
    """Service limits and defaults; :meth:`from_env` reads ``SAFEVIEW_*`` variables."""

    guard: str = "open-nsfw"
    guards: tuple[str, ...] = ("open-nsfw", "imagenet")
    max_body_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    timeout_s: float = 60.0
    max_concurrency: int = 2
    max_queue: int = 16
    api_key: str | None = None
    device: str | None = None
    preload: tuple[str, ...] = ("open-nsfw",)
    max_inputs: int = 16
    max_parts: int = 16
    body_timeout_s: float = 30.0
    max_inflight_bytes: int = 64 * 1024 * 1024
    attributions: tuple[str, ...] = DEFAULT_ATTRIBUTIONS
    rationales: tuple[str, ...] = ("grounded",)
    instructblip_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [a for a in self.attributions if a not in all_attributions()]
        if unknown:
            raise ValueError(f"SAFEVIEW_ATTRIBUTIONS: unknown {', '.join(unknown)}")
        unknown = [r for r in self.rationales if r not in all_rationales()]
        if unknown:
            raise ValueError(f"SAFEVIEW_RATIONALES: unknown {', '.join(unknown)}")
        if "instructblip" in self.rationales and not (
            self.instructblip_model and os.path.isdir(self.instructblip_model)
        ):
            raise ValueError(
                "rationale instructblip needs SAFEVIEW_INSTRUCTBLIP_MODEL: a local model folder "
                "(the service never downloads a model)"
            )

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        settings = cls(
            guard=env.get("SAFEVIEW_GUARD", "open-nsfw"),
            max_body_bytes=int(env.get("SAFEVIEW_MAX_BODY_BYTES", 20 * 1024 * 1024)),
            max_pixels=int(env.get("SAFEVIEW_MAX_PIXELS", 40_000_000)),
            timeout_s=float(env.get("SAFEVIEW_TIMEOUT_S", 60.0)),
            max_concurrency=int(env.get("SAFEVIEW_MAX_CONCURRENCY", 2)),
            max_queue=int(env.get("SAFEVIEW_MAX_QUEUE", 16)),
            api_key=env.get("SAFEVIEW_API_KEY") or None,
            device=env.get("SAFEVIEW_DEVICE") or None,
            preload=_preload(env.get("SAFEVIEW_PRELOAD", "open-nsfw")),
            max_inputs=int(env.get("SAFEVIEW_MAX_INPUTS", 16)),
            max_parts=int(env.get("SAFEVIEW_MAX_PARTS", 16)),
            body_timeout_s=float(env.get("SAFEVIEW_BODY_TIMEOUT_S", 30.0)),
            max_inflight_bytes=int(env.get("SAFEVIEW_MAX_INFLIGHT_BYTES", 64 * 1024 * 1024)),
            attributions=_csv(env.get("SAFEVIEW_ATTRIBUTIONS", ",".join(DEFAULT_ATTRIBUTIONS))),
            rationales=_csv(env.get("SAFEVIEW_RATIONALES", "grounded")),
            instructblip_model=env.get("SAFEVIEW_INSTRUCTBLIP_MODEL") or None,
        ).with_guard_files(_csv(env.get("SAFEVIEW_GUARD_FILES", "")))
        unknown = [name for name in settings.preload if name not in settings.guards]
        if unknown:
            raise ValueError(
                f"SAFEVIEW_PRELOAD: unknown guard {', '.join(map(repr, unknown))} (available: "
                f"{', '.join(settings.guards)}; 'none' preloads nothing)"
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
