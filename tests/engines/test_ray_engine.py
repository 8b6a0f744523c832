"""``--engine ray`` on a local Ray (ray.init() on this machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from safeview.report import SCHEMA_VERSION
from tests.test_batch import _photos


def _safeguard(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``safeview safeguard ARGS`` in a subprocess (Ray needs a process of its own)."""
    return subprocess.run(
        [sys.executable, "-m", "safeview.cli", "safeguard", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
    )


@pytest.mark.slow
def test_ray_engine_processes_every_file_and_reports_bad_ones(tmp_path: Path) -> None:
    root = tmp_path / "in"
    paths = _photos(root, 4)
    (root / "a" / "truncated.jpg").write_bytes(paths[0].read_bytes()[:500])
    out = tmp_path / "out"
    result = _safeguard(
        str(root), "--guard", "imagenet", "--engine", "ray", "--workers", "2", "-o", str(out)
    )
    assert result.returncode == 1, result.stderr[-2000:]  # the truncated file failed
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    by_input = {line["input"]: line for line in lines}
    assert len(lines) == len(by_input) == 5
    bad = by_input["a/truncated.jpg"]
    assert bad["status"] == "failed" and "truncated" in bad["error"]
    for path in paths:
        line = by_input[path.relative_to(root).as_posix()]
        assert line["status"] == "ok", line
        assert Path(line["output"]).exists()
        report = json.loads(Path(line["report"]).read_text())
        assert report["schema_version"] == SCHEMA_VERSION and report["guard"]["name"] == "imagenet"
    # A rerun finds everything done and repeats only the failure.
    again = _safeguard(
        str(root), "--guard", "imagenet", "--engine", "ray", "--workers", "1", "-o", str(out)
    )
    assert "skipped 4 input(s)" in again.stderr
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 5


@pytest.mark.slow
def test_ray_engine_with_a_trained_guard_given_as_a_relative_path(tmp_path: Path) -> None:
    from safeview.train import TrainConfig, find_dataset, train_guard
    from tests.train.conftest import write_dataset

    data = find_dataset(write_dataset(tmp_path / "data", n=6), "red")
    train_guard(data, tmp_path / "guard.pt", TrainConfig("red", probe=True))  # EfficientNet-Lite0
    out = tmp_path / "out"
    # guard.pt is relative to our working directory, not the Ray workers'.
    result = _safeguard(
        "data/unsafe",
        "--guard",
        "guard.pt",
        "--engine",
        "ray",
        "--workers",
        "1",
        "-o",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all(line["status"] == "ok" for line in lines)
    report = json.loads(Path(lines[0]["report"]).read_text())
    assert report["guard"]["name"] == "guard.pt" and report["guard"]["target"] == "red"
