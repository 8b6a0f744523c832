"""The offline ``grounded`` backend: deterministic text from the guards' and detectors' evidence.

It says what the guards decided and how sure they were, what the evidence detectors found and
where, in words ("upper centre"): exposed body parts (NudeNet), an extended middle finger (the
hands detector's gesture rule), abusive text (OCR and the lexicon), and what the counterfactual
search obfuscated. With ``questions=True`` it answers every moderator question of the policy:
**yes**, **no** or **not covered**, from the sources the question's ``evidence`` names in the
policy (``{"detector": "hands", "labels": ["middle_finger"]}``, ``{"guard": "weapons"}``, a list
of them, or the legacy strings ``"detector"``, ``"guard"``, ``"none"``), citing each detection
(detector, score, where) or guard score (guard, score, threshold) it rests on. Templates, label
names and how each detector is worded live in the policy file.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from safeview.detectors import Detection
from safeview.rationale.base import Answer, Context, Prediction, Rationale
from safeview.rationale.policy import Category, Evidence, Policy, Question

#: ``GroundedBackend(detector=POLICY_DETECTORS)``: every detector the policy's questions name.
POLICY_DETECTORS = "policy"


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


def describe(item: dict[str, Any]) -> str:
    """One unsafe detection in words: what (the words read, for text), where, how sure."""
    what = item["name"]
    if item.get("text"):
        what = f'{what} "{item["text"]}"'
    return f"{what} ({item['position']}, score {item['score']:.2f})"


class GroundedBackend:
    """Rationales from evidence only; no language model.

    ``detector``: ``"policy"`` (default) runs every detector the policy's questions name (the
    built-in policy: ``nudenet``, ``hands``, ``text``), each built once on first use; a detector
    whose runtime is not installed is left out (its questions are *not covered*). A name, a
    :class:`Detector` object, or a list of them runs those instead; ``None`` runs none.
    """

    name = "grounded"

    def __init__(
        self, detector: str | Detector | Sequence[str | Detector] | None = POLICY_DETECTORS
    ) -> None:
        self._spec = detector
        #: Detectors by name; None where the name could not be built (and why, in _missing).
        self._built: dict[str, Detector | None] = {}
        self._missing: dict[str, str] = {}
        self._lock = threading.Lock()
        for item in _given(detector):
            if not isinstance(item, str):
                self._built[item.name] = item

    def _names(self, policy: Policy | None) -> list[str]:
        if self._spec == POLICY_DETECTORS:
            return policy.evidence_detectors() if policy is not None else ["nudenet"]
        return [item if isinstance(item, str) else item.name for item in _given(self._spec)]

    def detectors(self, policy: Policy | None = None) -> dict[str, Detector]:
        """The detectors this backend runs for ``policy``, by name, built on first use."""
        names = self._names(policy)
        with self._lock:
            for name in names:
                if name in self._built:
                    continue
                from safeview.detectors import make_detector

                try:
                    self._built[name] = make_detector(name)
                except ImportError as exc:  # an optional runtime not installed
                    self._built[name] = None
                    self._missing[name] = f"not installed ({str(exc).splitlines()[0]})"
                except ValueError as exc:  # no detector of that name
                    self._built[name] = None
                    self._missing[name] = str(exc)
            return {name: d for name in names if (d := self._built.get(name)) is not None}

    def detector(self) -> Detector | None:
        """The first detector this backend runs under the built-in policy (NudeNet)."""
        from safeview.rationale.policy import load_policy

        found = self.detectors(load_policy())
        return next(iter(found.values()), None)

    def ask(
        self, pixels: np.ndarray, question: str, context: Context, conditioned: bool | None = None
    ) -> tuple[str, str, str | None]:
        """The grounded text whatever the question (it reads evidence, not questions)."""
        rationale = self.explain(context)
        return rationale.text, question, rationale.category

    def explain(self, context: Context, questions: bool = False) -> Rationale:
        policy = context.policy
        height, width = context.pixels.shape[:2]
        detectors = self.detectors(policy)
        evidence = []
        for name, detector in detectors.items():
            for found in detector.detect(context.pixels):
                item = evidence_item(found)
                item["detector"] = name
                item["position"] = position_in_words(item["box"], width, height)
                item["name"] = policy.label_words(item["label"])
                # The policy decides for the labels it names (NudeNet's); other detectors' own
                # verdicts (the gesture rule, the lexicon) stand.
                if item["label"] in policy.detector_labels:
                    item["unsafe"] = item["label"] in policy.unsafe_detector_labels
                else:
                    item["unsafe"] = bool(item.get("unsafe", False))
                evidence.append(item)
        top = context.top()
        category = top.category if top is not None else None
        sentences = _verdict_sentences(context, top)
        sentences.extend(_detector_sentences(policy, list(detectors), evidence))
        sentences.extend(_search_sentences(context.report))
        answers = self._answers(context, evidence, list(detectors)) if questions else []
        names = list(detectors)
        return Rationale(
            text=" ".join(sentences),
            backend=self.name,
            model="+".join(names) if names else None,
            prompt=None,
            category=category.id if category is not None else None,
            answers=answers,
            settings={
                "detectors": names,
                **({"not_run": dict(self._missing)} if self._missing else {}),
            },
            evidence=evidence,
        )

    def _answers(
        self, context: Context, evidence: list[dict[str, Any]], ran: list[str]
    ) -> list[Answer]:
        """Every question of the policy, answered yes / no / not covered from its evidence."""
        answers = []
        for category in context.policy.categories.values():
            for question in category.questions:
                answers.append(self._answer(context, category, question, evidence, ran))
        return answers

    def _answer(
        self,
        context: Context,
        category: Category,
        question: Question,
        evidence: list[dict[str, Any]],
        ran: list[str],
    ) -> Answer:
        policy = context.policy
        consulted: list[_Finding] = []
        if question.evidence == "detector":  # legacy: NudeNet's unsafe parts, from any detector
            consulted.append(_legacy_parts(policy, evidence, ran))
        elif question.evidence == "guard":  # legacy: the guards judging this category
            judged = [Evidence("guard", j.guard, category=j.category) for j in category.judges]
            consulted += [_guard(context, source) for source in judged]
            if not judged:
                consulted.append(
                    _Finding(None, "guard", f"no guard judges {category.name} in this policy")
                )
        for source in question.sources:
            if source.kind == "detector":
                consulted.append(self._detections(policy, source, evidence, ran))
            else:
                consulted.append(_guard(context, source))
        answer = Answer(question.text, "", "unanswerable", "not covered", category.id, question.id)
        if not consulted:
            answer.answer = (
                "Not covered: no offline detector or guard answers this; it needs a "
                "vision-language model backend (instructblip or openai)."
            )
            return answer
        yes = [f for f in consulted if f.verdict == "yes"]
        no = [f for f in consulted if f.verdict == "no"]
        deciding = yes or no
        answer.evidence = [record for f in consulted for record in f.records]
        if not deciding:
            answer.answer = "Not covered: " + "; ".join(f.phrase for f in consulted) + "."
            return answer
        answer.verdict = "yes" if yes else "no"
        answer.source = "+".join(sorted({f.kind for f in deciding}))
        answer.answer = f"{answer.verdict.capitalize()}: " + "; ".join(f.phrase for f in deciding)
        if yes and no:
            answer.answer += " (while " + "; ".join(f.phrase for f in no) + ")"
        answer.answer += "."
        return answer

    def _detections(
        self, policy: Policy, source: Evidence, evidence: list[dict[str, Any]], ran: list[str]
    ) -> _Finding:
        words = policy.detectors.get(source.name)
        called = words.name if words else f"{source.name} detector"
        if source.name not in ran:
            reason = self._missing.get(source.name, "not run by this backend")
            return _Finding(
                None,
                "detector",
                f"the {called} did not run ({reason})",
                [{"detector": source.name, "covered": False, "reason": reason}],
            )
        found = [
            e
            for e in evidence
            if e["detector"] == source.name
            and e["unsafe"]
            and (not source.labels or e["label"] in source.labels)
        ]
        found.sort(key=lambda e: -e["score"])
        if not found:
            nothing = words.nothing if words else "nothing unsafe"
            return _Finding(
                "no", "detector", f"the {called} found {nothing}", [{"detector": source.name}]
            )
        return _Finding(
            "yes",
            "detector",
            "; ".join(describe(e) for e in found) + f", found by the {called}",
            [_cited(e) for e in found],
        )


def _given(spec: str | Detector | Sequence[str | Detector] | None) -> list[str | Detector]:
    """The detectors (names or objects) a backend was given, as a list."""
    if spec is None:
        return []
    if isinstance(spec, str) or not isinstance(spec, Sequence):
        return [spec]
    return list(spec)


class _Finding:
    """What one evidence source says: its verdict (None: it cannot say), a phrase, citations."""

    def __init__(
        self,
        verdict: str | None,
        kind: str,
        phrase: str,
        records: list[dict[str, Any]] | None = None,
    ) -> None:
        self.verdict, self.kind, self.phrase = verdict, kind, phrase
        self.records = records or []


def _cited(item: dict[str, Any]) -> dict[str, Any]:
    keys = ("detector", "label", "score", "box", "position", "text")
    return {key: item[key] for key in keys if key in item}


def _legacy_parts(policy: Policy, evidence: list[dict[str, Any]], ran: list[str]) -> _Finding:
    """The legacy ``"detector"`` evidence: the policy's unsafe NudeNet labels, from whichever
    detector reported them."""
    words = policy.detectors.get("nudenet")
    called = words.name if words else "body-part detector"
    if not ran:
        return _Finding(None, "detector", f"the {called} did not run")
    found = sorted(
        (e for e in evidence if e["unsafe"] and e["label"] in policy.detector_labels),
        key=lambda e: -e["score"],
    )
    if not found:
        nothing = words.nothing if words else "no exposed intimate body parts"
        return _Finding("no", "detector", f"the {called} found {nothing}")
    return _Finding(
        "yes",
        "detector",
        "; ".join(describe(e) for e in found) + f", found by the {called}",
        [_cited(e) for e in found],
    )


def _guard(context: Context, source: Evidence) -> _Finding:
    """A guard's score as evidence: flagged at its judge's threshold or not; where the search
    found what flipped it, when the report says."""
    mine = [
        p
        for p in context.predictions
        if p.guard == source.name
        and (source.category is None or p.guard_category == source.category)
    ]
    if not mine:
        reason = "not run for this image (not among the guards consulted)"
        return _Finding(
            None,
            "guard",
            f"the {source.name} guard was {reason}",
            [{"guard": source.name, "covered": False, "reason": reason}],
        )
    best: Prediction = max(mine, key=lambda p: p.probability)
    threshold = context.policy.threshold_for(best.guard, best.guard_category)
    flagged = best.probability >= threshold
    phrase = (
        f"the {best.guard} guard gives {best.guard_category} p = {best.probability:.2f} "
        f"(threshold {threshold:.2f})"
    )
    where = _where_flipped(context) if flagged else None
    phrase += f"; the regions obfuscated to flip it lie in the {where}" if where else ""
    record = {
        "guard": best.guard,
        "category": best.guard_category,
        "score": round(best.probability, 4),
        "threshold": threshold,
        "flagged": flagged,
    }
    if where:
        record["position"] = where
    return _Finding("yes" if flagged else "no", "guard", phrase, [record])


def _where_flipped(context: Context) -> str | None:
    """Where the search's obfuscated regions lie (their union's box), when it flipped."""
    report = context.report
    if report is None or not getattr(report, "success", False) or not report.regions:
        return None
    boxes = np.asarray([region.bbox for region in report.regions])
    union = [int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()),
             int(boxes[:, 3].max())]  # fmt: skip
    return position_in_words(union, report.input.width, report.input.height)


def _verdict_sentences(context: Context, top: Prediction | None) -> list[str]:
    policy = context.policy
    category = top.category if top is not None else None
    if top is None or category is None:
        scores = ", ".join(
            f"{p.guard}: {p.guard_category} p = {p.probability:.2f}" for p in context.predictions
        )
        return [f"No guard output maps to a policy category ({scores})."]
    if top.probability < policy.conditioning_threshold:
        return [
            f"Not flagged: {top.guard} gives {category.name} p = {top.probability:.2f}, "
            f"below {policy.conditioning_threshold:.2f}."
        ]
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
    sentences = []
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
    return sentences


def _detector_sentences(
    policy: Policy, ran: list[str], evidence: list[dict[str, Any]]
) -> list[str]:
    """One sentence per detector: the unsafe things it found (worded by label: a body part, a
    gesture, text read) or, when nothing, what it did not find."""
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in ran}
    producers = set()
    for item in evidence:
        if item["unsafe"]:
            groups.setdefault(policy.detector_of(item["label"], item["detector"]), []).append(item)
            producers.add(item["detector"])
    sentences = []
    for name, items in groups.items():
        words = policy.detectors.get(name)
        called = words.name if words else f"{name} detector"
        if items:
            parts = "; ".join(describe(e) for e in sorted(items, key=lambda e: -e["score"]))
            sentences.append(f"The {called} found: {parts}.")
        elif name not in producers:
            sentences.append(f"The {called} found {words.nothing if words else 'nothing unsafe'}.")
    return sentences


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
