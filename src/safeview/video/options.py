"""How a clip is sampled, tracked, verified and written: :class:`VideoOptions`.

They travel inside :class:`~safeview.options.SafeguardOptions` as ``video_options`` (a mapping, like
``style_options``), so the API, the CLI (``--audio``, ``--video-option KEY=VALUE``), batch (the
manifest's settings) and the service share one contract. Nothing here imports PyAV.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

AudioMode = Literal["drop", "copy"]
FlowMethod = Literal["dis", "farneback"]
AUDIO_MODES = ("drop", "copy")
FLOW_METHODS = ("dis", "farneback")


@dataclass(frozen=True)
class VideoOptions:
    """The video-specific options; the guards, search and style are the image pipeline's.

    Parameters
    ----------
    sample_every:
        Every N-th frame is a *sample* (plus the first frame of each shot, and the last frame),
        classified by every guard but the costly ones. Smaller finds short unsafe moments more
        surely, at one forward pass per guard and sample; 5 at 25 fps is 5 samples per second.
    costly_guards:
        Which guards score only a sparser grid of the samples (``costly_every``): ``"auto"``
        (default: the guards that declare themselves costly, ``costly = True``: the OCR of
        ``abusive-text``, about 0.2-0.7 s a frame against 20-90 ms for a classifier), ``"none"``
        (every guard scores every sample), or guard names separated by commas.
    costly_every:
        Seconds between two samples scored by a costly guard (default 1.0; at most 32 samples
        apart whatever the value: the skipped samples are kept for the dense check). It also
        scores the first frame of every shot, the last frame and every sample that another guard
        flags; where it flags, it scores every sample back to its previous one and on until it
        stops flagging, so its flagged spans are as precise as the other guards'. **The risk:**
        between two of its samples (``costly_every``, plus up to one sample interval, apart) it
        sees nothing, so content that only it would flag and that is shown for less than that
        (a caption shown for half a second) can be missed. Set ``costly_guards=none`` where that
        matters more than speed.
    cut_threshold:
        A scene cut is a frame whose colour histogram differs from the previous frame's by more
        than this (total variation distance, 0 to 1). Cuts are sampled, start key frames, and
        stop masks from being tracked across them (a false cut only costs key frames). 1 turns
        detection off.
    key_every:
        Within a flagged span, the image pipeline's search runs on every K-th frame (and on the
        span's first and last frame and either side of a cut); the mask follows the content in
        between. Smaller is safer and slower (a search costs about 10-100 forward passes).
    verify_every:
        Within a flagged span, every V-th output frame (default 1: every one) and every key
        frame is scored again by every guard before it is encoded, and again once encoded. A
        frame that still flags becomes a key frame (and every frame of its stretch is verified
        from then on); a stretch that still flags after ``rekey`` rounds is blurred whole (fail
        closed). Larger is faster (a forward pass per guard and verified frame, twice) but
        leaves the frames in between unchecked.
    rekey:
        Rounds of adding still-flagged frames as key frames before falling back.
    flow:
        Dense optical flow that carries masks between key frames: ``"dis"`` (OpenCV's DIS, fast)
        or ``"farneback"``.
    flow_size:
        Longer side (pixels) at which flow is computed and masks are tracked.
    track_margin:
        Tracked (not searched) masks are dilated by this fraction of the frame's longer side, to
        absorb the drift of the flow.
    audio:
        ``"drop"`` (default) writes no audio; ``"copy"`` copies the source's first audio stream
        unchanged (the report says which).
    crf, preset:
        libx264's quality (lower is better; 18 is visually lossless) and speed preset.
    batch_size:
        Frames scored per forward pass (4: on the CPU the classifiers of the built-in policy
        cost less per frame in batches of 2-8 than of 16, measured in bench/README.md, 12).
    max_duration, max_frames, max_frame_pixels, max_bytes:
        Caps, checked from the header before decoding and again while decoding: seconds, frames,
        width x height of one frame, and file size.
    """

    sample_every: int = 5
    costly_guards: str = "auto"
    costly_every: float = 1.0
    cut_threshold: float = 0.25
    key_every: int = 8
    verify_every: int = 1
    rekey: int = 2
    flow: FlowMethod = "dis"
    flow_size: int = 320
    track_margin: float = 0.005
    audio: AudioMode = "drop"
    crf: int = 18
    preset: str = "veryfast"
    batch_size: int = 4
    max_duration: float = 3600.0
    max_frames: int = 250_000
    max_frame_pixels: int = 3840 * 2160
    max_bytes: int = 8 * 1024**3

    def __post_init__(self) -> None:
        for name in (
            "sample_every", "key_every", "verify_every", "flow_size", "batch_size",
            "max_frames", "max_frame_pixels", "max_bytes",
        ):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"video option {name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.rekey, int) or self.rekey < 0:
            raise ValueError(f"video option rekey must be an integer >= 0, got {self.rekey!r}")
        if not isinstance(self.cut_threshold, (int, float)) or not 0 < self.cut_threshold <= 1:
            raise ValueError(
                f"video option cut_threshold must be in (0, 1], got {self.cut_threshold}"
            )
        if not isinstance(self.track_margin, (int, float)) or not 0 <= self.track_margin < 0.5:
            raise ValueError(
                f"video option track_margin must be in [0, 0.5), got {self.track_margin}"
            )
        if not isinstance(self.costly_every, (int, float)) or not 0 < self.costly_every <= 3600:
            raise ValueError(
                f"video option costly_every must be in (0, 3600] seconds, got {self.costly_every}"
            )
        if not isinstance(self.costly_guards, str) or not self.costly_guards.strip():
            raise ValueError(
                "video option costly_guards must be auto, none or guard names separated by "
                f"commas, got {self.costly_guards!r}"
            )
        if not isinstance(self.max_duration, (int, float)) or self.max_duration <= 0:
            raise ValueError(f"video option max_duration must be > 0, got {self.max_duration}")
        if self.audio not in AUDIO_MODES:
            raise ValueError(
                f"video option audio must be one of {', '.join(AUDIO_MODES)}, got {self.audio!r}"
            )
        if self.flow not in FLOW_METHODS:
            raise ValueError(
                f"video option flow must be one of {', '.join(FLOW_METHODS)}, got {self.flow!r}"
            )
        if not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise ValueError(f"video option crf must be an integer in [0, 51], got {self.crf!r}")
        if self.preset not in PRESETS:
            raise ValueError(
                f"video option preset must be one of {', '.join(PRESETS)}, got {self.preset!r}"
            )

    def costly(self, guards: list[str], declared: set[str]) -> set[str]:
        """Which of ``guards`` (the policy's guard names) score only the sparse grid, given the
        ones that declare themselves costly. ``ValueError`` for a name the policy lacks."""
        value = self.costly_guards.strip()
        if value == "auto":
            return set(declared) & set(guards)
        if value == "none":
            return set()
        names = {name.strip() for name in value.split(",") if name.strip()}
        unknown = sorted(names - set(guards))
        if unknown:
            raise ValueError(
                f"video option costly_guards names {', '.join(unknown)}, not a guard of the "
                f"policy (its guards: {', '.join(guards)})"
            )
        return names

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> VideoOptions:
        """From ``SafeguardOptions.video_options``: strings are converted to each option's type
        (``"3"`` -> 3); an unknown key is a ``ValueError`` naming the available ones."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ValueError(
                f"unknown video option {', '.join(map(repr, unknown))} "
                f"(available: {', '.join(cls.names())})"
            )
        defaults = cls()
        converted: dict[str, Any] = {}
        for name, value in values.items():
            default = getattr(defaults, name)
            if isinstance(value, str) and not isinstance(default, str):
                try:
                    value = type(default)(value)
                except ValueError:
                    raise ValueError(
                        f"video option {name}: not a number: {value[:100]!r}"
                    ) from None
            elif (
                isinstance(default, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            converted[name] = value
        return cls(**converted)


#: libx264's speed presets, fastest first.
PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)  # fmt: skip

__all__ = ["AUDIO_MODES", "FLOW_METHODS", "PRESETS", "AudioMode", "FlowMethod", "VideoOptions"]
