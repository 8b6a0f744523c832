"""SafetyPairs against a policy: without a guard, the judges of the pairs' category verify the flip
(any flags the original, none the edit), the obfuscate editor searches against all of them, and
`pairs eval` judges each pair by its own category's guards (uncovered categories counted apart).
The red-square and blue-disc guards of tests/test_policy.py stand in for real guards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from safeview.cli import app
from safeview.io import load_image
from safeview.pairs import (
    PolicyJudge,
    category_judges,
    evaluate_pairs,
    make_editor,
    make_pairs,
    read_manifest,
    safeguarding_policy,
)
from safeview.rationale.policy import load_policy
from tests.conftest import RedGuard
from tests.test_policy import write_policy  # also registers policy-test-red / policy-test-blue

RED = {"guard": "policy-test-red", "category": "unsafe"}
BLUE = {"guard": "policy-test-blue", "category": "unsafe", "threshold": 0.5}
runner = CliRunner()


@pytest.fixture
def red_policy(tmp_path: Path) -> Path:
    """sexually_explicit judged by the red guard; every other category without a guard."""
    return write_policy(tmp_path, {"sexually_explicit": [RED]})


@pytest.mark.parametrize(
    ("editor", "options"), [("obfuscate", {"style": "fill"}), ("inpaint", {"mask_fraction": 0.15})]
)
def test_the_categorys_judges_verify_without_a_guard(
    unsafe_dir: Path, tmp_path: Path, red_policy: Path, editor: str, options: dict[str, object]
) -> None:
    out = tmp_path / "pairs"
    # An alias of the category, as `category_for` reads it.
    summary = make_pairs(
        unsafe_dir, out, "sexually explicit", make_editor(editor, **options), policy=red_policy
    )
    assert summary["verified_by"] == {
        "policy": str(red_policy),
        "category": "sexually_explicit",
        "guards": ["red-square"],
    }
    records = {r["source"]: r for r in read_manifest(out)}
    plain = records["plain.png"]
    assert plain["status"] == "rejected" and plain["reasons"][0].startswith(
        "no judge flags the original (red-square p = "
    )
    assert "score_after" not in plain["judges"]["guards"][0]
    kept = [r for r in records.values() if r["status"] == "kept"]
    assert summary["kept"] == len(kept) >= 4
    for record in kept:
        assert "guard" not in record and "scores" not in record  # the one-guard fields
        judges = record["judges"]
        assert judges["policy"] == str(red_policy) and judges["category"] == "sexually_explicit"
        (judge,) = judges["guards"]
        assert judge["guard"] == "red-square" and judge["category"] == "unsafe"
        assert judge["threshold"] == 0.5 and judge["flagged_before"] and not judge["flagged_after"]
        assert judge["score_before"] >= 0.5 > judge["score_after"]
        assert record["verification"]["p_before"] == judge["score_before"]
        assert record["verification"]["label_flipped"]
        # The policy file's text for the category is the pair's policy.
        assert record["policy"].startswith("Content that shows nudity")


def test_two_judges_any_flags_before_none_after(unsafe_dir: Path, tmp_path: Path) -> None:
    # The scenes have a red square and a blue disc: both judges of the category flag them, and
    # the joint search must hide both; plain.png (only the disc) is flagged by blue alone.
    policy = write_policy(tmp_path, {"sexually_explicit": [RED, BLUE]})
    out = tmp_path / "pairs"
    make_pairs(
        unsafe_dir, out, "sexually_explicit", make_editor("obfuscate", style="fill"), policy=policy
    )
    records = {r["source"]: r for r in read_manifest(out)}
    kept = [r for r in records.values() if r["status"] == "kept"]
    assert len(kept) >= 4
    for record in kept:
        guards = {j["guard"]: j for j in record["judges"]["guards"]}
        assert set(guards) == {"red-square", "blue-disc"}
        assert not any(j["flagged_after"] for j in guards.values())
        safe = load_image(out / record["files"]["safe"]).pixels
        mask = load_image(out / record["files"]["mask"]).pixels[..., 0] > 127
        assert mask.any() and not np.array_equal(
            safe, load_image(out / record["files"]["unsafe"]).pixels
        )
    plain = records["plain.png"]
    flags = {j["guard"]: j["flagged_before"] for j in plain["judges"]["guards"]}
    assert flags == {"red-square": False, "blue-disc": True}
    assert plain["status"] == "kept", plain["reasons"]


def test_a_guard_still_verifies_alone(unsafe_dir: Path, tmp_path: Path, red_policy: Path) -> None:
    # --guard with a safeview policy file: the file gives the text, the guard verifies.
    out = tmp_path / "pairs"
    summary = make_pairs(
        unsafe_dir, out, "sexually_explicit", make_editor("inpaint"), RedGuard(), policy=red_policy
    )
    assert summary["verified_by"] == {"guard": "red-square"}
    record = next(r for r in read_manifest(out) if r["status"] == "kept")
    assert record["guard"]["target"] == "unsafe" and "judges" not in record
    assert record["scores"]["before"] >= 0.5 > record["scores"]["after"]


def test_which_policy_supplies_the_judges(tmp_path: Path, red_policy: Path) -> None:
    text = tmp_path / "policy.txt"
    text.write_text("No nudity.")
    # An editing-policy text or {'policy', 'instruction'} names no guards: the built-in policy.
    assert safeguarding_policy(text).name == "default"
    assert safeguarding_policy(None).name == safeguarding_policy("default").name == "default"
    assert safeguarding_policy(red_policy).name == str(red_policy)
    built_in = category_judges("sexually-explicit", text)
    assert list(built_in.categories) == ["sexually_explicit"]
    expected = [j.guard for j in load_policy().categories["sexually_explicit"].judges]
    assert [j.guard for _, j in built_in.judges()] == expected and "open-nsfw" in expected
    assert [j.guard for _, j in category_judges("sexually_explicit", red_policy).judges()] == [
        "policy-test-red"
    ]


@pytest.mark.parametrize(
    ("category", "message"),
    [
        ("self_harm", "category self_harm has no guard in policy default"),
        ("red", "category 'red' is not in policy default"),
    ],
)
def test_a_category_nothing_judges_is_refused(
    unsafe_dir: Path, tmp_path: Path, category: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        make_pairs(unsafe_dir, tmp_path / "pairs", category, make_editor("inpaint"))
    assert "--guard" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "pairs").exists()  # refused before anything is written


@pytest.fixture
def mixed_pairs(unsafe_dir: Path, tmp_path: Path, red_policy: Path) -> Path:
    """Red-square pairs of sexually_explicit, and the same pairs again labelled 'symbol'."""
    out = tmp_path / "pairs"
    make_pairs(
        unsafe_dir,
        out,
        "sexually_explicit",
        make_editor("obfuscate", style="fill"),
        policy=red_policy,
    )
    records = read_manifest(out)
    extra = [
        {**r, "pair_id": "symbol-" + r["pair_id"], "category": "symbol"}
        for r in records
        if r["status"] == "kept"
    ][:2]
    with open(out / "pairs.jsonl", "a", encoding="utf-8") as manifest:
        for record in extra:
            manifest.write(json.dumps(record) + "\n")
    return out


def test_policy_judge_uses_each_categorys_guards(
    mixed_pairs: Path, tmp_path: Path, red_policy: Path
) -> None:
    result = evaluate_pairs(mixed_pairs, PolicyJudge(str(red_policy)))
    assert result["judge"] == f"policy {red_policy}"
    assert result["pair_accuracy"] == 1.0 and result["wrong"] == []
    assert set(result["per_category"]) == {"sexually_explicit"}
    assert result["per_category"]["sexually_explicit"]["pairs"] == result["pairs"]
    # Not covered: counted apart, neither right nor wrong.
    assert result["not_covered"] == {"pairs": 2, "per_category": {"symbol": 2}}
    # A policy whose category is judged by the wrong guard: the blue disc stays in both images.
    (tmp_path / "blue").mkdir()
    blue = write_policy(tmp_path / "blue", {"sexually_explicit": [BLUE]})
    wrong = evaluate_pairs(mixed_pairs, PolicyJudge(blue))
    assert wrong["per_category"]["sexually_explicit"]["pair_accuracy"] == 0.0
    assert wrong["safe_specificity"] == 0.0 and wrong["unsafe_recall"] == 1.0


def test_a_policy_covering_no_pair_is_an_error(mixed_pairs: Path, tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    violence_only = write_policy(tmp_path / "v", {"violence": [RED]})
    with pytest.raises(ValueError, match="covers none of the pairs' categories"):
        evaluate_pairs(mixed_pairs, PolicyJudge(violence_only))


def test_pairs_make_and_eval_with_a_policy_from_the_cli(
    unsafe_dir: Path, tmp_path: Path, red_policy: Path
) -> None:
    out = tmp_path / "pairs"
    base = ["pairs", "make", str(unsafe_dir), "-o", str(out), "--policy", str(red_policy)]
    result = runner.invoke(app, [*base, "--category", "violence", "--editor", "inpaint"])
    assert result.exit_code == 2, result.output
    assert "category violence has no guard" in result.output and "--guard" in result.output
    assert not out.exists()
    result = runner.invoke(
        app, [*base, "--category", "sexually_explicit", "--style", "fill", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert f"verified by sexually_explicit of policy {red_policy} (red-square)" in result.output
    result = runner.invoke(app, ["pairs", "eval", str(out), "--policy", str(red_policy), "--json"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation["pair_accuracy"] == 1.0 and evaluation["not_covered"]["pairs"] == 0
    result = runner.invoke(
        app, ["pairs", "eval", str(out), "--policy", str(red_policy), "--guard", "imagenet"]
    )
    assert result.exit_code == 1 and "not both" in result.output


def test_pairs_help_explains_the_policy() -> None:
    result = runner.invoke(app, ["pairs", "make", "--help"], env={"COLUMNS": "200"})
    assert "judges of --category in the policy" in result.output
    result = runner.invoke(app, ["pairs", "eval", "--help"], env={"COLUMNS": "200"})
    assert "not covered" in result.output
