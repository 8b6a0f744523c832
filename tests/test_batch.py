"""Batch runs: layout relative to the input root, the manifest, resuming after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from safeview.batch import Manifest, collect, output_paths, remove_partial_files


def _photos(folder: Path, count: int) -> list[Path]:
    sources = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    paths = []
    for index in range(count):
        sub = folder / ("a" if index % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        image = sources[index % len(sources)][:: 2 + index % 3, :: 2 + index % 3]
        path = sub / f"img{index:02d}.jpg"
        Image.fromarray(np.ascontiguousarray(image)).save(path, quality=90)
        paths.append(path)
    return paths


def test_collect_keeps_relative_paths_refuses_symlinks_and_dedupes(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _photos(root, 3)
    (root / "link.jpg").symlink_to(root / "b" / "img00.jpg")
    other = tmp_path / "other"
    (other / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(other / "b" / "img00.png")
    jobs, errors = collect([str(root), str(other), str(tmp_path / "missing")])
    keys = [job.key for job in jobs]
    assert "a/img01.jpg" in keys and "b/img00.jpg" in keys
    assert "b/img00-2.png" in keys  # same stem from another root: no collision
    link = next(job for job in jobs if job.key == "link.jpg")
    assert link.error and "symbolic link" in link.error
    assert errors == [f"{tmp_path / 'missing'}: no such file or directory"]


def test_outputs_cannot_escape(tmp_path: Path) -> None:
    from safeview.batch import Job
    from safeview.io import ImageInputError

    with pytest.raises(ImageInputError, match="escapes"):
        output_paths(tmp_path / "out", Job("../../etc/x.jpg", None, "x"), ".jpg")


def test_manifest_ignores_a_torn_line_and_partial_files_are_removed(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path)
    manifest.append(
        {"input": "a.jpg", "status": "ok", "output": None, "report": None, "error": None}
    )
    with open(manifest.path, "a") as handle:
        handle.write('{"input": "b.jpg", "sta')  # killed mid-line
    assert list(manifest.load()) == ["a.jpg"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".safeview-abc.tmp").write_bytes(b"half")
    assert remove_partial_files(tmp_path) == 1
    assert not list(tmp_path.rglob("*.tmp"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "safeview.cli", *args]


@pytest.mark.slow
def test_sigkill_midway_then_rerun_finishes_every_input_exactly_once(tmp_path: Path) -> None:
    root = tmp_path / "in"
    paths = _photos(root, 8)
    (root / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    command = _cli("safeguard", str(root), "--guard", "imagenet", "-o", str(out))
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= 3:
            break
        if process.poll() is not None:
            pytest.fail("the run ended before it could be killed")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    from safeview.batch import already_done

    before = Manifest(out).load()
    ok_before = sum(1 for record in before.values() if already_done(record))
    assert 1 <= ok_before < len(paths)

    rerun = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 1  # the broken file fails, every other input succeeds
    assert "broken.jpg" in rerun.stderr
    assert f"skipped {ok_before} input(s)" in rerun.stderr
    # The rerun redid only what the killed run had not finished.
    assert len(rerun.stdout.splitlines()) == len(paths) - ok_before
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    inputs = [line["input"] for line in lines]
    expected = {p.relative_to(root).as_posix() for p in paths} | {"b/broken.jpg"}
    assert sorted(inputs) == sorted(expected)  # every input exactly once
    for line in lines:
        if line["input"] == "b/broken.jpg":
            assert line["status"] == "failed" and "not a recognised image" in line["error"]
            continue
        assert line["status"] == "ok", line
        assert Path(line["output"]).exists() and Path(line["report"]).exists()
        with Image.open(line["output"]) as image:
            image.load()  # a complete, decodable file
    assert not list(out.rglob("*.tmp"))
