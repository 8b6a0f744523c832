"""Clips in memory: read from bytes or a file object and written into a BytesIO, with the same
checks and errors as files, and nothing written to disk."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from safeview.guards.base import scores
from safeview.video import CorruptVideoError, UnsupportedVideoError, VideoTooLargeError, probe_video
from safeview.video.codec import VideoOutputError, VideoWriter, read_frames, sha256_file
from safeview.video.options import VideoOptions
from safeview.video.pipeline import VideoPipeline
from tests.conftest import RedGuard
from tests.video.clips import moving_square_frames, write_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = moving_square_frames(20, present=lambda i: 6 <= i < 14)
    return write_clip(tmp_path_factory.mktemp("memory") / "clip.mp4", frames, audio=True)


def test_bytes_and_file_objects_probe_and_decode_as_the_file_does(clip: Path) -> None:
    data = clip.read_bytes()
    on_disk = probe_video(clip)
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data)):
        info = probe_video(source, name="upload")
        assert info.path is None and info.data == data and info.name == "upload"
        for key in ("container", "codec", "width", "height", "rate", "frames", "duration"):
            assert getattr(info, key) == getattr(on_disk, key), key
        assert info.size_bytes == len(data) and info.audio_codec == "aac"
    memory = [f.pixels for f in read_frames(probe_video(data))]
    disk = [f.pixels for f in read_frames(on_disk)]
    assert len(memory) == 20
    assert all(np.array_equal(a, b) for a, b in zip(memory, disk, strict=True))


def test_bad_bytes_fail_as_bad_files_do(clip: Path) -> None:
    data = clip.read_bytes()
    with pytest.raises(CorruptVideoError, match=r"^upload: empty \(0 bytes\)$"):
        probe_video(b"", name="upload")
    with pytest.raises(UnsupportedVideoError, match="upload: not a recognised video"):
        probe_video(b"not a video at all\n" * 20, name="upload")
    with pytest.raises(UnsupportedVideoError, match="truncated"):
        probe_video(data[: len(data) // 2], name="upload")
    with pytest.raises(VideoTooLargeError, match="exceeds the video size cap of 100"):
        probe_video(io.BytesIO(data), VideoOptions(max_bytes=100), name="upload")
    with pytest.raises(VideoTooLargeError, match="duration cap"):
        probe_video(data, VideoOptions(max_duration=0.1), name="upload")


def test_a_clip_in_memory_is_safeguarded_into_memory(clip: Path, tmp_path: Path) -> None:
    guard = RedGuard()
    sink = io.BytesIO()
    report = VideoPipeline(guard=guard, working_size=96, style="fill").safeguard(
        clip.read_bytes(), sink, name="upload"
    )
    out = sink.getvalue()
    assert out[4:8] == b"ftyp"
    written = probe_video(out)
    assert written.frames == 20 and written.container.startswith("mov,mp4")
    frames = [f.pixels for f in read_frames(written)]
    assert not (scores(guard, frames)[:, 1] >= 0.5).any()
    assert report.flagged and report.success and report.output is None
    assert report.output_format == "MP4" and report.input.name == "upload"
    assert report.input.sha256 == sha256_file(clip)
    assert report.video is not None and report.video.output_codec == "h264"
    assert list(tmp_path.iterdir()) == []


def test_audio_is_copied_from_a_clip_in_memory(clip: Path) -> None:
    sink = io.BytesIO()
    report = VideoPipeline(
        guard=RedGuard(), working_size=96, style="fill", video_options={"audio": "copy"}
    ).safeguard(clip.read_bytes(), sink)
    assert report.video is not None and report.video.audio == "copied"
    assert probe_video(sink.getvalue()).audio_codec == "aac"


def test_an_output_in_memory_stops_at_the_size_cap() -> None:
    rng = np.random.default_rng(0)
    sink = io.BytesIO()
    with pytest.raises(VideoOutputError, match="size cap of 2000 bytes"):  # noqa: SIM117
        with VideoWriter(
            sink, width=64, height=64, rate=Fraction(25), time_base=Fraction(1, 25),
            options=VideoOptions(max_bytes=2000, crf=0, preset="ultrafast"),
        ) as writer:  # fmt: skip
            for i in range(50):
                writer.write(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), i)
            writer.commit()
    assert sink.getvalue() == b""  # nothing handed over
