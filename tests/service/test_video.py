"""Video through the service (``POST /v1/safeguard/video``): the clip is held in memory only, its
caps are checked while it streams in and from its header before any decoding, a bad clip is a
one-line 4xx JSON error that fails alone, and a flagged clip comes back obfuscated."""

from __future__ import annotations

import base64
import builtins
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import safeview.service.app as service_app
from safeview.guards import register_guard
from safeview.guards.base import scores
from safeview.service.app import Settings, create_app
from safeview.video.codec import probe_video, read_frames
from tests.conftest import RedGuard
from tests.service.conftest import UNSAFE, service_settings, wait_ready
from tests.video.clips import moving_square_frames, write_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A flagged clip (the red square in frames 6..13 of 20), a clean one, and bad ones."""
    import av

    folder = tmp_path_factory.mktemp("service-clips")
    frames = moving_square_frames(20, present=lambda i: 6 <= i < 14)
    flagged = write_clip(folder / "flagged.mp4", frames).read_bytes()
    mkv = write_clip(folder / "flagged.mkv", frames, container="matroska").read_bytes()
    clean = write_clip(folder / "clean.mp4", moving_square_frames(10, present=lambda i: False))
    png = folder / "png.mov"
    with av.open(str(png), "w", format="mov") as container:
        stream = container.add_stream("png", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "rgb24"
        for pixels in moving_square_frames(3, height=16, width=32, side=4):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return {
        "flagged": flagged,
        "clean": clean.read_bytes(),
        "truncated-mp4": flagged[: len(flagged) // 2],  # its index (moov) is at the end: lost
        "truncated-mkv": mkv[: int(len(mkv) * 0.9)],  # the header parses; the frames run out
        "png-codec": png.read_bytes(),
        "text": b"not a video at all\n" * 20,
    }


def video_settings(**overrides: object) -> Settings:
    return service_settings(**{"max_video_bytes": 1024 * 1024, **overrides})


@pytest.fixture(scope="module")
def vclient() -> Iterator[TestClient]:
    with TestClient(create_app(video_settings())) as test_client:
        wait_ready(test_client)
        yield test_client


def _flags(frames: list[np.ndarray]) -> np.ndarray:
    return scores(RedGuard(), frames)[:, 1] >= 0.5


def _decoded(data: bytes) -> list[np.ndarray]:
    return [frame.pixels for frame in read_frames(probe_video(data))]


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"] and "\n" not in error["message"]
    return str(error["message"])


def test_a_flagged_clip_comes_back_obfuscated_and_its_frames_no_longer_flag(
    vclient: TestClient, clips: dict[str, bytes]
) -> None:
    assert _flags(_decoded(clips["flagged"])).sum() == 8
    response = vclient.post("/v1/safeguard/video", content=clips["flagged"])
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["video_media_type"] == "video/mp4"
    output = base64.b64decode(data["video"])
    written = _decoded(output)
    assert len(written) == 20 and not _flags(written).any()
    report = data["report"]
    assert report["flagged"] and report["success"] and report["output"] is None
    assert report["input"]["name"] == "upload"
    assert report["input"]["sha256"] == hashlib.sha256(clips["flagged"]).hexdigest()
    video = report["video"]
    assert video["frames"] == 20 and video["output_codec"] == "h264"
    [span] = video["spans"]
    assert span["categories"] == ["unsafe"] and span["success"]
    assert 0 <= span["start_time"] < span["end_time"] <= 0.8
    assert span["scores_before"]["unsafe"] >= 0.5 and span["scores_after"]["unsafe"] < 0.5
    assert span["fallback_ranges"] == []
    # The clip alone, with the verdict in headers.
    raw = vclient.post(
        "/v1/safeguard/video", content=clips["flagged"], headers={"Accept": "video/mp4"}
    )
    assert raw.status_code == 200 and raw.headers["content-type"] == "video/mp4"
    assert raw.headers["x-safeview-flagged"] == "true" and raw.headers["x-safeview-spans"] == "1"
    assert not _flags(_decoded(raw.content)).any()


def test_multipart_upload_with_video_options(vclient: TestClient, clips: dict[str, bytes]) -> None:
    response = vclient.post(
        "/v1/safeguard/video",
        files={"file": ("clip.mp4", clips["clean"], "video/mp4")},
        data={"sample_every": "2", "style": "fill", "costly_every": "0.5"},
    )
    assert response.status_code == 200, response.text
    report = response.json()["report"]
    assert not report["flagged"] and report["video"]["sample_every"] == 2
    assert all(entry["costly"] is False for entry in report["video"]["sampling"])
    assert report["video"]["spans"] == [] and report["style"] == "fill"
    assert len(_decoded(base64.b64decode(response.json()["video"]))) == 10


@pytest.mark.parametrize(
    ("name", "status", "code", "words"),
    [
        ("empty", 400, "invalid_video", "empty body"),
        ("truncated-mp4", 415, "unsupported_media_type", "truncated before its header ends"),
        ("truncated-mkv", 422, "invalid_video", "truncated"),
        ("png-codec", 415, "unsupported_media_type", "unsupported video codec png"),
        ("text", 415, "unsupported_media_type", "not a recognised video"),
    ],
)
def test_bad_clips_are_one_line_4xx_errors(
    vclient: TestClient, clips: dict[str, bytes], name: str, status: int, code: str, words: str
) -> None:
    content = b"" if name == "empty" else clips[name]
    message = _error(vclient.post("/v1/safeguard/video", content=content), status, code)
    assert words in message


def test_bad_options_are_422(vclient: TestClient, clips: dict[str, bytes]) -> None:
    for query, words in (
        ("sample_every=0", "sample_every must be an integer >= 1"),
        ("audio=mix", "audio must be one of"),
        ("costly_every=0", "costly_every must be in"),
        ("costly_guards=ocr", "costly_guards names ocr"),
        ("rationale=grounded", "rationale: not offered for videos"),
        ("style=smudge", "smudge"),
    ):
        response = vclient.post(f"/v1/safeguard/video?{query}", content=clips["clean"])
        assert words in _error(response, 422, "invalid_option"), query


def test_caps_refuse_a_clip_before_any_frame_is_decoded(
    clips: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_work(*args: object) -> None:
        raise AssertionError("a clip over a cap reached the worker")

    monkeypatch.setattr(service_app, "_safeguard_video_work", no_work)
    clip = clips["flagged"]
    for overrides, code, words in (
        ({"max_video_bytes": 1000}, "payload_too_large", "body over 1000 bytes"),
        ({"max_inflight_bytes": 1000}, "payload_too_large", "body over 1000 bytes"),
        ({"max_video_seconds": 0.5}, "video_too_large", "duration cap of 0.5 s"),
        ({"max_video_frames": 10}, "video_too_large", "cap of 10 frames"),
        ({"max_video_pixels": 1000}, "video_too_large", "pixels per frame"),
    ):
        with TestClient(create_app(video_settings(**overrides))) as client:
            wait_ready(client)
            message = _error(client.post("/v1/safeguard/video", content=clip), 413, code)
            assert words in message, overrides
            if "max_video_bytes" in overrides:
                # Streamed without a length: refused as the bytes arrive.
                chunks = (clip[i : i + 512] for i in range(0, len(clip), 512))
                response = client.post("/v1/safeguard/video", content=chunks)
                assert words in _error(response, 413, code)


def test_the_video_deadline_stops_the_work(clips: dict[str, bytes]) -> None:
    from tests.service.test_limits import SLOW

    settings = service_settings(
        guard="slow-red",
        guards=("slow-red",),
        preload=("slow-red",),
        timeout_s=60,
        video_timeout_s=0.6,
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        SLOW.calls = 0
        response = client.post("/v1/safeguard/video?style=fill", content=clips["flagged"])
        message = _error(response, 503, "timeout")
        assert "0.6 s" in message
        time.sleep(0.3)  # the pass running at the deadline finishes
        calls = SLOW.calls
        time.sleep(0.8)
        assert SLOW.calls == calls, "the timed-out clip kept running"


def test_a_bad_request_beside_a_good_one_fails_alone(
    vclient: TestClient, clips: dict[str, bytes]
) -> None:
    bad = ["truncated-mkv", "text", "png-codec", "truncated-mp4"]

    def post(name: str) -> tuple[str, int, bytes]:
        response = vclient.post("/v1/safeguard/video?style=fill", content=clips[name])
        return name, response.status_code, response.content

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(post, ["flagged", *bad, "flagged"]))
    for name, status, body in results:
        if name == "flagged":
            assert status == 200, body[:300]
            import json

            output = base64.b64decode(json.loads(body)["video"])
            assert not _flags(_decoded(output)).any()
        else:
            assert 400 <= status < 500, (name, status, body[:300])
    # The server is still fine afterwards.
    assert vclient.post("/v1/safeguard?style=fill", content=UNSAFE).status_code == 200


def _write_spies(monkeypatch: pytest.MonkeyPatch, opened: list[str]) -> None:
    """Every way Python code could put bytes in a file, and every ``av.open`` by name, recorded."""
    import av

    def refuse(what: str) -> Any:
        def spy(*args: object, **kwargs: object) -> None:
            opened.append(what)
            raise AssertionError(f"{what} during a video request")

        return spy

    for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile"):
        monkeypatch.setattr(tempfile, name, refuse(f"tempfile.{name}"))
    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", refuse("tempfile.SpooledTemporaryFile"))
    real_open, real_os_open, real_av_open = builtins.open, os.open, av.open

    def open_spy(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+"):
            opened.append(f"open({file!r}, {mode!r})")
        return real_open(file, mode, *args, **kwargs)

    def os_open_spy(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            opened.append(f"os.open({path!r})")
        return real_os_open(path, flags, *args, **kwargs)

    def av_open_spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike):
            opened.append(f"av.open({file!r})")  # FFmpeg would open (or create) a file by name
        return real_av_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_spy)
    monkeypatch.setattr(io, "open", open_spy)
    monkeypatch.setattr(os, "open", os_open_spy)
    monkeypatch.setattr(av, "open", av_open_spy)


def _files_holding(needle: bytes, since: float, folders: list[Path]) -> list[Path]:
    found = []
    for folder in folders:
        for root, _dirs, names in os.walk(folder):
            for name in names:
                path = Path(root) / name
                try:
                    info = path.stat()
                    recent = info.st_mtime >= since and info.st_size >= len(needle)
                    if recent and needle in path.read_bytes():
                        found.append(path)
                except OSError:
                    continue
    return found


@pytest.mark.parametrize("multipart", [False, True])
def test_the_original_never_reaches_the_disk(
    vclient: TestClient,
    clips: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    multipart: bool,
) -> None:
    clip = clips["flagged"]
    assert vclient.post("/v1/safeguard/video", content=clip).status_code == 200  # warm
    monkeypatch.chdir(tmp_path)
    opened: list[str] = []
    started = time.time() - 1
    with monkeypatch.context() as patch:
        _write_spies(patch, opened)
        if multipart:
            response = vclient.post(
                "/v1/safeguard/video", files={"file": ("clip.mp4", clip, "video/mp4")}
            )
        else:
            response = vclient.post("/v1/safeguard/video", content=clip)
        assert response.status_code == 200, response.text
        assert opened == []
        # The spies bite: a temporary file, a file written, a clip opened by name.
        with pytest.raises(AssertionError):
            tempfile.mkstemp()
        with open(tmp_path / "control", "wb") as handle:
            handle.write(b"x")
        with pytest.raises(Exception):  # noqa: B017  # nothing there: FFmpeg fails
            probe_video(tmp_path / "control")
        assert opened[0] == "tempfile.mkstemp" and "'wb'" in opened[1]
        assert opened[2].startswith("av.open(")
    # No file written during the request holds the original (its middle 256 bytes).
    needle = clip[len(clip) // 2 : len(clip) // 2 + 256]
    folders = [Path(tempfile.gettempdir()), tmp_path, Path.cwd()]
    assert _files_holding(needle, started, folders) == []


def test_a_video_sent_to_the_image_route_is_pointed_to_the_video_route(
    vclient: TestClient, clips: dict[str, bytes]
) -> None:
    response = vclient.post("/v1/safeguard", content=clips["flagged"])
    assert "/v1/safeguard/video" in _error(response, 415, "unsupported_media_type")


def test_config_and_spec_describe_the_video_route(
    vclient: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = vclient.get("/config").json()["video"]
    assert video["route"] == "/v1/safeguard/video" and video["max_bytes"] == 1024 * 1024
    assert video["max_seconds"] == 60 and video["timeout_s"] == 600
    assert video["options"] == [
        "sample_every", "costly_guards", "costly_every", "key_every", "verify_every", "audio",
    ]  # fmt: skip
    # The review page may play a blob: clip, and load nothing else.
    assert "media-src blob:;" in vclient.get("/").headers["content-security-policy"]
    spec = vclient.get("/openapi.json").json()["paths"]["/v1/safeguard/video"]["post"]
    assert "video/mp4" in spec["responses"]["200"]["content"]
    assert {p["name"] for p in spec["parameters"]} >= {"sample_every", "policy", "style"}
    with TestClient(create_app(video_settings(max_video_bytes=0))) as off:
        wait_ready(off)
        assert off.get("/config").json()["video"] is None
        _error(off.post("/v1/safeguard/video", content=b"x"), 404, "not_found")
    for name, value in (
        ("SAFEVIEW_MAX_VIDEO_BYTES", "1000"),
        ("SAFEVIEW_MAX_VIDEO_SECONDS", "5"),
        ("SAFEVIEW_MAX_VIDEO_FRAMES", "50"),
        ("SAFEVIEW_MAX_VIDEO_PIXELS", "4000"),
        ("SAFEVIEW_VIDEO_TIMEOUT_S", "9"),
        ("SAFEVIEW_GUARD", "open-nsfw"),
        ("SAFEVIEW_PRELOAD", "none"),
    ):
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert (settings.max_video_bytes, settings.max_video_seconds) == (1000, 5.0)
    assert (settings.max_video_frames, settings.max_video_pixels) == (50, 4000)
    assert settings.video_timeout_s == 9.0
    with pytest.raises(ValueError, match="MAX_VIDEO_SECONDS"):
        video_settings(max_video_seconds=0)


register_guard("red-square", lambda device: RedGuard())  # as conftest does: kept registered
