"""The rationale protocol: the result type, the guards' conditioning, and the backend registry."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from safeview.rationale.policy import Category, Policy


@dataclass
class Answer:
    question: str
    answer: str
    #: What the answer rests on: "vlm", "detector", "guard", "detector+guard" or "unanswerable".
    source: str
    #: The grounded backend's verdict: "yes", "no" or "not covered" (None: a VLM's free text).
    verdict: str | None = None
    #: The policy category and the question's id.
    category: str | None = None
    id: str | None = None
    #: What was consulted: each detection cited (``detector``, ``label``, ``score``, ``box``,
    #: ``position``, ``text``) and each guard score (``guard``, ``category``, ``score``,
    #: ``threshold``, ``flagged``); a source that could not answer has ``covered: false`` and
    #: ``reason``.
    evidence: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Rationale:
    """Why an image was flagged, with its provenance (what the Report's ``rationale`` holds)."""

    text: str
    backend: str
    model: str | None = None
    prompt: str | None = None
    category: str | None = None
    answers: list[Answer] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Prediction:
    """One guard's verdict, mapped to a policy category where the policy knows one."""

    guard: str
    guard_category: str
    probability: float
    category: Category | None


@dataclass
class Context:
    """What a backend gets: the pixels, the guards' predictions and what safeguarding did."""

    pixels: np.ndarray
    predictions: list[Prediction]
    policy: Policy
    report: Any = None  # a safeview Report when called from safeguard()

    def top(self) -> Prediction | None:
        mapped = [p for p in self.predictions if p.category is not None]
        return max(mapped, key=lambda p: p.probability) if mapped else None


def condition(question: str, context: Context, enabled: bool = True) -> tuple[str, str | None]:
    """The instruction for ``question``, conditioned on the guards' output (the control code).

    The wording is graded by the guard's confidence; below the policy's conditioning threshold (or
    with ``enabled=False``) the question goes out unconditioned. Returns (instruction, category id).
    """
    top = context.top()
    policy = context.policy
    if not enabled or top is None or top.category is None:
        return question, None
    if top.probability < policy.conditioning_threshold:
        return question, None
    category = top.category
    grade = policy.confidence(top.probability)
    instruction = (
        f"A safety classifier found that this image {grade} contains {category.name} content "
        f"({category.attributes}). {question} Name the specific visual attributes that make the "
        f"image {category.name}, and where they are."
    )
    return instruction, category.id


class Backend(Protocol):
    name: str

    def explain(self, context: Context, questions: bool = False) -> Rationale: ...
