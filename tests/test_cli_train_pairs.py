"""`safeview train` and `safeview pairs ...` from the command line: bad input, a trained guard
written into a policy (tiny backbone), and (slow, real EfficientNet-Lite0 weights) the whole
SafetyPairs workflow on a synthetic category."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skimage import data
from typer.testing import CliRunner

from safeview.cli import app
from safeview.io import encode_image
from safeview.policy import add_guard, judge_source, resolve_policy
from tests.test_policy import write_policy

runner = CliRunner()


def test_train_bad_inputs(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "none"), "--category", "x"])
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "d" / "cats").mkdir(parents=True)
    result = runner.invoke(app, ["train", str(tmp_path / "d"), "--category", "x"])
    assert result.exit_code == 2 and "found: cats" in result.output
    result = runner.invoke(
        app, ["train", str(tmp_path / "d"), "--category", "x", "--weights", "nope.pt"]
    )
    assert result.exit_code == 2 and "--weights nope.pt does not exist" in result.output
    result = runner.invoke(
        app, ["train", str(tmp_path / "d"), "--category", "x", "--backbone", "vgg"]
    )
    assert result.exit_code == 2


def test_train_checks_the_category_against_the_policy(tmp_path: Path) -> None:
    (tmp_path / "d" / "cats").mkdir(parents=True)
    data = str(tmp_path / "d")
    result = runner.invoke(app, ["train", data, "--category", "gore", "--policy", "default"])
    assert result.exit_code == 2
    assert "'gore' is not a category of policy default" in result.output
    assert "sexually_explicit, violence, weapons" in result.output
    result = runner.invoke(app, ["train", data, "--category", "x", "--policy", "nope.json"])
    assert result.exit_code == 2 and "no such file" in result.output
    # A name the policy reads as its category passes on to the data (its own folder name).
    for name in ("self-harm", "Self Harm", "self_harm"):
        result = runner.invoke(app, ["train", data, "--category", name, "--policy", "default"])
        assert result.exit_code == 2 and "found: cats" in result.output, name


@pytest.fixture
def tiny_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """`safeview train` on the tiny test backbone (tests/train/conftest.py), whatever --backbone."""
    import safeview.train
    from tests.train import conftest  # registers the tiny-test backbone

    assert conftest.tiny_backbone
    original = safeview.train.train_guard

    def tiny(dataset: Any, output: Any, config: Any, **kwargs: Any) -> Any:
        return original(
            dataset, output, dataclasses.replace(config, backbone="tiny-test"), **kwargs
        )

    monkeypatch.setattr(safeview.train, "train_guard", tiny)


def _json(stdout: str) -> Any:
    return json.loads(stdout[stdout.index("{") :])


def test_a_trained_guard_joins_the_policy_and_judges_with_it(
    tmp_path: Path, tiny_training: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.train.conftest import write_dataset

    data = write_dataset(tmp_path / "data")
    policy = write_policy(tmp_path, {})  # no category has a guard
    checkpoint = tmp_path / "models" / "guard.pt"
    result = runner.invoke(
        app,
        ["train", str(data), "--category", "self-harm", "--policy", str(policy), "--probe",
         "-o", str(checkpoint), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = tmp_path / "models" / "guard.policy.json"
    assert _json(result.stdout)["policy_file"] == str(written)
    categories = json.loads(written.read_text())["categories"]
    # The checkpoint beside the policy file, by its file name: the two move together.
    assert categories["self_harm"]["guards"] == [
        {"guard": "guard.pt", "threshold": 0.5, "category": "self-harm"}
    ]
    assert all(c["guards"] == [] for k, c in categories.items() if k != "self_harm")

    # classify with that policy, from another working directory: the checkpoint judges
    # self_harm; the categories without a guard are not covered.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    image = data / "unsafe" / "000.png"
    result = runner.invoke(app, ["classify", str(image), "--policy", str(written), "--json"])
    assert result.exit_code == 0, result.output
    report = _json(result.stdout)
    by_id = {c["id"]: c for c in report["categories"]}
    assert by_id["self_harm"]["covered"] and by_id["self_harm"]["guard"] == "guard.pt"
    assert 0.0 <= by_id["self_harm"]["score_before"] <= 1.0
    assert not by_id["violence"]["covered"]

    # pairs make with it: the checkpoint verifies the self-harm pairs.
    result = runner.invoke(
        app,
        ["pairs", "make", str(data / "unsafe"), "--category", "self-harm", "--policy",
         str(written), "--editor", "inpaint", "-o", str(tmp_path / "pairs"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _json(result.stdout)["verified_by"]["guards"] == ["guard.pt"]


def test_train_without_a_policy(tmp_path: Path, tiny_training: None) -> None:
    from tests.train.conftest import write_dataset

    data = write_dataset(tmp_path / "data")
    # A category of the built-in policy: the built-in policy plus the checkpoint.
    result = runner.invoke(
        app,
        ["train", str(data), "--category", "self-harm", "--probe", "-o", str(tmp_path / "g.pt")],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'g.policy.json'}" in result.stdout
    assert f"--policy {tmp_path / 'g.policy.json'}" in result.stdout
    written = json.loads((tmp_path / "g.policy.json").read_text())["categories"]
    assert written["sexually_explicit"]["guards"][0]["guard"] == "open-nsfw"  # kept
    assert written["self_harm"]["guards"][0]["guard"] == "g.pt"
    # Any other name still trains a guard (for --guard), with a note and no policy file.
    result = runner.invoke(
        app, ["train", str(data), "--category", "red", "--probe", "-o", str(tmp_path / "r.pt")]
    )
    assert result.exit_code == 0, result.output
    assert "not a category of the built-in policy" in result.output
    assert (tmp_path / "r.pt").is_file() and not (tmp_path / "r.policy.json").exists()


def test_add_guard_rewrites_relative_checkpoints(tmp_path: Path) -> None:
    source = tmp_path / "a"
    source.mkdir()
    (source / "old.pt").write_bytes(b"x")
    policy = write_policy(source, {"violence": [{"guard": "old.pt", "category": "violence"}]})
    assert judge_source(resolve_policy(policy), "old.pt") == str(source / "old.pt")
    assert judge_source(resolve_policy(policy), "open-nsfw") == "open-nsfw"
    (tmp_path / "b").mkdir()
    new = tmp_path / "b" / "new.pt"
    new.write_bytes(b"y")
    out = add_guard(policy, "violence and gore", new, "violence", 0.7, tmp_path / "b" / "p.json")
    guards = json.loads(out.read_text())["categories"]["violence"]["guards"]
    assert guards == [
        {"guard": str((source / "old.pt").resolve()), "category": "violence"},  # as it was
        {"guard": "new.pt", "threshold": 0.7, "category": "violence"},
    ]
    # Again: the same guard's judge is replaced, not added twice.
    again = add_guard(out, "violence", new, "violence", 0.6, out)
    guards = json.loads(again.read_text())["categories"]["violence"]["guards"]
    assert [g["guard"] for g in guards][1:] == ["new.pt"] and guards[1]["threshold"] == 0.6
    with pytest.raises(ValueError, match="'gore' is not a category of policy"):
        add_guard(policy, "gore", new, "gore", 0.5, tmp_path / "x.json")


def test_guard_option_refuses_unknown_guards(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(encode_image(np.zeros((8, 8, 3), np.uint8), "PNG"))
    for guard in ("nope.pt", "no-such-guard"):
        result = runner.invoke(app, ["safeguard", str(image), "--guard", guard])
        assert result.exit_code == 2, guard
    assert not (Path("out") / "a.png").exists()


def test_pairs_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    result = runner.invoke(
        app,
        [
            "pairs",
            "make",
            str(tmp_path / "in"),
            "--category",
            "x",
            "--editor",
            "diffusers",
            "-o",
            str(tmp_path / "p"),
        ],
    )
    assert result.exit_code == 2 and "needs --model" in result.output
    result = runner.invoke(app, ["pairs", "eval", str(tmp_path / "in"), "--guard", "open-nsfw"])
    assert result.exit_code == 1 and "no pairs.jsonl" in result.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = runner.invoke(app, ["pairs", "synthetic", str(tmp_path), "-o", str(tmp_path / "full")])
    assert result.exit_code == 2 and "not empty" in result.output
    result = runner.invoke(
        app,
        ["pairs", "augment", str(tmp_path), str(tmp_path), "--category", "x", "--fractions", "0,2"],
    )
    assert result.exit_code == 2 and "--fractions" in result.output


def _photos(folder: Path) -> Path:
    folder.mkdir()
    sources = [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.coins(),
        data.camera(),
        data.immunohistochemistry(),
        data.hubble_deep_field(),
    ]
    count = 0
    for image in sources:
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        rgb = rgb[..., :3]
        height, width = rgb.shape[:2]
        for top, left, flip in (
            (0, 0, False),
            (height // 4, width // 4, True),
            (height // 3, 0, False),
            (0, width // 3, True),
        ):
            crop = rgb[top : top + height // 2 + 40, left : left + width // 2 + 60]
            crop = crop[:, ::-1] if flip else crop
            (folder / f"photo{count:02d}.jpg").write_bytes(encode_image(crop, "JPEG"))
            count += 1
    return folder


@pytest.mark.slow
def test_safetypairs_workflow_end_to_end(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos")
    dataset = tmp_path / "data"
    result = runner.invoke(app, ["pairs", "synthetic", str(photos), "-o", str(dataset)])
    assert result.exit_code == 0, result.output
    assert len(list((dataset / "symbol").iterdir())) == 16

    guard = tmp_path / "guard.pt"
    result = runner.invoke(
        app, ["train", str(dataset), "--category", "symbol", "--probe", "-o", str(guard), "--json"]
    )
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout[result.stdout.index("{") :])
    assert trained["kind"] == "probe" and trained["split"] == {"train": 24, "val": 4, "test": 4}
    assert 0.0 <= trained["metrics"]["test"]["accuracy"] <= 1.0

    result = runner.invoke(
        app,
        [
            "safeguard",
            str(dataset / "symbol"),
            "--guard",
            str(guard),
            "-o",
            str(tmp_path / "out"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 16 and {r["guard"]["name"] for r in reports} == {"guard.pt"}

    pairs = tmp_path / "pairs"
    result = runner.invoke(
        app,
        [
            "pairs",
            "make",
            str(dataset / "symbol"),
            "--category",
            "symbol",
            "--guard",
            str(guard),
            "--editor",
            "obfuscate",
            "-o",
            str(pairs),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["sources"] == 16 and summary["kept"] >= 1
    records = [json.loads(line) for line in (pairs / "pairs.jsonl").read_text().splitlines()]
    assert len(records) == 16
    assert all(
        r["verification"]["measure"].startswith("SSIM") for r in records if "verification" in r
    )

    result = runner.invoke(app, ["pairs", "eval", str(pairs), "--guard", str(guard), "--json"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    # The verifying guard is right on every pair by construction: that is what "kept" means.
    assert evaluation["pair_accuracy"] == 1.0 and evaluation["pairs"] == summary["kept"]
    result = runner.invoke(app, ["pairs", "eval", str(pairs), "--guard", "open-nsfw"])
    assert result.exit_code == 0 and "open-nsfw on" in result.stdout and "symbol" in result.stdout

    result = runner.invoke(
        app,
        [
            "pairs",
            "augment",
            str(dataset),
            str(pairs),
            "--category",
            "symbol",
            "-o",
            str(tmp_path / "aug"),
            "--fractions",
            "0.5,1",
            "--seeds",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "aug").iterdir()} == {
        "augment.json",
        "augment.md",
        "augment.png",
    }
    table = json.loads((tmp_path / "aug" / "augment.json").read_text())["table"]
    assert [row["fraction"] for row in table] == [0.5, 1.0]
