"""Sampling, scene cuts, flagged spans and key frames (no decoding)."""

from __future__ import annotations

import numpy as np

from safeview.video.sampling import CutDetector, Span, flagged_spans, histogram_distance, key_frames


def _histogram(colour: tuple[int, int, int]) -> np.ndarray:
    parts = []
    for value in colour:
        channel = np.zeros(16)
        channel[value // 16] = 1.0
        parts.append(channel)
    return np.concatenate(parts)


def test_a_change_of_picture_is_a_cut_and_a_steady_shot_is_not() -> None:
    detector = CutDetector(0.4)
    red, similar, blue = (
        _histogram((200, 20, 20)),
        _histogram((200, 20, 20)),
        _histogram((20, 20, 200)),
    )
    assert histogram_distance(red, red) == 0.0 and histogram_distance(red, blue) > 0.4
    assert [detector.is_cut(h) for h in (red, similar, blue, blue)] == [False, False, True, False]
    # An abrupt change well above the shot's own changes is a cut even under the threshold.
    steady = CutDetector(0.4)
    shot = [_mix(red, blue, 0.02 * (i % 2)) for i in range(6)]
    assert not any(steady.is_cut(h) for h in shot)
    assert steady.is_cut(_mix(red, blue, 0.3)) and not steady.is_cut(_mix(red, blue, 0.31))


def _mix(a: np.ndarray, b: np.ndarray, share: float) -> np.ndarray:
    return (1 - share) * a + share * b


def test_spans_extend_to_the_neighbouring_samples_but_not_back_across_a_cut() -> None:
    samples = [0, 5, 10, 15, 20, 25, 30, 33]
    flagged = [False, False, True, True, False, True, False, False]
    spans = flagged_spans(samples, flagged, cuts=set(), last_frame=39)
    assert spans == [Span(6, 19, (10, 15)), Span(21, 29, (25,))]
    # The flagged run starts a shot (a cut at 10): the frames before belong to another shot.
    assert flagged_spans(samples, flagged, cuts={10}, last_frame=39)[0] == Span(10, 19, (10, 15))
    # Flagged at the ends: the span runs to the first and the last frame.
    assert flagged_spans([0, 5, 9], [True, False, True], set(), 9) == [
        Span(0, 4, (0,)),
        Span(6, 9, (9,)),
    ]
    assert flagged_spans([0, 5], [False, False], set(), 9) == []


def test_key_frames_cover_both_ends_every_kth_frame_and_both_sides_of_a_cut() -> None:
    span = Span(6, 29, (10, 15, 20, 25))
    assert key_frames(span, 8, set()) == [6, 14, 22, 29]
    assert key_frames(span, 8, {18}) == [6, 14, 17, 18, 26, 29]
    assert key_frames(Span(3, 3, (3,)), 8, set()) == [3]
