"""The middle-finger gesture, judged from a hand's 21 landmarks (MediaPipe's layout).

MediaPipe's hand model gives landmarks, not gestures; this rule reads the gesture from their
geometry. It uses the image-plane coordinates (x, y) only, and only distances and angles between
landmarks, so it gives the same answer whatever the hand's rotation in the image, its size, and
whether it is mirrored (a left hand, or the back of the hand instead of the palm).

Landmarks: 0 wrist; thumb 1-4; index 5-8; middle 9-12; ring 13-16; little 17-20, each finger
as MCP (knuckle), PIP, DIP, tip. The palm's size ``palm = |wrist - middle MCP|`` sets the scale.

For each finger, three measures:

- **bend**: the flexion at its PIP and DIP joints, in degrees (the angle between consecutive
  segments MCP->PIP, PIP->DIP, DIP->tip, summed). A straight finger projects to a straight line
  from any viewpoint, so a small bend means straight whatever the camera angle.
- **reach**: ``|tip - wrist| / |PIP - wrist|``. An extended finger's tip lies well beyond its PIP
  joint as seen from the wrist (about 1.35 for a straight middle finger); a curled finger folds
  its tip back towards the palm, nearer the wrist than its PIP joint (below 1).
- **length**: ``|tip - MCP| / palm``. A finger pointing at the camera looks short and straight;
  requiring a visible length keeps foreshortened fingers from counting as extended.

The gesture fires when all of these hold (the thresholds are :data:`THRESHOLDS`):

1. the middle finger is extended: bend <= 50 degrees, reach >= 1.2, length >= 0.6;
2. the index, ring and little fingers are curled: reach <= 1.05 each;
3. the middle fingertip dominates: it is at least 1.35 times as far from the wrist as any of the
   other three fingertips (an open hand's fingertips are all at similar distances).

The thumb is not judged: the gesture is made with the thumb tucked across the fingers or held
out, and a tucked thumb is often hidden. Pointing (index extended), an open hand, a fist and a
peace sign (index and middle extended) all fail rule 1 or 2.

:func:`middle_finger_score` grades the rule: each condition's margin becomes a score, 0.5 at its
threshold, rising to 1 (and falling to 0) linearly over a set width; the gesture's score is the
smallest of them, so it is above 0.5 exactly when every condition holds. A search that blurs the
finger sees the score fall before the rule stops firing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WRIST = 0
#: Landmark indices of each finger: (MCP or CMC, PIP or MCP, DIP or IP, tip).
FINGERS: dict[str, tuple[int, int, int, int]] = {
    "thumb": (1, 2, 3, 4),
    "index": (5, 6, 7, 8),
    "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16),
    "little": (17, 18, 19, 20),
}
CURLED_FINGERS = ("index", "ring", "little")

#: (threshold, width) of each condition; "max" conditions must stay at or below the threshold.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "middle_bend_max": (50.0, 25.0),
    "middle_reach_min": (1.2, 0.1),
    "middle_length_min": (0.6, 0.2),
    "curled_reach_max": (1.05, 0.1),
    "dominance_min": (1.35, 0.2),
}


@dataclass(frozen=True)
class FingerPose:
    """How straight and how far out one finger is (see the module's docstring)."""

    bend: float
    reach: float
    length: float


def _as_points(landmarks: np.ndarray | list[tuple[float, ...]]) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] != 21 or points.shape[1] < 2:
        raise ValueError(f"expected 21 hand landmarks (21, 2) or (21, 3), got {points.shape}")
    return points[:, :2]


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """The angle between two vectors in degrees (0 for a zero-length vector)."""
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0.0:
        return 0.0
    return float(np.degrees(np.arccos(np.clip(float(np.dot(a, b)) / norms, -1.0, 1.0))))


def finger_pose(landmarks: np.ndarray | list[tuple[float, ...]], finger: str) -> FingerPose:
    """``finger``'s bend (degrees), reach and length (see the module's docstring)."""
    points = _as_points(landmarks)
    mcp, pip, dip, tip = (points[i] for i in FINGERS[finger])
    wrist = points[WRIST]
    palm = float(np.linalg.norm(points[FINGERS["middle"][0]] - wrist)) or 1e-9
    bend = _angle(pip - mcp, dip - pip) + _angle(dip - pip, tip - dip)
    reach = float(np.linalg.norm(tip - wrist)) / (float(np.linalg.norm(pip - wrist)) or 1e-9)
    length = float(np.linalg.norm(tip - mcp)) / palm
    return FingerPose(bend=bend, reach=reach, length=length)


def _grade(value: float, name: str) -> float:
    threshold, width = THRESHOLDS[name]
    margin = threshold - value if name.endswith("_max") else value - threshold
    return float(np.clip(0.5 + margin / (2.0 * width), 0.0, 1.0))


def middle_finger_score(
    landmarks: np.ndarray | list[tuple[float, ...]],
) -> tuple[float, dict[str, float]]:
    """The gesture's score in [0, 1] (above 0.5 exactly when the rule fires) and the measures it
    rests on (each finger's bend, reach and length; the middle fingertip's dominance)."""
    points = _as_points(landmarks)
    poses = {name: finger_pose(points, name) for name in ("index", "middle", "ring", "little")}
    wrist = points[WRIST]
    middle_tip = float(np.linalg.norm(points[FINGERS["middle"][3]] - wrist))
    others = max(float(np.linalg.norm(points[FINGERS[f][3]] - wrist)) for f in CURLED_FINGERS)
    dominance = middle_tip / (others or 1e-9)
    middle = poses["middle"]
    grades = [
        _grade(middle.bend, "middle_bend_max"),
        _grade(middle.reach, "middle_reach_min"),
        _grade(middle.length, "middle_length_min"),
        _grade(dominance, "dominance_min"),
        *(_grade(poses[f].reach, "curled_reach_max") for f in CURLED_FINGERS),
    ]
    measures = {"dominance": round(dominance, 3)}
    for name, pose in poses.items():
        measures[f"{name}_bend"] = round(pose.bend, 1)
        measures[f"{name}_reach"] = round(pose.reach, 3)
        measures[f"{name}_length"] = round(pose.length, 3)
    return min(grades), measures


def is_middle_finger(landmarks: np.ndarray | list[tuple[float, ...]]) -> bool:
    """Whether the rule fires: middle finger extended, index, ring and little fingers curled."""
    return middle_finger_score(landmarks)[0] > 0.5


def middle_finger_box(
    landmarks: np.ndarray | list[tuple[float, ...]],
    width: int,
    height: int,
    *,
    padding: float = 0.2,
) -> tuple[int, int, int, int]:
    """A box around the middle finger (MCP to tip) padded by ``padding`` times the finger's
    length on every side (a finger is narrow: its landmarks run along its axis), clipped to the
    image."""
    points = _as_points(landmarks)[list(FINGERS["middle"])]
    length = float(np.linalg.norm(points[-1] - points[0]))
    pad = max(2.0, padding * length)
    x0, y0 = points.min(axis=0) - pad
    x1, y1 = points.max(axis=0) + pad
    return (
        int(np.clip(np.floor(x0), 0, width)),
        int(np.clip(np.floor(y0), 0, height)),
        int(np.clip(np.ceil(x1), 0, width)),
        int(np.clip(np.ceil(y1), 0, height)),
    )
