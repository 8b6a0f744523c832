"""Videos in batch folders (mixed with images, resumable) and on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from safeview.batch import collect, run_local
from safeview.cli import app
from safeview.guards import register_guard
from safeview.options import SafeguardOptions
from tests.conftest import RedGuard, red_square_image
from tests.video.clips import moving_square_frames, read_clip, write_clip

runner = CliRunner()
GUARD = "video-test-red"
register_guard(GUARD, lambda device: RedGuard())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "clips").mkdir(parents=True)
    Image.fromarray(red_square_image()).save(root / "photo.png")
    write_clip(root / "clips" / "clip.mp4", moving_square_frames(30, present=lambda i: 8 <= i < 20))
    (root / "clips" / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 broken")
    return root


def test_a_folder_of_images_and_videos_is_safeguarded_and_resumed(
    folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    options = SafeguardOptions(guard=GUARD, working_size=96)
    jobs, errors = collect([str(folder)], out=out)
    assert errors == [] and [job.key for job in jobs] == [
        "photo.png", "clips/broken.mkv", "clips/clip.mp4",
    ]  # fmt: skip
    stages: set[str] = set()
    outcomes = run_local(jobs, out, options, False, on_progress=lambda s, d, t: stages.add(s))
    status = {o.job.key: o.record["status"] for o in outcomes}
    assert status == {"photo.png": "ok", "clips/broken.mkv": "failed", "clips/clip.mp4": "ok"}
    assert {"analysing", "obfuscating", "checking"} <= stages
    broken = next(o for o in outcomes if o.job.key == "clips/broken.mkv")
    assert "broken.mkv" in broken.record["error"]
    assert sorted(p.name for p in (out / "clips").iterdir()) == ["clip.json", "clip.mp4"]
    report = json.loads((out / "clips" / "clip.json").read_text())
    assert report["video"]["spans"] and report["success"]
    assert read_clip(out / "clips" / "clip.mp4")[1]["frames"] == 30
    # A rerun with the same settings skips what is done; other video options redo the video.
    again = run_local(collect([str(folder)], out=out)[0], out, options, False)
    assert [o.skipped for o in again] == [True, False, True]
    changed = options.replace(video_options={"sample_every": 3})
    redone = run_local(collect([str(folder)], out=out)[0], out, changed, False)
    assert [o.skipped for o in redone] == [False, False, False]
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_the_command_line_writes_the_clip_and_its_report(folder: Path, tmp_path: Path) -> None:
    clip = folder / "clips" / "clip.mp4"
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["safeguard", str(clip), "--guard", GUARD, "-o", str(out), "--json",
              "--video-option", "key_every=6", "--viz"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "clip.json", "clip.mp4", "clip.viz.png", "manifest.jsonl",
    ]  # fmt: skip
    strip = np.asarray(Image.open(out / "clip.viz.png"))
    assert strip.shape[0] > 120 and strip.shape[1] > 4 * 200  # a caption over 8 frames
    report = json.loads(result.stdout)
    assert report["visualization"] == str(out / "clip.viz.png")
    assert report["video"]["frames"] == 30 and report["video"]["audio"] == "none"
    assert report["output"] == str(out / "clip.mp4") and report["success"]

    result = runner.invoke(app, ["classify", str(clip), "--guard", GUARD, "--json"])
    assert result.exit_code == 0, result.output
    segments = json.loads(result.stdout)["video"]["segments"]
    assert [segment["flagged"] for segment in segments] == [False, True, False]

    result = runner.invoke(app, ["classify", str(clip), "--guard", GUARD])
    assert result.exit_code == 0 and "0.40-0.80 s]" in result.stdout

    result = runner.invoke(
        app, ["safeguard", str(clip), "--guard", GUARD, "-o", str(out), "--video-option", "fps"]
    )
    assert result.exit_code == 2 and "not KEY=VALUE" in result.stderr
