"""``--engine ray`` on a local Ray (ray.init() on this machine)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from safeview.engines.ray_engine import TEMP_PREFIX
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


def _scan(
    root: Path, needles: dict[str, list[bytes]], seen: dict[Path, tuple[int, int]]
) -> set[str]:
    """Names of the inputs whose needles occur in a file under ``root`` (files over 1 MB, each
    read again only when its size or mtime changed)."""
    found = set()
    for path in root.rglob("*"):
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode) or info.st_size < 1_000_000:
                continue
            if seen.get(path) == (info.st_size, info.st_mtime_ns):
                continue
            seen[path] = (info.st_size, info.st_mtime_ns)
            content = path.read_bytes()
        except OSError:  # removed meanwhile
            continue
        found |= {name for name, ns in needles.items() if any(n in content for n in ns)}
    return found


@pytest.mark.slow
def test_ray_engine_never_puts_originals_in_the_object_store_or_its_spill_files(
    tmp_path: Path,
) -> None:
    """Issue 11: large noise PNGs and a tiny object store made Ray spill the inputs' bytes to
    ``ray_spilled_objects_*`` files. Every file under Ray's temp dir is searched for a piece of
    each input's file bytes and of its pixels, while the job runs and after it."""
    root = tmp_path / "in"
    root.mkdir()
    rng = np.random.default_rng(11)
    needles: dict[str, list[bytes]] = {}
    for index in range(5):
        pixels = rng.integers(0, 256, (3500, 3500, 3), dtype=np.uint8)
        path = root / f"noise{index}.png"
        Image.fromarray(pixels).save(path, compress_level=0)
        data = path.read_bytes()
        middle = len(data) // 2
        needles[path.name] = [data[middle : middle + 64], pixels[1750, 1000:1022].tobytes()]
    # Ray's own temp root: short (Unix socket paths), and everything Ray writes goes below it.
    scratch = Path(tempfile.mkdtemp(prefix="svr", dir="/tmp"))
    store = 80 * 1024 * 1024  # Ray refuses one under 75 MiB; it takes a share of available memory
    env = dict(
        os.environ,
        RAY_TMPDIR=str(scratch),
        TMPDIR=str(scratch),
        RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION=str(store / psutil.virtual_memory().available),
    )
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "safeview.cli", "safeguard", str(root), "-o", str(out)]
    command += ["--guard", "imagenet", "--engine", "ray", "--workers", "2"]
    found: set[str] = set()
    seen: dict[Path, tuple[int, int]] = {}
    modes: dict[Path, int] = {}
    try:
        with subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        ) as driver:
            deadline = time.monotonic() + 600
            while driver.poll() is None and time.monotonic() < deadline:
                found |= _scan(scratch, needles, seen)
                for private in scratch.glob(f"{TEMP_PREFIX}*"):  # ours; Ray's temp dir inside
                    for folder in (private, private / "spill"):
                        with contextlib.suppress(OSError):
                            modes[folder] = stat.S_IMODE(folder.stat().st_mode)
                time.sleep(0.2)
            driver.kill()
            stderr = driver.stderr.read() if driver.stderr else ""
        found |= _scan(scratch, needles, seen)
        assert driver.returncode == 0, stderr[-3000:]
        assert not found, f"originals found under Ray's temp dir: {sorted(found)}"
        lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert sorted(line["input"] for line in lines) == sorted(needles)
        assert all(line["status"] == "ok" for line in lines), lines
        # Ray ran in our private folders (0700), and they are gone.
        assert len(modes) == 2 and set(modes.values()) == {0o700}, modes
        # No session, log or spill file left behind, nor Ray's default /tmp/ray there.
        assert not list(scratch.glob(f"{TEMP_PREFIX}*")) and not (scratch / "ray").exists()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.slow
def test_ray_engine_safeguards_videos_beside_images(tmp_path: Path) -> None:
    """Issue 15: a video in a Ray batch is read by the actor from its path and written by it,
    like an image (the default policy: open_nsfw flags nothing here, the clip is re-encoded)."""
    from tests.video.clips import moving_square_frames, write_clip

    root = tmp_path / "in"
    paths = _photos(root, 1)
    write_clip(root / "clip.mp4", moving_square_frames(12, present=lambda i: False), audio=True)
    out = tmp_path / "out"
    result = _safeguard(str(root), "--engine", "ray", "--workers", "1", "-o", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = {
        line["input"]: line
        for line in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())
    }
    assert set(lines) == {paths[0].relative_to(root).as_posix(), "clip.mp4"}
    assert lines["clip.mp4"]["status"] == "ok" and lines["clip.mp4"]["output"].endswith("clip.mp4")
    report = json.loads((out / "clip.json").read_text())
    assert report["video"]["frames"] == 12 and report["video"]["audio"] == "dropped"
    assert not report["flagged"] and report["policy"] == "default"
