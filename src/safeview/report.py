"""The one result type that flows out of everything: :class:`Report`, and its JSON form.

JSON carries ``schema_version``; arrays (the obfuscated pixels, the attribution map, the label map)
stay on the Python object and never go into JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np

SCHEMA_VERSION = "1.6"
#: Versions :meth:`Report.from_dict` reads (1.1 added ``rationale``; 1.2 ``search``,
#: ``search_stages`` and ``forward_passes``; 1.3 ``policy`` and ``categories``; 1.4 ``video``,
#: null for an image; 1.5 ``protected``; 1.6 ``video.sampling``).
READABLE_VERSIONS = frozenset({"1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6"})


@dataclass
class InputInfo:
    name: str
    width: int
    height: int
    sha256: str
    format: str
    notes: list[str] = field(default_factory=list)


@dataclass
class GuardInfo:
    name: str
    version: str
    decision: str  # "threshold" or "top1"
    target: str  # the category whose decision the search removes
    target_index: int
    threshold: float


@dataclass
class CategoryResult:
    """One category of the policy: whether it flagged, by which guard, before and after.

    ``covered`` is false when no guard of the policy judges the category: it is not known to be
    safe, and its scores are None. ``judges`` has each guard's entry: ``guard``, ``category``
    (the guard's output), ``threshold``, ``score_before``, ``flagged_before`` and, once there
    is an output, ``score_after`` and ``flagged_after``.
    """

    id: str
    name: str
    covered: bool
    flagged: bool
    guard: str | None = None
    score_before: float | None = None
    score_after: float | None = None
    flagged_after: bool | None = None
    judges: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Region:
    """One obfuscated region, in original-image coordinates."""

    id: int
    rank: int  # 1 = highest mean attribution
    mean_attribution: float
    area_fraction: float
    bbox: list[int]  # [x0, y0, x1, y1], x1/y1 exclusive

    def __post_init__(self) -> None:
        if len(self.bbox) != 4:
            raise ValueError(f"bbox needs 4 numbers, got {self.bbox}")
        if not 0.0 <= self.area_fraction <= 1.0:
            raise ValueError(f"area_fraction {self.area_fraction} outside [0, 1]")


@dataclass
class VideoSegment:
    """A stretch of a clip and the highest scores of the samples in it (``classify``): runs of
    samples with the same verdict, within one shot. Times in seconds, ``end_time`` exclusive."""

    start_frame: int
    end_frame: int  # inclusive
    start_time: float
    end_time: float
    flagged: bool
    scores: dict[str, float]
    samples: int


@dataclass
class VideoSpan:
    """A flagged span of a clip and what was done to it.

    ``categories`` are the categories its samples flagged; ``scores_before`` the highest scores of
    its flagged samples, ``scores_after`` the highest of its verified output frames.
    ``key_frames`` are where the image pipeline's search ran (``regions``: what it chose on each;
    ``rekeyed``: keys added because a tracked frame still flagged; ``searches_failed``: keys whose
    search found no flip).
    ``verification``: ``frames`` output frames scored before encoding and ``flagged`` of them still
    flagged in the end; ``encoded_frames``/``encoded_flagged`` the same frames decoded from the
    written file. ``fallback`` is ``"blur-all"`` when some frames were blurred whole (fail closed),
    with each stretch in ``fallback_ranges`` (frames, times and the reason). ``mask_iou`` is the
    mean intersection over union of consecutive frames' masks (temporal stability).
    """

    start_frame: int
    end_frame: int  # inclusive
    start_time: float
    end_time: float  # exclusive
    success: bool
    categories: list[str] = field(default_factory=list)
    scores_before: dict[str, float] = field(default_factory=dict)
    scores_after: dict[str, float] | None = None
    key_frames: list[int] = field(default_factory=list)
    #: Per key frame: ``frame``, ``time``, ``flagged``, ``flipped``, ``regions`` (chosen by the
    #: search), their union ``bbox`` [x0, y0, x1, y1], ``obfuscated_fraction``, ``forward_passes``.
    regions: list[dict[str, Any]] = field(default_factory=list)
    rekeyed: list[int] = field(default_factory=list)
    searches_failed: list[int] = field(default_factory=list)
    obfuscated_fraction: float = 0.0
    obfuscated_fraction_max: float = 0.0
    verification: dict[str, int] = field(default_factory=dict)
    fallback: str | None = None
    fallback_ranges: list[dict[str, Any]] = field(default_factory=list)
    mask_iou: float | None = None


@dataclass
class VideoInfo:
    """The video part of a clip's report: the source and output streams, how the clip was
    sampled, its segments (scores) and flagged spans (what was hidden), and counts.

    ``audio`` is ``"dropped"``, ``"copied"`` or ``"none"`` (the source had none). Frame counts:
    ``frames_obfuscated`` carry a mask, ``frames_blurred_whole`` were blurred whole (fallback),
    ``frames_unchanged`` were re-encoded as they were. ``frames_per_second`` is end to end.

    ``sampling`` says which frames each guard scored in the first pass, one entry per guard:
    ``guard``, ``costly``, ``every_frames`` (every ``sample_every``-th frame, the first frame of
    each shot and the last frame: every sample) or, for a costly guard, ``every_seconds`` (its
    sparse grid) with ``frames`` (the frames it scored: the grid, cuts, the last frame, samples
    another guard flagged, and its dense checks), ``frames_scored`` and ``seconds`` (time spent).
    """

    container: str
    codec: str
    fps: float
    frames: int
    duration: float
    width: int
    height: int
    output_codec: str | None = None
    rotation: int = 0
    variable_frame_rate: bool = False
    audio: str = "none"
    audio_codec: str | None = None
    sample_every: int = 0
    key_every: int = 0
    verify_every: int = 0
    scene_cuts: list[int] = field(default_factory=list)
    samples: int = 0
    flagged_samples: int = 0
    segments: list[VideoSegment] = field(default_factory=list)
    spans: list[VideoSpan] = field(default_factory=list)
    frames_obfuscated: int = 0
    frames_blurred_whole: int = 0
    frames_unchanged: int = 0
    key_frames: int = 0
    frames_per_second: float | None = None
    sampling: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoInfo:
        values = dict(data)
        values["segments"] = [VideoSegment(**s) for s in values.get("segments", [])]
        values["spans"] = [VideoSpan(**s) for s in values.get("spans", [])]
        return cls(**values)


@dataclass
class Report:
    """Everything safeview found and did for one image.

    ``success`` is true when the guard's decision flipped on the *final, encoded* output (or the
    image was not flagged in the first place). ``depth`` is the greedy prefix length tried until
    the flip; ``regions`` are the regions obfuscated in the output (after pruning);
    ``obfuscated_fraction_unpruned`` is the area before pruning. ``fallback`` names what happened
    when the search failed (``"blur-all"``, ``"keep"``, ``"error"``), else None.
    """

    input: InputInfo
    guard: GuardInfo
    flagged: bool
    scores_before: dict[str, float]
    scores_after: dict[str, float] | None = None
    success: bool = False
    depth: int = 0
    regions: list[Region] = field(default_factory=list)
    obfuscated_fraction: float = 0.0
    obfuscated_fraction_unpruned: float = 0.0
    style: str = "blur"
    fallback: str | None = None
    attribution: str | None = None
    segmenter: str | None = None
    segmenter_options: dict[str, Any] = field(default_factory=dict)
    n_regions: int = 0
    #: The counterfactual search by name, and what it did stage by stage (coarse-to-fine: the
    #: level, regions there, regions kept, candidates scored and the area after each stage).
    search: str | None = None
    search_stages: list[dict[str, Any]] = field(default_factory=list)
    #: Images the guard scored for this input: classify, attribution, search, verify, total.
    forward_passes: dict[str, int] = field(default_factory=dict)
    search_flipped: bool = False
    pruned: bool = True
    working_size: list[int] = field(default_factory=list)  # [width, height] the search ran at
    timings: dict[str, float] = field(default_factory=dict)
    output: str | None = None
    visualization: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: Why it was flagged: text, backend, model, prompt, category, answers (see safeview.explain).
    rationale: dict[str, Any] | None = None
    #: The policy checked (None: a single guard), and each of its categories.
    policy: str | None = None
    categories: list[CategoryResult] = field(default_factory=list)
    #: For a clip: its streams, segments and flagged spans (None for an image). A clip's
    #: ``scores_before`` are the highest over its samples, ``scores_after`` the highest over
    #: its verified output frames and unchanged samples, ``obfuscated_fraction`` the mean over
    #: its frames.
    video: VideoInfo | None = None
    #: With ``protect`` (e.g. faces): the detectors, each protected detection (box, how much of
    #: it the output hides, whether it had to be obfuscated), whether any had to be
    #: (``obfuscated``) and the fraction of the protected area hidden. None: nothing protected
    #: or no search ran.
    protected: dict[str, Any] | None = None
    # Arrays for Python users; never serialised.
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    attribution_map: np.ndarray | None = field(default=None, repr=False, compare=False)
    labels: np.ndarray | None = field(default=None, repr=False, compare=False)
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    encoded: bytes | None = field(default=None, repr=False, compare=False)  # the output file
    output_format: str | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for item in fields(self):
            if item.name not in _ARRAY_FIELDS:
                value = getattr(self, item.name)
                is_record = is_dataclass(value) and not isinstance(value, type)
                data[item.name] = asdict(value) if is_record else value
        data["regions"] = [asdict(region) for region in self.regions]
        data["categories"] = [asdict(category) for category in self.categories]
        return json.loads(json.dumps(data, allow_nan=False))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(f"unsupported report schema_version {version!r}")
        values = {k: v for k, v in data.items() if k != "schema_version"}
        values["input"] = InputInfo(**values["input"])
        values["guard"] = GuardInfo(**values["guard"])
        values["regions"] = [Region(**r) for r in values.get("regions", [])]
        values["categories"] = [CategoryResult(**c) for c in values.get("categories", [])]
        if values.get("video") is not None:
            values["video"] = VideoInfo.from_dict(values["video"])
        return cls(**values)


_ARRAY_FIELDS = frozenset(
    {"image", "attribution_map", "labels", "mask", "encoded", "output_format"}
)

#: JSON Schema (draft 2020-12) of :meth:`Report.to_dict`, for consumers in other languages.
JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "safeview report",
    "type": "object",
    "required": [
        "schema_version",
        "input",
        "guard",
        "flagged",
        "scores_before",
        "scores_after",
        "success",
        "depth",
        "regions",
        "obfuscated_fraction",
        "obfuscated_fraction_unpruned",
        "style",
        "fallback",
        "timings",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "input": {
            "type": "object",
            "required": ["name", "width", "height", "sha256", "format"],
        },
        "guard": {
            "type": "object",
            "required": ["name", "version", "decision", "target", "threshold"],
        },
        "flagged": {"type": "boolean"},
        "scores_before": {"type": "object", "additionalProperties": {"type": "number"}},
        "scores_after": {
            "type": ["object", "null"],
            "additionalProperties": {"type": "number"},
        },
        "success": {"type": "boolean"},
        "depth": {"type": "integer", "minimum": 0},
        "regions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "rank", "mean_attribution", "area_fraction", "bbox"],
            },
        },
        "obfuscated_fraction": {"type": "number", "minimum": 0, "maximum": 1},
        "obfuscated_fraction_unpruned": {"type": "number", "minimum": 0, "maximum": 1},
        "style": {"enum": ["blur", "pixelate", "fill", "inpaint"]},
        "fallback": {"enum": [None, "blur-all", "keep", "error"]},
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
        "search": {"type": ["string", "null"]},
        "search_stages": {"type": "array", "items": {"type": "object"}},
        "forward_passes": {"type": "object", "additionalProperties": {"type": "integer"}},
        "rationale": {
            "type": ["object", "null"],
            "required": ["text", "backend", "model", "prompt", "category", "answers"],
        },
        "policy": {"type": ["string", "null"]},
        "video": {
            "type": ["object", "null"],
            "required": [
                "container",
                "codec",
                "fps",
                "frames",
                "duration",
                "width",
                "height",
                "audio",
                "segments",
                "spans",
            ],
            "properties": {
                "audio": {"enum": ["dropped", "copied", "none"]},
                "sampling": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["guard", "costly", "frames_scored"],
                        "properties": {
                            "every_frames": {"type": ["integer", "null"]},
                            "every_seconds": {"type": ["number", "null"]},
                            "frames": {"type": ["array", "null"], "items": {"type": "integer"}},
                        },
                    },
                },
                "spans": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "start_frame",
                            "end_frame",
                            "start_time",
                            "end_time",
                            "success",
                            "categories",
                            "scores_before",
                            "scores_after",
                            "key_frames",
                            "obfuscated_fraction",
                            "verification",
                            "fallback",
                            "fallback_ranges",
                        ],
                    },
                },
                "segments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "start_frame",
                            "end_frame",
                            "start_time",
                            "end_time",
                            "flagged",
                            "scores",
                        ],
                    },
                },
            },
        },
        "protected": {
            "type": ["object", "null"],
            "required": ["detectors", "found", "obfuscated", "fraction_hidden", "detections"],
            "properties": {
                "detectors": {"type": "array", "items": {"type": "string"}},
                "found": {"type": "integer", "minimum": 0},
                "obfuscated": {"type": "boolean"},
                "fraction_hidden": {"type": "number", "minimum": 0, "maximum": 1},
                "detections": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["detector", "label", "score", "box", "fraction_hidden"],
                    },
                },
            },
        },
        "categories": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "name", "covered", "flagged", "judges"],
                "properties": {
                    "covered": {"type": "boolean"},
                    "flagged": {"type": "boolean"},
                    "score_before": {"type": ["number", "null"]},
                    "score_after": {"type": ["number", "null"]},
                    "flagged_after": {"type": ["boolean", "null"]},
                    "judges": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
}
