"""Bad clips: a one-line error naming the input, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeview.video import (
    CorruptVideoError,
    UnsupportedVideoError,
    VideoInputError,
    VideoTooLargeError,
    is_video_path,
    probe_video,
    safeguard_video,
)
from safeview.video.options import VideoOptions
from tests.conftest import RedGuard
from tests.video.clips import moving_square_frames, write_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    frames = moving_square_frames(25, present=lambda i: 5 <= i < 20)
    mp4 = write_clip(folder / "good.mp4", frames)
    mkv = write_clip(folder / "good.mkv", frames, container="matroska")
    bad: dict[str, Path] = {"good.mp4": mp4}
    for source, cut in ((mp4, 0.5), (mkv, 0.5), (mkv, 0.9)):
        data = source.read_bytes()
        path = folder / f"truncated-{int(cut * 100)}{source.suffix}"
        path.write_bytes(data[: int(len(data) * cut)])
        bad[path.name] = path
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("not a video at all\n" * 20)
    bad["empty.mp4"] = folder / "empty.mp4"
    bad["text.mp4"] = folder / "text.mp4"
    return bad


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("truncated-50.mp4", UnsupportedVideoError, "truncated"),
        ("truncated-50.mkv", CorruptVideoError, "truncated"),
        ("truncated-90.mkv", CorruptVideoError, "truncated"),
        ("empty.mp4", CorruptVideoError, "empty file (0 bytes)"),
        ("text.mp4", UnsupportedVideoError, "not a recognised video"),
    ],
)
def test_bad_files_fail_with_one_line_and_write_nothing(
    clips: dict[str, Path], tmp_path: Path, name: str, error: type, words: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(error) as info:
        safeguard_video(clips[name], out / "clip.mp4", guard=RedGuard(), working_size=96)
    message = str(info.value)
    assert isinstance(info.value, VideoInputError)
    assert name in message and words in message and "\n" not in message
    assert list(out.iterdir()) == []  # no output, no temporary file


def test_caps_are_checked_from_the_header_before_decoding(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    good = clips["good.mp4"]
    assert probe_video(good).frames == 25
    for options, words in (
        ({"max_duration": 0.5}, "duration cap"),
        ({"max_frame_pixels": 1000}, "pixels per frame"),
        ({"max_frames": 10}, "frames"),
        ({"max_bytes": 100}, "size cap"),
    ):
        with pytest.raises(VideoTooLargeError, match=words):
            safeguard_video(good, tmp_path / "out.mp4", guard=RedGuard(), video_options=options)
        assert not (tmp_path / "out.mp4").exists()
        assert list(tmp_path.iterdir()) == []
    assert VideoTooLargeError.http_status == 413 and UnsupportedVideoError.http_status == 415


def test_video_options_are_validated_with_the_other_options() -> None:
    from safeview.options import SafeguardOptions

    with pytest.raises(ValueError, match="unknown video option 'fps'"):
        SafeguardOptions(video_options={"fps": 3})
    with pytest.raises(ValueError, match="audio must be one of drop, copy"):
        SafeguardOptions(video_options={"audio": "mix"})
    with pytest.raises(ValueError, match="sample_every must be an integer >= 1"):
        VideoOptions.from_mapping({"sample_every": "0"})
    assert (
        VideoOptions.from_mapping({"sample_every": "3", "cut_threshold": "0.5"}).sample_every == 3
    )


def test_videos_are_recognised_by_extension_or_by_their_container(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    renamed = tmp_path / "clip.bin"
    renamed.write_bytes(clips["good.mp4"].read_bytes())
    assert is_video_path(clips["good.mp4"]) and is_video_path(renamed)
    assert is_video_path(tmp_path / "missing.MKV")
    text = tmp_path / "notes.bin"
    text.write_text("hello")
    assert not is_video_path(text) and not is_video_path(tmp_path / "photo.jpg")


def test_a_codec_outside_the_allowlist_is_refused(tmp_path: Path) -> None:
    import av

    path = tmp_path / "png-frames.mov"
    with av.open(str(path), "w", format="mov") as container:
        stream = container.add_stream("png", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "rgb24"
        for pixels in moving_square_frames(3, height=16, width=32, side=4):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(UnsupportedVideoError, match="unsupported video codec png"):
        probe_video(path)
