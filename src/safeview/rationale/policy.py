"""The safety taxonomy, its policy texts, moderator questions, rubric keywords and templates.

All of it is data (``policy.json`` beside this file); ``load_policy(path)`` reads a user's edited
copy instead, so a team can change wording, questions or keywords without touching code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

#: The categories of OpenAI's moderation endpoint (``omni-moderation``), in the order of the
#: ``openai`` package's ``Moderation`` types. A policy category names the ones it covers
#: (``"openai"`` in ``policy.json``), so the service answers in OpenAI's shape.
OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


@dataclass(frozen=True)
class Evidence:
    """One source the offline grounded backend answers a question from.

    ``kind="detector"``: the detections of detector ``name`` (a :data:`safeview.detectors.DETECTORS`
    name) that are unsafe, only those with ``labels`` when given (``{"detector": "hands",
    "labels": ["middle_finger"]}``). ``kind="guard"``: guard ``name``'s score for its output
    ``category`` (default: the one its judge reads, else its unsafe one) against its judge's
    threshold (``{"guard": "weapons"}``).
    """

    kind: str
    name: str
    labels: tuple[str, ...] = ()
    category: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {self.kind: self.name}
        if self.labels:
            data["labels"] = list(self.labels)
        if self.category is not None:
            data["category"] = self.category
        return data


#: The string forms of a question's ``evidence`` kept from before :class:`Evidence` existed:
#: "detector" is NudeNet's unsafe parts, "guard" the scores of the guards judging the question's
#: category, "none" nothing offline (only a vision-language model can answer).
LEGACY_EVIDENCE = ("detector", "guard", "none")


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    #: What the offline grounded backend answers it from: a legacy string
    #: (:data:`LEGACY_EVIDENCE`), or the :class:`Evidence` sources in ``sources`` ("none" then).
    evidence: str = "none"
    sources: tuple[Evidence, ...] = ()

    @property
    def answerable(self) -> bool:
        """Whether anything offline can answer it."""
        return bool(self.sources) or self.evidence in ("detector", "guard")


@dataclass(frozen=True)
class Judge:
    """One guard's output judging a policy category: flagged while p(``category``) >=
    ``threshold`` (``category`` None: the guard's own rule, e.g. the top-1 class)."""

    guard: str
    category: str | None = None
    threshold: float = 0.5


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
    #: The guards that judge this category when safeguarding against the policy (none: the
    #: category is not covered offline).
    judges: tuple[Judge, ...] = ()
    #: The OpenAI moderation categories (:data:`OPENAI_CATEGORIES`) this category covers: the
    #: service's ``/v1/moderations`` scores each by the highest of the categories that name it.
    openai: tuple[str, ...] = ()


@dataclass(frozen=True)
class DetectorWords:
    """A detector in the rationale's words: what it is (``"body-part detector"``), what it
    found when nothing unsafe (``"no exposed intimate body parts"``), and its labels."""

    name: str
    nothing: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    categories: dict[str, Category]
    taxonomy: dict[str, str]
    guards: dict[str, dict[str, str]]
    conditioning_threshold: float
    confidence_words: tuple[tuple[float, str], ...]
    generic_questions: tuple[str, ...]
    #: NudeNet's labels in words; the policy decides which are unsafe.
    detector_labels: dict[str, str]
    unsafe_detector_labels: frozenset[str]
    #: Where the policy came from: ``"default"`` (built in) or the file's path.
    name: str = "default"
    version: str = "1"
    #: How the grounded rationale words each detector's findings (``"detectors"`` in the file).
    detectors: dict[str, DetectorWords] = field(default_factory=dict)

    def evidence_detectors(self) -> list[str]:
        """The detectors the questions are answered from, in order of first mention (the legacy
        ``"detector"`` evidence is NudeNet)."""
        names: list[str] = []
        for category in self.categories.values():
            for question in category.questions:
                if question.evidence == "detector":
                    names.append("nudenet")
                names += [e.name for e in question.sources if e.kind == "detector"]
        return list(dict.fromkeys(names))

    def threshold_for(self, guard: str, guard_category: str) -> float:
        """The threshold a judge of ``guard`` reads ``guard_category`` at (the lowest if several
        do); the conditioning threshold when no judge does."""
        found = [
            judge.threshold
            for _, judge in self.judges()
            if judge.guard == guard and judge.category in (None, guard_category)
        ]
        return min(found) if found else self.conditioning_threshold

    def label_words(self, label: str) -> str:
        """A detection's label in words (``"FEMALE_BREAST_EXPOSED"`` -> "exposed female
        breast", ``"middle_finger"`` -> "extended middle finger...")."""
        if label in self.detector_labels:
            return self.detector_labels[label]
        for words in self.detectors.values():
            if label in words.labels:
                return words.labels[label]
        return label.lower().replace("_", " ")

    def detector_of(self, label: str, producer: str) -> str:
        """Which detector's wording a detection belongs to: the one naming its label (NudeNet's
        labels are ``detector_labels``), else the detector that produced it."""
        if label in self.detector_labels and "nudenet" in self.detectors:
            return "nudenet"
        for name, words in self.detectors.items():
            if label in words.labels:
                return name
        return producer

    def judges(self) -> list[tuple[Category, Judge]]:
        """Every (category, judge) pair, in the policy's order."""
        return [
            (category, judge) for category in self.categories.values() for judge in category.judges
        ]

    def only(self, key: str) -> Policy:
        """This policy with one category (``key``, an id): the judges of that category alone."""
        return replace(self, categories={key: self.categories[key]})

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

    def openai_sources(self) -> dict[str, list[Category]]:
        """Each OpenAI moderation category with the policy categories that cover it (none:
        the policy does not cover it)."""
        sources: dict[str, list[Category]] = {name: [] for name in OPENAI_CATEGORIES}
        for category in self.categories.values():
            for name in category.openai:
                sources[name].append(category)
        return sources

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
        return _parse(json.loads(text), "default" if path is None else str(path))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: invalid policy file ({type(exc).__name__}: {exc})") from None


def _judges(category: str, entries: Any) -> tuple[Judge, ...]:
    if not isinstance(entries, list):
        raise ValueError(f"category {category}: 'guards' must be a list")
    judges = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("guard"), str):
            raise ValueError(f"category {category}: each guard needs a 'guard' name")
        threshold = entry.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(f"category {category}: threshold must be a number")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"category {category}: threshold must be in (0, 1), got {threshold}")
        target = entry.get("category")
        if target is not None and not isinstance(target, str):
            raise ValueError(f"category {category}: a guard's 'category' must be a string")
        judges.append(Judge(entry["guard"], target, float(threshold)))
    return tuple(judges)


def _question(category: str, entry: Any) -> Question:
    """A question with its evidence: a legacy string, one source (``{"detector": "hands",
    "labels": ["middle_finger"]}``, ``{"guard": "weapons", "category": "weapon"}``) or a list
    of them."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        raise ValueError(f"category {category}: each question needs an 'id' and a 'text'")
    where = f"category {category}, question {entry['id']}"
    evidence = entry.get("evidence", "none")
    if isinstance(evidence, str):
        if evidence not in LEGACY_EVIDENCE:
            raise ValueError(
                f"{where}: evidence {evidence!r} is not one of {', '.join(LEGACY_EVIDENCE)}, "
                'a {"detector": ...} or {"guard": ...} object, or a list of them'
            )
        return Question(entry["id"], str(entry["text"]), evidence)
    items = evidence if isinstance(evidence, list) else [evidence]
    sources = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError(f"{where}: each evidence source must be an object")
        kinds = [kind for kind in ("detector", "guard") if kind in item]
        if len(kinds) != 1 or not isinstance(item[kinds[0]], str):
            raise ValueError(
                f'{where}: an evidence source names one "detector" or one "guard", got {item}'
            )
        unknown = set(item) - {"detector", "guard", "labels", "category"}
        if unknown:
            raise ValueError(f"{where}: unknown evidence key(s) {', '.join(sorted(unknown))}")
        labels = item.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise ValueError(f"{where}: evidence 'labels' must be a list of strings")
        category_name = item.get("category")
        if category_name is not None and not isinstance(category_name, str):
            raise ValueError(f"{where}: evidence 'category' must be a string")
        sources.append(Evidence(kinds[0], item[kinds[0]], tuple(labels), category_name))
    return Question(entry["id"], str(entry["text"]), "none", tuple(sources))


def _openai(category: str, entries: Any) -> tuple[str, ...]:
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ValueError(f"category {category}: 'openai' must be a list of category names")
    unknown = [e for e in entries if e not in OPENAI_CATEGORIES]
    if unknown:
        raise ValueError(
            f"category {category}: unknown OpenAI moderation category {unknown[0]!r} "
            f"(known: {', '.join(OPENAI_CATEGORIES)})"
        )
    return tuple(dict.fromkeys(entries))


def _parse(data: dict[str, Any], origin: str = "default") -> Policy:
    categories = {}
    for key, entry in data["categories"].items():
        categories[key] = Category(
            id=key,
            name=str(entry["name"]),
            policy=str(entry["policy"]),
            taxonomy=tuple(entry.get("taxonomy", ())),
            attributes=str(entry["attributes"]),
            questions=tuple(_question(key, q) for q in entry.get("questions", ())),
            keywords=tuple(k.lower() for k in entry.get("keywords", ())),
            template=str(entry["template"]),
            judges=_judges(key, entry.get("guards", [])),
            openai=_openai(key, entry.get("openai", [])),
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
    guards = {g: dict(m) for g, m in data.get("guards", {}).items()}
    for category in categories.values():  # a category's judges name what their guard says
        for judge in category.judges:
            if judge.category is not None:
                guards.setdefault(judge.guard, {}).setdefault(judge.category, category.id)
    return Policy(
        categories=categories,
        taxonomy=taxonomy,
        guards=guards,
        conditioning_threshold=float(data.get("conditioning_threshold", 0.5)),
        confidence_words=tuple(
            (float(floor), str(words)) for floor, words in data["confidence_words"]
        ),
        generic_questions=tuple(data.get("generic_questions", ())),
        detector_labels=dict(data.get("detector_labels", {})),
        unsafe_detector_labels=frozenset(data.get("unsafe_detector_labels", ())),
        name=origin,
        version=str(data.get("version", "1")),
        detectors=_detector_words(data.get("detectors", {})),
    )


def _detector_words(entries: Any) -> dict[str, DetectorWords]:
    if not isinstance(entries, dict):
        raise ValueError("'detectors' must be an object of detector names")
    words = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"detector {name}: needs a 'name' (what it is, in words)")
        labels = entry.get("labels", {})
        if not isinstance(labels, dict):
            raise ValueError(f"detector {name}: 'labels' must map labels to words")
        words[name] = DetectorWords(
            str(entry["name"]),
            str(entry.get("nothing", "nothing unsafe")),
            {str(k): str(v) for k, v in labels.items()},
        )
    return words
