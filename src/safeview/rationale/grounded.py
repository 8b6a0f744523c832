"""The offline ``grounded`` backend: deterministic text from the guards' own evidence.

It says what the guard decided and how sure it was, what the body-part detector (NudeNet, when
installed) found and where, in words ("upper centre"), and what the counterfactual search
obfuscated. Templates and label names live in the policy file. It answers the moderator questions it
has evidence for and says which ones need a vision-language model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from safeview.detectors import Detection
from safeview.rationale.base import Answer, Context, Rationale


class Detector(Protocol):
    """A detector as :mod:`safeview.detectors` defines it; plain dicts with ``label``,
    ``score`` and ``box`` are accepted as detections too."""

    name: str

    def detect(self, pixels: np.ndarray) -> Sequence[Detection | dict[str, Any]]: ...


def evidence_item(found: Detection | dict[str, Any]) -> dict[str, Any]:
    """A detection as the rationale's evidence (a JSON-ready dict)."""
    if isinstance(found, Detection):
        return found.to_dict()
    item = dict(found)
    item["box"] = [int(v) for v in item["box"]]
    return item


def position_in_words(box: list[int], width: int, height: int) -> str:
    """Where a box's centre lies, in thirds: "upper left" ... "centre" ... "lower right"."""
    cx = (box[0] + box[2]) / 2 / max(width, 1)
    cy = (box[1] + box[3]) / 2 / max(height, 1)
    vertical = "upper" if cy < 1 / 3 else "lower" if cy > 2 / 3 else "middle"
    horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    if vertical == "middle":
        return "centre" if horizontal == "centre" else f"middle {horizontal}"
    return f"{vertical} {horizontal}"


class GroundedBackend:
    """Rationales from evidence only; no language model. ``detector=None`` turns NudeNet off."""

    name = "grounded"

    def __init__(self, detector: str | Detector | None = "nudenet") -> None:
        self._detector_spec = detector
        self._detector: Detector | None = None if isinstance(detector, str) else detector

    def detector(self) -> Detector | None:
        if self._detector is None and self._detector_spec == "nudenet":
            from safeview.detectors import make_detector

            try:
                self._detector = make_detector("nudenet")
            except ImportError:
                self._detector_spec = None
        return self._detector

    def ask(
        self, pixels: np.ndarray, question: str, context: Context, conditioned: bool | None = None
    ) -> tuple[str, str, str | None]:
        """The grounded text whatever the question (it reads evidence, not questions)."""
        rationale = self.explain(context)
        return rationale.text, question, rationale.category

    def explain(self, context: Context, questions: bool = False) -> Rationale:
        policy = context.policy
        height, width = context.pixels.shape[:2]
        detector = self.detector()
        found = detector.detect(context.pixels) if detector is not None else []
        evidence = [evidence_item(item) for item in found]
        for item in evidence:
            item["position"] = position_in_words(item["box"], width, height)
            item["name"] = policy.detector_labels.get(item["label"], item["label"].lower())
            # The policy decides for the labels it names (NudeNet's); other detectors' own
            # verdicts (the gesture rule, the lexicon) stand.
            if item["label"] in policy.detector_labels:
                item["unsafe"] = item["label"] in policy.unsafe_detector_labels
            else:
                item["unsafe"] = bool(item.get("unsafe", False))
        sentences = []
        top = context.top()
        category = top.category if top is not None else None
        if top is None or category is None:
            scores = ", ".join(
                f"{p.guard}: {p.guard_category} p = {p.probability:.2f}"
                for p in context.predictions
            )
            sentences.append(f"No guard output maps to a policy category ({scores}).")
        elif top.probability < policy.conditioning_threshold:
            sentences.append(
                f"Not flagged: {top.guard} gives {category.name} p = {top.probability:.2f}, "
                f"below {policy.conditioning_threshold:.2f}."
            )
        else:
            # Every category some guard flags, the highest first (one sentence each).
            flagged, seen = [], set()
            for prediction in sorted(context.predictions, key=lambda p: -p.probability):
                known = prediction.category
                if (
                    known is not None
                    and known.id not in seen
                    and prediction.probability >= policy.conditioning_threshold
                ):
                    seen.add(known.id)
                    flagged.append(prediction)
            for prediction in flagged or [top]:
                known = prediction.category or category
                sentences.append(
                    known.template.format(
                        category=known.name,
                        guard=prediction.guard,
                        probability=prediction.probability,
                        confidence=policy.confidence(prediction.probability),
                    )
                )
        unsafe = [e for e in evidence if e["unsafe"]]
        if detector is not None:
            if unsafe:
                parts = "; ".join(
                    f"{e['name']} ({e['position']}, score {e['score']:.2f})"
                    for e in sorted(unsafe, key=lambda e: -e["score"])
                )
                sentences.append(f"The body-part detector found: {parts}.")
            else:
                sentences.append("The body-part detector found no exposed intimate body parts.")
        sentences.extend(_search_sentences(context.report))
        answers = self._answers(context, evidence, category) if questions else []
        return Rationale(
            text=" ".join(sentences),
            backend=self.name,
            model=detector.name if detector is not None else None,
            prompt=None,
            category=category.id if category is not None else None,
            answers=answers,
            settings={"detector": detector.name if detector is not None else None},
            evidence=evidence,
        )

    def _answers(
        self, context: Context, evidence: list[dict[str, Any]], category: Any
    ) -> list[Answer]:
        answers = []
        chosen = [category] if category is not None else list(context.policy.categories.values())
        top = context.top()
        for entry in chosen:
            for question in entry.questions:
                if question.evidence == "detector" and self._detector is not None:
                    exposed = [e for e in evidence if e["unsafe"]]
                    text = (
                        "Yes: " + ", ".join(f"{e['name']} ({e['position']})" for e in exposed)
                        if exposed
                        else "No exposed intimate body parts were detected."
                    )
                    answers.append(Answer(question.text, text, "detector"))
                elif question.evidence == "guard" and top is not None:
                    verdict = "likely" if top.probability >= 0.5 else "unlikely"
                    answers.append(
                        Answer(
                            question.text,
                            f"{verdict.capitalize()} by the guard ({top.guard}, p = "
                            f"{top.probability:.2f}); it does not localise the content.",
                            "guard",
                        )
                    )
                else:
                    answers.append(
                        Answer(
                            question.text,
                            "Not answerable offline: needs a vision-language model backend "
                            "(instructblip or openai).",
                            "unanswerable",
                        )
                    )
        return answers


def _search_sentences(report: Any) -> list[str]:
    if report is None or not getattr(report, "flagged", False):
        return []
    if not report.regions and report.fallback is None:
        return []
    if report.fallback == "blur-all":
        return ["No small set of regions flipped the decision, so the whole image was blurred."]
    categories = [c for c in getattr(report, "categories", []) if c.flagged]
    if categories:
        changes = "; ".join(
            f"{c.name} p {c.score_before:.2f} -> {c.score_after:.2f}"
            for c in categories
            if c.score_before is not None and c.score_after is not None
        )
        return [
            f"Obfuscating {len(report.regions)} region(s), {100 * report.obfuscated_fraction:.0f}% "
            f"of the image, flipped every flagged category ({changes})."
        ]
    target = report.guard.target
    after = (report.scores_after or {}).get(target)
    after_text = f" (p {report.scores_before.get(target, 0):.2f} -> {after:.2f})" if after else ""
    return [
        f"Obfuscating {len(report.regions)} region(s), {100 * report.obfuscated_fraction:.0f}% of "
        f"the image, flipped the guard's decision{after_text}."
    ]
