from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from safeview.rationale import load_policy
from safeview.rationale.grounded import GroundedBackend, position_in_words
from tests.rationale.conftest import context_for


class FakeDetector:
    """Stands in for NudeNet (the detector the policy's nudity question names)."""

    name = "nudenet"

    def __init__(self, found: list[dict[str, Any]]) -> None:
        self.found = found

    def detect(self, pixels: np.ndarray) -> list[dict[str, Any]]:
        return [dict(item) for item in self.found]


PIXELS = np.zeros((300, 300, 3), np.uint8)


def test_rationale_names_attributes_and_positions() -> None:
    detector = FakeDetector(
        [
            {"label": "FEMALE_BREAST_EXPOSED", "score": 0.87, "box": [120, 20, 180, 80]},
            {"label": "BUTTOCKS_EXPOSED", "score": 0.66, "box": [10, 220, 80, 290]},
            {"label": "FACE_FEMALE", "score": 0.9, "box": [130, 0, 170, 30]},
        ]
    )
    rationale = GroundedBackend(detector).explain(context_for(PIXELS, 0.93), questions=True)
    assert rationale.text.startswith(
        "Flagged as sexually explicit by open-nsfw (p = 0.93, almost certainly)."
    )
    assert (
        "The body-part detector found: exposed female breast (upper centre, score 0.87); "
        "exposed buttocks (lower left, score 0.66)."
    ) in rationale.text
    assert "female face" not in rationale.text  # safe parts are evidence, not reasons
    assert rationale.category == "sexually_explicit" and rationale.backend == "grounded"
    nudity, explicit = [a for a in rationale.answers if a.category == "sexually_explicit"]
    assert nudity.source == "detector" and nudity.verdict == "yes"
    assert nudity.answer.startswith("Yes: exposed female breast (upper centre, score 0.87)")
    assert [e["label"] for e in nudity.evidence] == ["FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED"]
    assert nudity.evidence[0]["detector"] == "nudenet" and nudity.evidence[0]["box"]
    assert explicit.source == "guard" and explicit.verdict == "yes"
    assert "p = 0.93" in explicit.answer
    # Every question of the policy is answered; the ones whose detector did not run say so.
    questions = sum(len(c.questions) for c in load_policy().categories.values())
    assert len(rationale.answers) == questions
    gesture = next(a for a in rationale.answers if a.id == "offensive_gestures")
    assert gesture.verdict == "not covered" and "did not run" in gesture.answer


def test_not_flagged_and_no_evidence() -> None:
    rationale = GroundedBackend(FakeDetector([])).explain(context_for(PIXELS, 0.12))
    assert rationale.text.startswith("Not flagged: open-nsfw gives sexually explicit p = 0.12")
    assert "found no exposed intimate body parts" in rationale.text


def test_questions_without_evidence_are_marked_unanswerable() -> None:
    context = context_for(PIXELS, 0.9, guard="imagenet")  # no policy mapping for this guard
    context.predictions[0].category = None
    rationale = GroundedBackend(None).explain(context, questions=True)
    assert rationale.text.startswith("No guard output maps to a policy category")
    sources = {a.question: a.source for a in rationale.answers}
    assert len(sources) == sum(len(c.questions) for c in load_policy().categories.values())
    assert sources["Are there weapons in the image, such as guns or knives?"] == "unanswerable"


@pytest.mark.parametrize(
    ("box", "words"),
    [
        ([0, 0, 10, 10], "upper left"),
        ([140, 140, 160, 160], "centre"),
        ([280, 140, 300, 160], "middle right"),
        ([140, 280, 160, 300], "lower centre"),
    ],
)
def test_positions(box: list[int], words: str) -> None:
    assert position_in_words(box, 300, 300) == words


def test_templates_come_from_the_policy_file(tmp_path) -> None:
    import json
    from importlib import resources

    data = json.loads(resources.files("safeview.rationale").joinpath("policy.json").read_text())
    data["categories"]["sexually_explicit"]["template"] = "CUSTOM {category} {probability:.1f}"
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(data))
    context = context_for(PIXELS, 0.93)
    context.policy = load_policy(path)
    context.predictions[0].category = context.policy.categories["sexually_explicit"]
    assert GroundedBackend(None).explain(context).text.startswith("CUSTOM sexually explicit 0.9")


def test_policy_taxonomy_and_bad_files(tmp_path) -> None:
    policy = load_policy()
    # The paper's three categories, and violence and weapons, which offline guards judge.
    assert set(policy.categories) >= {"sexually_explicit", "cyberbullying", "self_harm"}
    assert {"violence", "weapons"} <= set(policy.categories)
    assert len(policy.taxonomy) == 9
    assert policy.categories["self_harm"].taxonomy == ("self-harm",)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="invalid policy file"):
        load_policy(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_policy(tmp_path / "missing.json")
