"""`safeview train` and `safeview pairs ...` from the command line: bad input, and (slow, real
EfficientNet-Lite0 weights) the whole SafetyPairs workflow on a synthetic category."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage import data
from typer.testing import CliRunner

from safeview.cli import app
from safeview.io import encode_image

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
