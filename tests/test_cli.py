"""The command line on good and bad inputs: exit codes, error lines, what is written."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from safeview.cli import app
from safeview.report import SCHEMA_VERSION

runner = CliRunner()


def _write_jpeg(path: Path, pixels: np.ndarray, gps: bool = False) -> None:
    image = Image.fromarray(pixels)
    exif = image.getexif()
    if gps:
        exif[0x010F] = "CameraMaker"
        exif[0x8825] = {1: "N", 2: (1.0, 2.0, 3.0)}
    image.save(path, format="JPEG", exif=exif)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    _write_jpeg(folder / "cat.jpg", data.chelsea(), gps=True)
    _write_jpeg(folder / "sub" / "coffee.jpg", data.coffee()[::2, ::2])
    (folder / "notimage.jpg").write_bytes(b"hello")
    (folder / "empty.png").write_bytes(b"")
    good = (folder / "cat.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    return folder


def test_help_lists_the_interface() -> None:
    result = runner.invoke(app, ["safeguard", "--help"])
    assert result.exit_code == 0
    for option in (
        "--guard",
        "--attribution",
        "--segmenter",
        "--style",
        "--threshold",
        "--max-regions",
        "--no-prune",
        "--on-failure",
        "--viz",
        "--json",
        "-o",
    ):
        assert option in result.output


@pytest.mark.slow
def test_safeguard_good_and_bad_inputs(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "safeguard",
            str(inputs / "cat.jpg"),
            str(inputs / "notimage.jpg"),
            str(inputs / "empty.png"),
            str(inputs / "truncated.jpg"),
            str(tmp_path / "missing.jpg"),
            "--guard",
            "imagenet",
            "--viz",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4
    for name in ("notimage.jpg", "empty.png", "truncated.jpg", "missing.jpg"):
        assert any(name in line for line in errors), name
    # Only the good input produced files; nothing half-written, no temp files.
    assert sorted(p.name for p in out.iterdir()) == [
        "cat.jpg",
        "cat.json",
        "cat.viz.png",
        "manifest.jsonl",
    ]
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(m["input"], m["status"]) for m in manifest] == [
        ("cat.jpg", "ok"),
        ("notimage.jpg", "failed"),
        ("empty.png", "failed"),
        ("truncated.jpg", "failed"),
    ]
    report = json.loads((out / "cat.json").read_text())
    assert report["schema_version"] == SCHEMA_VERSION and report["flagged"] is True
    assert report["output"].endswith("cat.jpg")
    written = (out / "cat.jpg").read_bytes()
    assert b"CameraMaker" not in written
    with Image.open(io.BytesIO(written)) as image:
        assert image.size == (451, 300) and not image.getexif()


@pytest.mark.slow
def test_folder_keeps_relative_paths_and_json_lines(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for bad in ("notimage.jpg", "empty.png", "truncated.jpg"):
        (inputs / bad).unlink()
    result = runner.invoke(
        app, ["safeguard", str(inputs), "--guard", "imagenet", "--json", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2
    assert (out / "cat.jpg").exists() and (out / "sub" / "coffee.jpg").exists()


@pytest.mark.slow
def test_on_failure_error_writes_no_image(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "safeguard",
            str(inputs / "cat.jpg"),
            "--guard",
            "imagenet",
            "--search",
            "greedy",
            "--max-regions",
            "1",
            "--segmenter",
            "watershed",
            "--on-failure",
            "error",
            "-o",
            str(out),
        ],
    )
    report = json.loads((out / "cat.json").read_text())
    if report["success"]:
        pytest.fail("one watershed region flipped the cat; pick a harder case")
    assert result.exit_code == 1
    assert not (out / "cat.jpg").exists()
    assert report["fallback"] == "error" and report["output"] is None


def test_empty_folder_and_no_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["safeguard", str(tmp_path / "empty"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "no images found" in result.stderr
    assert not (tmp_path / "o").exists()
    result = runner.invoke(app, ["safeguard", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2


@pytest.mark.slow
def test_refuses_to_overwrite_the_input(inputs: Path) -> None:
    before = (inputs / "cat.jpg").read_bytes()
    result = runner.invoke(
        app, ["safeguard", str(inputs / "cat.jpg"), "--guard", "imagenet", "-o", str(inputs)]
    )
    assert result.exit_code == 1
    assert "overwrite the input" in result.stderr
    assert (inputs / "cat.jpg").read_bytes() == before


@pytest.mark.slow
def test_classify_table_and_json(inputs: Path) -> None:
    # The default: every category of the built-in policy, self_harm not covered.
    result = runner.invoke(app, ["classify", str(inputs / "cat.jpg"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["policy"] == "default" and report["flagged"] is False
    categories = {c["id"]: c for c in report["categories"]}
    assert {"sexually_explicit", "violence", "weapons", "cyberbullying"} <= set(categories)
    assert set(report["scores_before"]) == {k for k, c in categories.items() if c["covered"]}
    assert not categories["self_harm"]["covered"]
    table = runner.invoke(app, ["classify", str(inputs / "cat.jpg")]).stdout
    assert "policy: default" in table and "(not covered)" in table  # the table wraps lines
    # One guard: its own scores; a bad input fails alone.
    one = ["classify", "--guard", "open-nsfw", str(inputs / "cat.jpg"), str(inputs / "empty.png")]
    result = runner.invoke(app, one)
    assert result.exit_code == 1
    assert "sfw 1.000, nsfw 0.000" in result.stdout and "empty file" in result.stderr


def test_bad_segmenter_option_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "safeguard",
            "x.jpg",
            "--segmenter",
            "slic",
            "--segmenter-option",
            "n_segmentz=4",
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2
    assert "bad option" in result.stderr
    result = runner.invoke(
        app, ["safeguard", "x.jpg", "--segmenter-option", "novalue", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr
    assert not (tmp_path / "o").exists()


def test_search_options_are_checked_before_any_input_is_read(tmp_path: Path) -> None:
    out = tmp_path / "o"
    for option, expected in (
        ("climb_prune_within=-1", "climb_prune_within must be >= 0"),
        ("prune_pases=100", "bad option for search"),
        ("prune_passes", "search option 'prune_passes' is not KEY=VALUE"),
    ):
        result = runner.invoke(
            app, ["safeguard", "x.jpg", "--search-option", option, "-o", str(out)]
        )
        assert result.exit_code == 2, result.output
        assert expected in result.stderr
        assert not out.exists()


def test_search_option_values_parse_as_numbers_booleans_and_null() -> None:
    from safeview.cli.common import parse_options

    assert parse_options(["prune_passes=null", "fine_budget=8", "climb_above=0.2"], "search") == {
        "prune_passes": None,
        "fine_budget": 8,
        "climb_above": 0.2,
    }
    assert parse_options(["prune=false", "x=None"]) == {"prune": False, "x": None}


@pytest.mark.slow
def test_bass_guided_from_the_cli(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "safeguard",
            str(inputs / "cat.jpg"),
            "--guard",
            "imagenet",
            "--segmenter",
            "bass-guided",
            "--segmenter-option",
            "n_segments=30",
            "--json",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["segmenter"] == "bass-guided"
    assert report["segmenter_options"] == {"n_segments": 30}
    assert report["n_regions"] >= 5


@pytest.mark.parametrize("command", ["classify", "explain"])
def test_malformed_multipage_tiff_is_one_error_line(tmp_path: Path, command: str) -> None:
    from tests.test_batch_safety import _malformed_tiff

    path = tmp_path / "bad.tif"
    path.write_bytes(_malformed_tiff())
    result = runner.invoke(app, [command, str(path)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}: ")


@pytest.mark.parametrize("value", ["1", "0", "1.5"])
def test_threshold_outside_the_open_interval_is_a_usage_error(tmp_path: Path, value: str) -> None:
    result = runner.invoke(
        app, ["safeguard", "--demo", "--threshold", value, "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "threshold" in result.output
    assert not (tmp_path / "o").exists()


def test_unknown_search_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["safeguard", "--demo", "--search", "best", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "best" in result.output


def test_a_registered_segmenter_is_accepted_by_the_cli(tmp_path: Path) -> None:
    from safeview.guards import register_guard
    from safeview.segmentation import register_segmenter
    from tests.conftest import RedGuard, red_square_image

    class Quadrants:
        name = "cli-test-quadrants"

        def segment(self, image: np.ndarray, attribution: np.ndarray | None = None) -> np.ndarray:
            height, width = image.shape[:2]
            ys, xs = np.mgrid[0:height, 0:width]
            return ((ys * 4 // height) * 4 + xs * 4 // width).astype(np.int32)

    register_segmenter("cli-test-quadrants", lambda: Quadrants())
    register_guard("cli-test-red", lambda device: RedGuard())
    Image.fromarray(red_square_image()).save(tmp_path / "red.png")
    result = runner.invoke(
        app,
        [
            "safeguard",
            str(tmp_path / "red.png"),
            "--guard",
            "cli-test-red",
            "--segmenter",
            "cli-test-quadrants",
            "--style",
            "fill",
            "--json",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["segmenter"] == "cli-test-quadrants" and report["n_regions"] == 16
    assert report["success"]


@pytest.mark.parametrize(
    ("option", "value"),
    [("--segmenter", "nope"), ("--style", "smudge"), ("--attribution", "nope")],
)
def test_unregistered_names_are_usage_errors(tmp_path: Path, option: str, value: str) -> None:
    result = runner.invoke(app, ["safeguard", "--demo", option, value, "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and value in result.output and "available" in result.output
    assert not (tmp_path / "o").exists()
