"""The safety taxonomy, its policy texts, moderator questions, rubric keywords and templates.

All of it is data (``policy.json`` beside this file); ``load_policy(path)`` reads a user's edited
copy instead, so a team can change wording, questions or keywords without touching code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    #: What the offline grounded backend can answer it from: "detector" (NudeNet), "guard" (the
    #: guard's score), or "none" (only a vision-language model can).
    evidence: str


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    policy: str
    taxonomy: tuple[str, ...]
    attributes: str
    questions: tuple[Question, ...]
    keywords: tuple[str, ...]
    template: str


@dataclass(frozen=True)
class Policy:
    categories: dict[str, Category]
    taxonomy: dict[str, str]
    guards: dict[str, dict[str, str]]
    conditioning_threshold: float
    confidence_words: tuple[tuple[float, str], ...]
    generic_questions: tuple[str, ...]
    detector_labels: dict[str, str]
    unsafe_detector_labels: frozenset[str]

    def category_for(self, guard: str, guard_category: str) -> Category | None:
        """The policy category a guard's output category stands for, if any."""
        key = self.guards.get(guard, {}).get(guard_category)
        if key:
            return self.categories.get(key)
        # A guard trained for a policy category (``safeview train --category self-harm``).
        wanted = guard_category.lower().replace("-", "_").replace(" ", "_")
        for name, category in self.categories.items():
            if wanted in (name, category.name.lower().replace("-", "_").replace(" ", "_")):
                return category
        return None

    def confidence(self, probability: float) -> str:
        for floor, words in self.confidence_words:
            if probability >= floor:
                return words
        return self.confidence_words[-1][1]


def load_policy(path: str | Path | None = None) -> Policy:
    """The built-in policy, or the JSON file at ``path`` (same shape as the built-in one)."""
    if path is None:
        text = resources.files("safeview.rationale").joinpath("policy.json").read_text("utf-8")
        source = "built-in policy"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{source}: cannot read policy file ({exc.strerror})") from None
    try:
        return _parse(json.loads(text))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: invalid policy file ({type(exc).__name__}: {exc})") from None


def _parse(data: dict[str, Any]) -> Policy:
    categories = {}
    for key, entry in data["categories"].items():
        categories[key] = Category(
            id=key,
            name=str(entry["name"]),
            policy=str(entry["policy"]),
            taxonomy=tuple(entry.get("taxonomy", ())),
            attributes=str(entry["attributes"]),
            questions=tuple(
                Question(q["id"], q["text"], q.get("evidence", "none"))
                for q in entry.get("questions", ())
            ),
            keywords=tuple(k.lower() for k in entry.get("keywords", ())),
            template=str(entry["template"]),
        )
    taxonomy = dict(data["taxonomy"])
    for category in categories.values():
        for name in category.taxonomy:
            if name not in taxonomy:
                raise ValueError(f"category {category.id} maps to unknown taxonomy entry {name!r}")
    for guard, mapping in data.get("guards", {}).items():
        for key in mapping.values():
            if key not in categories:
                raise ValueError(f"guard {guard} maps to unknown category {key!r}")
    return Policy(
        categories=categories,
        taxonomy=taxonomy,
        guards={g: dict(m) for g, m in data.get("guards", {}).items()},
        conditioning_threshold=float(data.get("conditioning_threshold", 0.5)),
        confidence_words=tuple(
            (float(floor), str(words)) for floor, words in data["confidence_words"]
        ),
        generic_questions=tuple(data.get("generic_questions", ())),
        detector_labels=dict(data.get("detector_labels", {})),
        unsafe_detector_labels=frozenset(data.get("unsafe_detector_labels", ())),
    )
