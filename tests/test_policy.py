"""Safeguarding against a policy: several guards, one joint counterfactual, every category
reported; with two tiny colour guards (red and blue), so the known answer is the union of two
shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import safeview
from safeview.guards import register_guard
from safeview.options import SafeguardOptions
from safeview.policy import GuardPanel, resolve_policy
from safeview.report import JSON_SCHEMA, SCHEMA_VERSION, Report
from tests.conftest import RedDetector, RedGuard, red_square_image


class BlueDetector(RedDetector):
    """logit(unsafe) - logit(safe) grows with the fraction of strongly blue pixels (> 2.5%)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            self.conv.weight[0, :, 1, 1] = torch.tensor([-0.5, -0.5, 1.0])
            self.head.bias.copy_(torch.tensor([0.0, -200.0 * 0.288 * 0.025]))


class BlueGuard(RedGuard):
    name = "blue-disc"

    def __init__(self) -> None:
        super().__init__()
        self.module = BlueDetector()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)


register_guard("policy-test-red", lambda device: RedGuard())
register_guard("policy-test-blue", lambda device: BlueGuard())


def write_policy(tmp_path: Path, judges: dict[str, list[dict]]) -> Path:
    """The built-in policy file with the categories' guards replaced by ``judges``."""
    from importlib import resources

    data = json.loads(
        resources.files("safeview.rationale").joinpath("policy.json").read_text("utf-8")
    )
    for key, category in data["categories"].items():
        category["guards"] = judges.get(key, [])
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def two_guard_policy(tmp_path: Path) -> Path:
    return write_policy(
        tmp_path,
        {
            "sexually_explicit": [{"guard": "policy-test-red", "category": "unsafe"}],
            "violence": [{"guard": "policy-test-blue", "category": "unsafe", "threshold": 0.5}],
        },
    )


def scene() -> np.ndarray:
    """A red square (top left) and a blue disc (bottom left), far apart."""
    return red_square_image(size=128, square=(12, 70, 30))


def test_both_guards_flag_the_scene_and_each_alone_hides_only_its_shape() -> None:
    image = scene()
    red = safeview.safeguard(image, guard=RedGuard(), working_size=128)
    blue = safeview.safeguard(image, guard=BlueGuard(), working_size=128)
    assert red.flagged and blue.flagged and red.success and blue.success
    assert red.mask is not None and blue.mask is not None
    assert red.mask[12:42, 70:100].mean() > 0.8 and red.mask[80:115, 15:50].mean() < 0.2
    assert blue.mask[80:115, 15:50].mean() > 0.5 and blue.mask[12:42, 70:100].mean() < 0.2


def test_the_joint_search_hides_what_flips_every_category(two_guard_policy: Path) -> None:
    image = scene()
    report = safeview.safeguard(image, policy=str(two_guard_policy), working_size=128)
    assert report.policy == str(two_guard_policy)
    assert report.flagged and report.success and report.fallback is None, report.error
    by_id = {category.id: category for category in report.categories}
    assert set(by_id) >= {"sexually_explicit", "violence", "weapons", "self_harm"}
    for key in ("sexually_explicit", "violence"):
        category = by_id[key]
        assert category.covered and category.flagged, category
        assert category.flagged_after is False
        assert category.score_before is not None and category.score_before >= 0.5
        assert category.score_after is not None and category.score_after < 0.5
    # Categories no guard judges are said to be not covered, not safe.
    assert not by_id["self_harm"].covered and by_id["self_harm"].score_before is None
    # Both shapes are hidden: the output flips every guard of the policy.
    assert report.mask is not None
    assert report.mask[12:42, 70:100].mean() > 0.8
    assert report.mask[80:115, 15:50].mean() > 0.5
    # Minimal: not much more than the two shapes.
    union = 30 * 30 + np.pi * (128 * 0.12) ** 2
    assert report.obfuscated_fraction <= 1.6 * union / 128**2
    # Each image scored counts once per guard; one attribution per flagged judge.
    passes = report.forward_passes
    assert passes["classify"] == 2 and passes["attribution"] == 2
    assert passes["total"] == sum(
        passes[k] for k in ("classify", "attribution", "search", "verify")
    )
    # The JSON names every category and reads back.
    data = report.to_dict()
    assert data["schema_version"] == SCHEMA_VERSION
    assert {c["id"] for c in data["categories"]} == set(by_id)
    assert Report.from_dict(data).categories == report.categories
    assert set(JSON_SCHEMA["properties"]) >= {"policy", "categories"}


def test_a_category_that_does_not_flag_is_kept_unflagged(tmp_path: Path) -> None:
    # Only the red square: the blue guard does not flag, and the output must not make it flag.
    image = red_square_image(size=128, square=(12, 70, 30))
    image[80:, :60] = (90, 140, 90)  # no blue disc
    policy = write_policy(
        tmp_path,
        {
            "sexually_explicit": [{"guard": "policy-test-red", "category": "unsafe"}],
            "violence": [{"guard": "policy-test-blue", "category": "unsafe"}],
        },
    )
    report = safeview.safeguard(image, policy=str(policy), working_size=128)
    by_id = {category.id: category for category in report.categories}
    assert by_id["sexually_explicit"].flagged and not by_id["violence"].flagged
    assert report.success and by_id["violence"].flagged_after is False
    assert report.forward_passes["attribution"] == 1  # only the flagged judge's map
    # Candidates are scored by the flagged guard alone; the output by both.
    passes = report.forward_passes
    assert passes["classify"] == 2 and passes["verify"] % 2 == 0
    assert passes["total"] == 2 + 1 + passes["search"] + passes["verify"]
    assert report.guard.name == "red-square"  # the report names the flagged guard


def test_classify_with_a_policy_scores_every_category(two_guard_policy: Path) -> None:
    report = safeview.classify(scene(), policy=str(two_guard_policy))
    assert report.flagged and report.policy == str(two_guard_policy)
    assert set(report.scores_before) == {"sexually_explicit", "violence"}
    assert all(c.score_after is None for c in report.categories)


def test_guard_and_policy_together_are_refused(two_guard_policy: Path) -> None:
    with pytest.raises(ValueError, match="guard or a policy"):
        SafeguardOptions(guard="imagenet", policy=str(two_guard_policy))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid policy file"),
        (None, "no such file"),
    ],
)
def test_a_bad_policy_file_is_refused_before_work(tmp_path: Path, content, message) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        SafeguardOptions(policy=str(path))


@pytest.mark.parametrize(
    ("judge", "message"),
    [
        ({"guard": "policy-test-red", "threshold": 1.5}, "threshold must be in"),
        ({"category": "unsafe"}, "needs a 'guard'"),
    ],
)
def test_bad_judges_are_named(tmp_path: Path, judge: dict, message: str) -> None:
    path = write_policy(tmp_path, {"violence": [judge]})
    with pytest.raises(ValueError, match=message):
        resolve_policy(str(path))


def test_a_judge_reading_a_category_its_guard_lacks_is_named(tmp_path: Path) -> None:
    path = write_policy(tmp_path, {"violence": [{"guard": "policy-test-red", "category": "gore"}]})
    with pytest.raises(ValueError, match="reads 'gore' of guard 'policy-test-red'"):
        GuardPanel(policy=str(path))


def test_a_policy_without_guards_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no category has a guard"):
        GuardPanel(policy=str(write_policy(tmp_path, {})))


def test_openai_model_names_stand_for_the_default_policy() -> None:
    assert resolve_policy("omni-moderation-latest").name == "default"
    assert resolve_policy(None).name == "default"


def test_the_options_record_the_policy(two_guard_policy: Path) -> None:
    options = SafeguardOptions(policy=str(two_guard_policy))
    assert options.to_dict()["policy"] == str(two_guard_policy)
    assert SafeguardOptions().policy_name == "default"
    assert SafeguardOptions(guard="imagenet").policy_name is None
    again = SafeguardOptions.from_mapping({"policy": str(two_guard_policy), "guard": ""})
    assert again.policy == str(two_guard_policy) and again.guard is None


def test_the_grounded_rationale_names_every_flagged_category(two_guard_policy: Path) -> None:
    report = safeview.safeguard(scene(), policy=str(two_guard_policy), working_size=128)
    rationale = safeview.explain(scene(), "grounded", policy=str(two_guard_policy), report=report)
    assert "sexually explicit" in rationale.text and "violence and gore" in rationale.text
    assert "flipped every flagged category" in rationale.text
    # Without a report, every guard of the policy is scored for the rationale.
    alone = safeview.explain(scene(), "grounded", policy=str(two_guard_policy))
    assert "red-square" in alone.text and "blue-disc" in alone.text


def test_the_visualisation_caption_names_the_flagged_categories(two_guard_policy: Path) -> None:
    from safeview.viz import _caption

    report = safeview.safeguard(scene(), policy=str(two_guard_policy), working_size=128)
    first = _caption(report)[0]
    assert first.startswith(f"policy {two_guard_policy}: ")
    assert "sexually_explicit p=" in first and "violence p=" in first and "nan" not in first


def test_score_inputs_matches_score_and_fills_the_other_guards(two_guard_policy: Path) -> None:
    panel = GuardPanel(policy=two_guard_policy)
    images = [scene(), np.zeros_like(scene())]
    full = panel.score(images)
    first = panel.guards[0]
    inputs = {0: first.preprocess(images)}
    got = panel.score_inputs(inputs, fill=full[1])
    assert np.allclose(got[:, : len(first.categories)], full[:, : len(first.categories)], atol=1e-5)
    # The second guard's columns repeat the fill row, as score(only=...) does.
    assert np.array_equal(
        got[:, len(first.categories) :], np.tile(full[1, len(first.categories) :], (2, 1))
    )
    with pytest.raises(ValueError, match="one batch size"):
        panel.score_inputs({0: inputs[0], 1: inputs[0][:1]}, fill=full[0])
