"""Synthetic hands: 21 landmarks in MediaPipe's layout from finger flexion angles.

A 3-D hand, palm in the x-y plane facing the camera (+z), fingers pointing up the image (-y);
each finger bends at its three joints towards the palm's side (+z). The camera looks along z
from ``view`` degrees around the y axis (0: palm on, 90: from the thumb's side); the projection is
then rotated in the image, optionally mirrored, scaled and placed.
"""

from __future__ import annotations

import itertools

import numpy as np

# Knuckles (MCP) in units of the palm (|wrist - middle MCP| = 1), and segment lengths.
KNUCKLES = {
    "index": (-0.34, -0.94),
    "middle": (-0.08, -1.0),
    "ring": (0.17, -0.94),
    "little": (0.38, -0.82),
}
SEGMENTS = {
    "index": (0.42, 0.26, 0.21),
    "middle": (0.47, 0.3, 0.23),
    "ring": (0.44, 0.28, 0.21),
    "little": (0.34, 0.21, 0.19),
}
STRAIGHT = (5.0, 5.0, 3.0)
CURLED = (85.0, 100.0, 60.0)
#: Flexion (MCP, PIP, DIP) of each finger, and whether the thumb is tucked, for each pose.
POSES: dict[str, tuple[dict[str, tuple[float, float, float]], bool]] = {
    "middle_finger": (
        {"index": CURLED, "middle": STRAIGHT, "ring": CURLED, "little": CURLED},
        True,
    ),
    "middle_finger_thumb_out": (
        {"index": CURLED, "middle": STRAIGHT, "ring": CURLED, "little": CURLED},
        False,
    ),
    "open_hand": ({f: STRAIGHT for f in KNUCKLES}, False),
    "fist": ({f: CURLED for f in KNUCKLES}, True),
    "pointing": (
        {"index": STRAIGHT, "middle": CURLED, "ring": CURLED, "little": CURLED},
        True,
    ),
    "peace": (
        {"index": STRAIGHT, "middle": STRAIGHT, "ring": CURLED, "little": CURLED},
        True,
    ),
    "relaxed": (
        {f: (25.0, 35.0, 15.0) for f in KNUCKLES},
        False,
    ),
}


def _finger(base: np.ndarray, flexion: tuple[float, float, float], lengths: tuple[float, ...]):
    direction = np.array([base[0] * 0.35, -1.0, 0.0])
    direction /= np.linalg.norm(direction)
    normal = np.array([0.0, 0.0, 1.0])
    points = [base]
    angle = 0.0
    for bend, length in zip(flexion, lengths, strict=True):
        angle += np.radians(bend)
        step = np.cos(angle) * direction + np.sin(angle) * normal
        points.append(points[-1] + length * step)
    return points


def _thumb(tucked: bool) -> list[np.ndarray]:
    cmc = np.array([-0.28, -0.22, 0.0])
    if tucked:  # across the curled fingers, in front of the palm
        steps = [(-0.1, -0.3, 0.15), (0.25, -0.15, 0.15), (0.25, 0.0, 0.05)]
    else:  # held out to the side
        steps = [(-0.25, -0.25, 0.05), (-0.2, -0.2, 0.0), (-0.15, -0.15, 0.0)]
    points = [cmc]
    for step in steps:
        points.append(points[-1] + np.array(step))
    return points


def hand_landmarks(
    pose: str,
    *,
    view: float = 0.0,
    rotation: float = 0.0,
    mirror: bool = False,
    palm: float = 80.0,
    centre: tuple[float, float] = (240.0, 240.0),
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """(21, 2) landmarks in pixels for ``pose`` (a key of :data:`POSES`)."""
    flexions, tucked = POSES[pose]
    points: list[np.ndarray] = [np.zeros(3)]
    points += _thumb(tucked)
    for finger in ("index", "middle", "ring", "little"):
        base = np.array([*KNUCKLES[finger], 0.0])
        points += _finger(base, flexions[finger], SEGMENTS[finger])
    hand = np.stack(points)
    turn = np.radians(view)
    around_y = np.array(
        [[np.cos(turn), 0, np.sin(turn)], [0, 1, 0], [-np.sin(turn), 0, np.cos(turn)]]
    )
    flat = (hand @ around_y.T)[:, :2]
    if mirror:
        flat[:, 0] *= -1
    spin = np.radians(rotation)
    in_plane = np.array([[np.cos(spin), -np.sin(spin)], [np.sin(spin), np.cos(spin)]])
    flat = flat @ in_plane.T
    if noise:
        flat += np.random.default_rng(seed).normal(0.0, noise, flat.shape)
    return flat * palm + np.asarray(centre)


#: A skin tone for drawn hands.
SKIN = (205, 150, 120)


def draw_hand(
    pose: str,
    *,
    palm: float = 70.0,
    centre: tuple[float, float] = (240.0, 250.0),
    rotation: float = 0.0,
    size: tuple[int, int] = (400, 480),
    background: int = 200,
) -> np.ndarray:
    """An RGB image (height, width) of a flat drawn hand in ``pose`` on a grey background: the
    palm a filled polygon, each finger thick rounded strokes along its landmarks, an arm below
    the wrist. Crude, but MediaPipe finds it (palm-on, palm 70-80 px, rotated up to 25
    degrees), and its landmarks follow the pose."""
    import cv2

    height, width = size
    image = np.full((height, width, 3), background, np.uint8)
    points = hand_landmarks(pose, palm=palm, centre=centre, rotation=rotation).astype(np.int32)
    thick = int(palm * 0.22)
    cv2.fillConvexPoly(image, cv2.convexHull(points[[0, 1, 5, 9, 13, 17]]), SKIN)
    chains = ([0, 1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20])
    for chain in chains:
        for a, b in itertools.pairwise(chain):
            cv2.line(image, tuple(map(int, points[a])), tuple(map(int, points[b])), SKIN, thick)
        for c in chain:
            cv2.circle(image, tuple(map(int, points[c])), thick // 2, SKIN, -1, cv2.LINE_AA)
    for chain in chains[1:]:  # knuckle creases
        for c in chain[1:-1]:
            cv2.circle(image, tuple(map(int, points[c])), 2, (170, 110, 90), -1)
    image = cv2.GaussianBlur(image, (3, 3), 0)
    wrist = tuple(map(int, points[0]))
    cv2.line(image, wrist, (wrist[0], wrist[1] + 150), SKIN, int(palm * 0.7))
    return np.asarray(image)
