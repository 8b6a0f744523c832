"""A clip end to end, with the tiny red guard: what is hidden, what is kept, what is reported."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from safeview.guards.base import scores
from safeview.report import JSON_SCHEMA, SCHEMA_VERSION, Report
from safeview.video import VideoPipeline, classify_video, safeguard_video
from tests.conftest import RedGuard
from tests.video.clips import moving_square_frames, read_clip, red_square_at, write_clip


@pytest.fixture(scope="module")
def guard() -> RedGuard:
    return RedGuard()


def _flagged(guard: RedGuard, frames: list[np.ndarray]) -> np.ndarray:
    return scores(guard, frames)[:, 1] >= 0.5


def test_the_moving_square_is_hidden_on_every_frame_and_the_rest_is_kept(
    guard: RedGuard, tmp_path: Path
) -> None:
    frames = moving_square_frames(40, present=lambda i: 10 <= i < 30)
    source = write_clip(tmp_path / "clip.mp4", frames)
    decoded, before = read_clip(source)
    assert _flagged(guard, decoded).sum() == 20
    out = tmp_path / "out" / "clip.mp4"
    seen: dict[int, np.ndarray | None] = {}
    report = VideoPipeline(guard=guard, working_size=96).safeguard(
        source, out, on_frame=lambda index, pixels, mask: seen.__setitem__(index, mask)
    )

    written, after = read_clip(out)
    # Frame rate, size, frame count and timestamps are the source's.
    for key in ("fps", "width", "height", "frames", "times"):
        assert after[key] == before[key], key
    # The guard fires on no output frame.
    assert not _flagged(guard, written).any()
    # One span: the flagged samples 10..25, extended to the frames after sample 5 and before 30.
    video = report.video
    assert video is not None and len(video.spans) == 1
    span = video.spans[0]
    assert (span.start_frame, span.end_frame) == (6, 29)
    assert span.start_time == pytest.approx(0.24) and span.end_time == pytest.approx(1.2)
    assert span.success and span.fallback is None and span.categories == ["unsafe"]
    assert span.key_frames[0] == 6 and span.key_frames[-1] == 29
    assert [entry["frame"] for entry in span.regions] == span.key_frames
    flipped = [entry for entry in span.regions if entry["flagged"]]
    assert flipped and all(e["flipped"] and e["regions"] >= 1 and e["bbox"] for e in flipped)
    assert span.verification["frames"] >= 6 and span.verification["flagged"] == 0
    assert span.verification["encoded_frames"] == span.verification["frames"]
    assert span.verification["encoded_flagged"] == 0
    assert span.scores_before["unsafe"] > 0.5 and span.scores_after is not None
    assert span.scores_after["unsafe"] < 0.5
    assert 0 < span.obfuscated_fraction < 0.35 and span.mask_iou is not None
    # Frames outside the span are the source's, up to re-encoding; none carries a mask.
    outside = [i for i in range(40) if not 6 <= i <= 29]
    assert all(seen[i] is None for i in outside)
    for i in outside:
        assert np.abs(written[i].astype(int) - decoded[i].astype(int)).mean() < 2.0, i
    # Inside, the masks cover the square and leave most of the frame as it was.
    for i in range(10, 30):
        mask = seen[i]
        assert mask is not None and mask.mean() < 0.4
        kept = ~mask
        assert np.abs(written[i].astype(int) - decoded[i].astype(int))[kept].mean() < 3.0, i
    # The report: flagged, hidden, verified; JSON with the schema's keys, read back whole.
    assert report.flagged and report.success and report.fallback is None
    assert report.scores_after is not None and report.scores_after["unsafe"] < 0.5
    assert video.frames == 40 and video.fps == 25.0 and video.audio == "none"
    assert video.frames_unchanged == 16 and video.frames_blurred_whole == 0
    assert report.output == str(out) and report.input.format == "MP4"
    data = report.to_dict()
    assert data["schema_version"] == SCHEMA_VERSION
    for key in JSON_SCHEMA["required"]:
        assert key in data
    for key in JSON_SCHEMA["properties"]["video"]["required"]:
        assert key in data["video"]
    assert Report.from_dict(data).video == report.video
    # Nothing but the output in its folder: no temporary file, no frame written anywhere.
    assert [p.name for p in out.parent.iterdir()] == ["clip.mp4"]


def test_a_clip_with_nothing_flagged_is_re_encoded_unchanged(
    guard: RedGuard, tmp_path: Path
) -> None:
    frames = moving_square_frames(20, present=lambda i: False)
    source = write_clip(tmp_path / "safe.mp4", frames, title="secret-title")
    report = safeguard_video(source, tmp_path / "out.mp4", guard=guard)
    written, facts = read_clip(tmp_path / "out.mp4")
    decoded, _ = read_clip(source)
    assert not report.flagged and report.success and report.video is not None
    assert report.video.spans == [] and report.video.frames_unchanged == 20
    assert report.obfuscated_fraction == 0.0 and facts["frames"] == 20
    assert (
        max(
            np.abs(a.astype(int) - b.astype(int)).mean()
            for a, b in zip(written, decoded, strict=True)
        )
        < 2
    )
    # Metadata stripped: the source's title is nowhere in the output.
    assert "title" not in facts["metadata"]
    assert b"secret-title" not in (tmp_path / "out.mp4").read_bytes()


def test_audio_is_dropped_by_default_and_copied_when_asked(guard: RedGuard, tmp_path: Path) -> None:
    source = write_clip(
        tmp_path / "sound.mp4", moving_square_frames(10, present=lambda i: False), audio=True
    )
    dropped = safeguard_video(source, tmp_path / "dropped.mp4", guard=guard)
    assert read_clip(tmp_path / "dropped.mp4")[1]["audio"] == 0
    assert dropped.video is not None and dropped.video.audio == "dropped"
    assert dropped.video.audio_codec == "aac"
    assert any("audio dropped" in warning for warning in dropped.warnings)
    copied = safeguard_video(
        source, tmp_path / "copied.mp4", guard=guard, video_options={"audio": "copy"}
    )
    assert read_clip(tmp_path / "copied.mp4")[1]["audio"] == 1
    assert copied.video is not None and copied.video.audio == "copied"


def test_a_span_that_cannot_be_verified_is_blurred_whole_and_reported(
    guard: RedGuard, tmp_path: Path
) -> None:
    frames = moving_square_frames(30, present=lambda i: 10 <= i < 20)
    source = write_clip(tmp_path / "clip.mp4", frames)
    decoded, _ = read_clip(source)
    # One small region cannot hide the square: every key frame's search fails.
    report = safeguard_video(
        source,
        tmp_path / "out.mp4",
        guard=guard,
        working_size=96,
        search="greedy",
        max_regions=1,
        segmenter="slic",
        segmenter_options={"n_segments": 300, "compactness": 10},
    )
    written, _ = read_clip(tmp_path / "out.mp4")
    assert not _flagged(guard, written).any()
    assert report.flagged and not report.success and report.fallback == "blur-all"
    assert report.video is not None
    (span,) = report.video.spans
    assert span.fallback == "blur-all" and not span.success and span.searches_failed
    covered = set()
    for stretch in span.fallback_ranges:
        assert stretch["start_time"] == pytest.approx(stretch["start_frame"] / 25)
        assert stretch["end_time"] == pytest.approx((stretch["end_frame"] + 1) / 25)
        assert "no flip" in stretch["reason"]
        covered.update(range(stretch["start_frame"], stretch["end_frame"] + 1))
    assert covered == set(range(span.start_frame, span.end_frame + 1))
    assert report.video.frames_blurred_whole == len(covered)
    # Blurred whole: the texture of the sky is gone everywhere in those frames.
    for i in covered:
        assert written[i][:20, :20, 1].std() < 0.5 * decoded[i][:20, :20, 1].std(), i


def test_rotation_metadata_is_applied_to_the_pixels(guard: RedGuard, tmp_path: Path) -> None:
    frames = moving_square_frames(6, height=48, width=64, side=8, present=lambda i: False)
    for frame in frames:
        frame[:8, :16] = (255, 255, 0)  # a yellow bar at the top left of the stored frame
    source = write_clip(tmp_path / "turned.mp4", frames, rotation=90)
    report = safeguard_video(source, tmp_path / "upright.mp4", guard=guard)
    written, facts = read_clip(tmp_path / "upright.mp4")
    assert (facts["width"], facts["height"]) == (48, 64)
    assert report.video is not None and report.video.rotation == 90
    assert (report.input.width, report.input.height) == (48, 64)
    assert any("rotation" in note for note in report.input.notes)
    expected = np.rot90(frames[0], 1)
    assert np.abs(written[0].astype(int) - expected.astype(int)).mean() < 4
    import av

    with av.open(str(tmp_path / "upright.mp4")) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation == 0


def test_a_variable_frame_rate_keeps_every_timestamp(guard: RedGuard, tmp_path: Path) -> None:
    frames = moving_square_frames(12, present=lambda i: False)
    stamps = [0, 80, 120, 200, 240, 320, 360, 440, 480, 560, 600, 680]
    source = write_clip(
        tmp_path / "vfr.mkv", frames, container="matroska", pts=stamps, time_base=Fraction(1, 1000)
    )
    report = safeguard_video(source, tmp_path / "out.mkv", guard=guard)
    _, facts = read_clip(tmp_path / "out.mkv")
    assert facts["times"] == pytest.approx([s / 1000 for s in stamps], abs=1e-3)
    assert report.video is not None and report.video.variable_frame_rate
    assert report.video.duration == pytest.approx(0.72, abs=0.05)


def test_classify_gives_scores_per_segment(guard: RedGuard, tmp_path: Path) -> None:
    frames = moving_square_frames(40, present=lambda i: 10 <= i < 30)
    source = write_clip(tmp_path / "clip.mp4", frames)
    report = classify_video(source, guard=guard)
    assert report.flagged and report.video is not None and report.output is None
    assert [(s.start_frame, s.end_frame, s.flagged) for s in report.video.segments] == [
        (0, 9, False),
        (10, 29, True),
        (30, 39, False),
    ]
    flagged = report.video.segments[1]
    assert flagged.start_time == pytest.approx(0.4) and flagged.scores["unsafe"] > 0.5
    assert report.video.samples == 9 and report.video.flagged_samples == 4
    assert report.video.spans == [] and report.scores_after is None


def test_a_large_frame_is_searched_on_its_view_and_hidden_at_full_size(
    guard: RedGuard, tmp_path: Path
) -> None:
    frames = moving_square_frames(24, height=192, width=320, side=64, present=lambda i: 5 <= i < 20)
    source = write_clip(tmp_path / "large.mp4", frames)
    pipeline = VideoPipeline(guard=guard, working_size=96)
    # The guard's input is 64 px: the guards (and the key frames' searches) get the frames
    # shrunk by 2 (3 would leave the sides indivisible), at least as large as its input.
    assert pipeline.view_factor(192, 320) == 2 and pipeline.view_factor(96, 160) == 1
    assert pipeline.view(frames[0]).shape == (96, 160, 3)
    seen: dict[int, np.ndarray | None] = {}
    report = pipeline.safeguard(
        source, tmp_path / "out.mp4", on_frame=lambda i, pixels, mask: seen.__setitem__(i, mask)
    )
    written, _ = read_clip(tmp_path / "out.mp4")
    decoded, _ = read_clip(source)
    assert _flagged(guard, decoded).sum() == 15 and not _flagged(guard, written).any()
    assert report.success and report.video is not None
    (span,) = report.video.spans
    assert span.success and span.verification["flagged"] == 0
    for entry in span.regions:
        if entry["flipped"] and entry["bbox"]:
            x0, y0, x1, y1 = entry["bbox"]  # full-size coordinates
            assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 192
    for i in range(5, 20):
        mask = seen[i]
        assert mask is not None and mask.shape == (192, 320) and mask.mean() < 0.4
        row, col = red_square_at(i, 192, 320, 64)
        assert mask[row + 32, col + 32]  # the square's centre is covered
