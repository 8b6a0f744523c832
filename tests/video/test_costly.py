"""Per-guard sampling by cost: a costly guard (the OCR) scores a sparse grid of the samples, the
cuts, the last frame and the samples another guard flags, and densely around where it flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safeview.guards import register_guard
from safeview.video import VideoPipeline, classify_video
from safeview.video.options import VideoOptions
from safeview.video.sampling import SparseSchedule
from tests.conftest import RedGuard
from tests.test_policy import BlueGuard, write_policy
from tests.video.clips import scene, write_clip


class CostlyBlueGuard(BlueGuard):
    """The blue-disc guard, declared costly; counts the images it scores."""

    name = "video-costly-blue"
    costly = True

    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def preprocess(self, images):  # type: ignore[no-untyped-def]
        # Counted here: once a module has scored enough images it runs as a frozen copy.
        batch = super().preprocess(images)
        self.images += len(batch)
        return batch


COSTLY = CostlyBlueGuard()
register_guard("video-costly-blue", lambda device: COSTLY)
register_guard("video-cheap-red", lambda device: RedGuard())


@pytest.fixture(autouse=True)
def _eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """No frozen copy of the guards' modules built in the background while calls are counted."""
    monkeypatch.setenv("SAFEVIEW_FREEZE", "0")


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policy(
        tmp_path,
        {
            "sexually_explicit": [{"guard": "video-cheap-red", "category": "unsafe"}],
            "violence": [{"guard": "video-costly-blue", "category": "unsafe"}],
        },
    )


def disc_frames(
    n: int, shown: range, *, cut_at: int | None = None, red: range = range(0)
) -> list[np.ndarray]:
    """The test scene with a blue disc (the costly guard's) on the frames in ``shown``, a red
    square (the cheap guard's) on those in ``red``, and another picture from ``cut_at`` on."""
    frames = []
    yy, xx = np.mgrid[:96, :160]
    for i in range(n):
        image = scene(seed=0 if cut_at is None or i < cut_at else 1)
        if cut_at is not None and i >= cut_at:
            image = 255 - image  # a different picture: a cut
        if i in shown:
            image[(yy - 60) ** 2 + (xx - 30 - i % 40) ** 2 < 14**2] = (40, 60, 200)
        if i in red:
            image[20:52, 90:122] = (230, 20, 20)
        frames.append(image)
    return frames


def _sampling(report):  # type: ignore[no-untyped-def]
    assert report.video is not None
    return {entry["guard"]: entry for entry in report.video.sampling}


def test_the_schedule_scores_the_grid_cuts_flags_and_densely_around_its_own_flags() -> None:
    schedule = SparseSchedule(1.0)
    scored = []
    flagging = {50, 55, 60}  # what the costly guard would flag
    cuts, others = {85}, {115}  # a cut, and a sample another guard flags
    last = 140
    for frame in range(0, last + 1, 5):
        time = frame / 25
        if schedule.due(time, cut=frame in cuts, last=frame == last, flagged=frame in others):
            scored.append(frame)
            back = schedule.scored(time, frame in flagging, cut=frame in cuts)
            scored.extend(back)
        else:
            schedule.skip(frame)
    # The grid (1 s = 25 frames); 50 flags: back to 30, and on until 65 no longer flags; the cut
    # (85), the grid 1 s after it (110), the other guard's flag (115), and the last frame.
    assert sorted(scored) == [0, 25, 30, 35, 40, 45, 50, 55, 60, 65, 85, 110, 115, 140]


def test_a_costly_guard_scores_the_sparse_grid_and_densely_where_it_flags(
    policy: Path, tmp_path: Path
) -> None:
    frames = disc_frames(100, range(42, 64))
    source = write_clip(tmp_path / "disc.mp4", frames)
    COSTLY.images = 0
    pipeline = VideoPipeline(policy=str(policy), working_size=96)
    report = pipeline.safeguard(source, tmp_path / "out.mp4")
    sampling = _sampling(report)
    costly, cheap = sampling["video-costly-blue"], sampling["red-square"]
    # The cheap guard: every sample (every 5th frame and the last one).
    assert cheap["costly"] is False and cheap["every_frames"] == 5 and cheap["frames"] is None
    assert cheap["frames_scored"] == 21
    # The costly one: 0 and 25 on the grid; 50 flags: back to 30 and on to 65, which does not
    # flag; the grid 1 s later (90) and the last frame (99).
    assert costly["costly"] is True and costly["every_seconds"] == 1.0
    assert costly["frames"] == [0, 25, 30, 35, 40, 45, 50, 55, 60, 65, 90, 99]
    assert costly["frames_scored"] == 12 and costly["seconds"] >= 0
    assert report.video is not None
    (span,) = report.video.spans
    # Flagged at 45..60 (its dense samples), extended to the unflagged samples around: 41..64,
    # as precise as if it had scored every sample.
    assert (span.start_frame, span.end_frame) == (41, 64)
    assert span.categories == ["violence"] and span.success
    assert span.verification["flagged"] == 0 and span.verification["encoded_flagged"] == 0
    assert report.to_dict()["video"]["sampling"] == report.video.sampling


def test_costly_guards_none_scores_every_sample_with_every_guard(
    policy: Path, tmp_path: Path
) -> None:
    source = write_clip(tmp_path / "disc.mp4", disc_frames(50, range(0)))
    report = classify_video(source, policy=str(policy), video_options={"costly_guards": "none"})
    sampling = _sampling(report)
    assert sampling["video-costly-blue"]["costly"] is False
    assert sampling["video-costly-blue"]["frames_scored"] == 11  # 0, 5, ..., 45, 49
    with pytest.raises(ValueError, match="not a guard of the policy"):
        classify_video(source, policy=str(policy), video_options={"costly_guards": "ocr"})


def test_a_costly_guard_scores_cuts_and_samples_another_guard_flags(
    policy: Path, tmp_path: Path
) -> None:
    frames = disc_frames(100, range(0), cut_at=37, red=range(70, 75))
    source = write_clip(tmp_path / "cut.mp4", frames)
    COSTLY.images = 0
    report = classify_video(source, policy=str(policy))
    assert report.video is not None and report.video.scene_cuts == [37]
    # The grid restarts from the cut (37 -> 65 > 1 s); the red square flags 70: scored too.
    assert _sampling(report)["video-costly-blue"]["frames"] == [0, 25, 37, 65, 70, 95, 99]
    assert COSTLY.images == 7  # called on those frames alone


def test_content_shorter_than_the_costly_interval_can_be_missed_as_documented(
    policy: Path, tmp_path: Path
) -> None:
    # The disc shows for 0.6 s (frames 30..44), between two of the costly guard's samples (25
    # and 50): missed on its sparse grid, found when every sample is scored.
    source = write_clip(tmp_path / "flash.mp4", disc_frames(75, range(30, 45)))
    sparse = classify_video(source, policy=str(policy))
    dense = classify_video(source, policy=str(policy), video_options={"costly_guards": "none"})
    assert not sparse.flagged
    assert dense.flagged and dense.video is not None
    assert [(s.start_frame, s.end_frame) for s in dense.video.segments if s.flagged] == [(30, 44)]
    assert "costly_every" in (VideoOptions.__doc__ or "")
