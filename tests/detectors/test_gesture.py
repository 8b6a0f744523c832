"""The middle-finger rule on synthetic landmark sets: it fires on the gesture whatever the hand's
rotation, side and viewpoint, and on no other pose."""

from __future__ import annotations

import numpy as np
import pytest

from safeview.detectors.gesture import (
    finger_pose,
    is_middle_finger,
    middle_finger_box,
    middle_finger_score,
)
from tests.detectors.hand_poses import POSES, hand_landmarks

GESTURES = ("middle_finger", "middle_finger_thumb_out")
ROTATIONS = (0.0, 90.0, 180.0, 270.0, 33.0)
VIEWS = (0.0, 45.0, 90.0)  # palm on, three-quarter, from the thumb's side


@pytest.mark.parametrize("pose", sorted(POSES))
@pytest.mark.parametrize("rotation", ROTATIONS)
@pytest.mark.parametrize("mirror", [False, True])
def test_rule_fires_only_on_the_gesture(pose: str, rotation: float, mirror: bool) -> None:
    for view in VIEWS:
        points = hand_landmarks(pose, view=view, rotation=rotation, mirror=mirror)
        score, measures = middle_finger_score(points)
        assert is_middle_finger(points) == (pose in GESTURES), (pose, view, measures)
        assert (score > 0.5) == (pose in GESTURES)


@pytest.mark.parametrize("pose", sorted(POSES))
def test_rule_is_invariant_to_rotation_mirror_and_scale(pose: str) -> None:
    reference, _ = middle_finger_score(hand_landmarks(pose))
    for rotation in ROTATIONS:
        for mirror in (False, True):
            for palm in (12.0, 300.0):
                moved = hand_landmarks(pose, rotation=rotation, mirror=mirror, palm=palm)
                assert middle_finger_score(moved)[0] == pytest.approx(reference, abs=1e-9)


def test_rule_tolerates_landmark_noise() -> None:
    # MediaPipe's landmarks jitter by a few percent of the palm.
    for seed in range(20):
        gesture = hand_landmarks("middle_finger", rotation=17.0 * seed, noise=0.03, seed=seed)
        assert is_middle_finger(gesture), seed
        for pose in ("open_hand", "fist", "pointing", "peace"):
            other = hand_landmarks(pose, rotation=17.0 * seed, noise=0.03, seed=seed)
            assert not is_middle_finger(other), (pose, seed)


def test_measures_separate_straight_and_curled_fingers() -> None:
    points = hand_landmarks("middle_finger")
    middle, index = finger_pose(points, "middle"), finger_pose(points, "index")
    assert middle.bend < 20 and middle.reach > 1.3 and middle.length > 0.9
    assert index.reach < 0.8
    # 3-D landmarks (x, y, z) give the same answer: the rule reads the image plane only.
    with_depth = np.column_stack([points, np.linspace(-5, 5, 21)])
    assert middle_finger_score(with_depth)[0] == middle_finger_score(points)[0]


def test_score_grades_the_margin() -> None:
    clear, _ = middle_finger_score(hand_landmarks("middle_finger"))
    # Half-curled index, ring and little fingers: the rule's margin shrinks, then it fails.
    half = hand_landmarks("relaxed")
    assert clear == 1.0
    assert middle_finger_score(half)[0] < 0.5


def test_box_covers_the_finger_and_stays_in_the_image() -> None:
    points = hand_landmarks("middle_finger", rotation=90.0, centre=(60.0, 200.0))
    x0, y0, x1, y1 = middle_finger_box(points, 400, 300)
    finger = points[9:13]
    assert 0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 300
    inside = (finger[:, 0] >= x0) & (finger[:, 0] <= x1) & (finger[:, 1] >= y0)
    assert inside.all() and (finger[:, 1] <= y1).all()
    # Narrow: about the finger, not the hand.
    hand_area = np.ptp(points[:, 0]) * np.ptp(points[:, 1])
    assert (x1 - x0) * (y1 - y0) < 0.5 * hand_area


def test_bad_landmarks() -> None:
    with pytest.raises(ValueError, match="21 hand landmarks"):
        middle_finger_score(np.zeros((20, 2)))
    # A degenerate hand (all points at one place) is not a gesture and does not crash.
    assert not is_middle_finger(np.zeros((21, 2)))
