"""A detector as a guard, with a tiny detector (saturated red blobs) so the known answer is the
blob: it is scored, explained by its box, and the search hides it until the detector stops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import safeview
from safeview.attribution import make_attribution
from safeview.detectors import Detection
from safeview.guards import scores
from safeview.guards.detector import DetectorGuard
from tests.conftest import red_square_image


class RedBlobDetector:
    """Each saturated red blob of at least ``min_pixels`` is an unsafe ``"blob"``; its score
    grows with its size (0.9 at 400 pixels)."""

    name = "red-blobs"
    version = "test"
    license = "MIT"

    def __init__(self, min_pixels: int = 60) -> None:
        self.min_pixels = min_pixels

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
        count, _, stats, _ = cv2.connectedComponentsWithStats(red.astype(np.uint8))
        found = []
        for index in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[index])
            if area >= self.min_pixels:
                score = min(0.99, 0.5 + 0.4 * area / 400)
                found.append(Detection("blob", score, (x, y, x + w, y + h), unsafe=True))
        return found


@pytest.fixture
def blob_guard() -> DetectorGuard:
    return DetectorGuard("red-blobs", RedBlobDetector(), size=128)


def test_the_guard_scores_the_strongest_unsafe_detection(blob_guard: DetectorGuard) -> None:
    image = red_square_image(size=128, square=(40, 40, 32))
    probs = scores(blob_guard, [image, np.full_like(image, 90)])
    assert probs.shape == (2, 2)
    assert probs[0, 1] > 0.9 and probs[1, 1] < 1e-5
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_its_attribution_is_the_detection_box(blob_guard: DetectorGuard) -> None:
    image = red_square_image(size=128, square=(40, 40, 32))
    explainer = make_attribution("fullgrad", blob_guard)  # no gradients: its own map instead
    heatmap = explainer.attribute(blob_guard.preprocess([image]), 1)[0]
    assert heatmap.shape == (128, 128) and float(heatmap.max()) == pytest.approx(1.0)
    assert heatmap[44:68, 44:68].mean() > 0.8 and heatmap[100:, 100:].mean() < 0.05
    with pytest.raises(ValueError, match="unknown"):
        make_attribution("no-such-method", blob_guard)


def test_the_search_hides_the_blob_until_the_detector_stops(blob_guard: DetectorGuard) -> None:
    image = red_square_image(size=128, square=(40, 40, 32))
    # Fill: this toy detector reads colour, which a blur keeps inside a large uniform block.
    report = safeview.safeguard(image, guard=blob_guard, style="fill")
    assert report.flagged and report.success and report.fallback is None, report.error
    assert report.mask is not None and report.image is not None
    assert report.mask[40:72, 40:72].mean() > 0.5
    assert report.obfuscated_fraction <= 2.0 * 32 * 32 / 128**2
    # Verified by the same detector on the output.
    assert scores(blob_guard, [report.image])[0, 1] < 0.5


def test_a_detector_guard_joins_a_policy(tmp_path) -> None:
    from safeview.guards import register_guard
    from tests.test_policy import write_policy

    register_guard(
        "test-red-blobs",
        lambda device: DetectorGuard("test-red-blobs", RedBlobDetector(), size=128),
    )
    policy = write_policy(
        tmp_path, {"cyberbullying": [{"guard": "test-red-blobs", "category": "unsafe"}]}
    )
    image = red_square_image(size=128, square=(40, 40, 32))
    report = safeview.safeguard(image, policy=str(policy), style="fill")
    by_id = {c.id: c for c in report.categories}
    assert by_id["cyberbullying"].flagged and by_id["cyberbullying"].flagged_after is False
    assert report.success


def test_the_module_keeps_the_batch_on_its_device(blob_guard: DetectorGuard) -> None:
    x = blob_guard.preprocess([red_square_image(size=64)])
    logits = blob_guard.module(x)
    assert logits.device == x.device and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_the_image_is_fitted_not_squashed() -> None:
    guard = DetectorGuard("red-blobs", RedBlobDetector(), size=128)
    image = red_square_image(size=128, square=(40, 40, 32))[:64]  # 64 x 128: wide
    assert guard.image_window(64, 128) == (32, 0, 96, 128)
    fitted = guard.fitted(image)
    assert fitted.shape == (128, 128, 3) and not fitted[:32].any() and not fitted[96:].any()
    np.testing.assert_array_equal(fitted[32:96], image)
    # The detection map is over the input; mapped back, it lies on the square.
    from safeview.guards import heatmap_to_image

    heatmap = guard.own_attribution.attribute(guard.preprocess([image]), 1)[0]
    back = heatmap_to_image(guard, heatmap, 64, 128)
    assert back.shape == (64, 128) and back[44:60, 44:68].mean() > 0.8
    squashed = DetectorGuard("red-blobs", RedBlobDetector(), size=128, fit="squash")
    assert squashed.image_window(64, 128) == (0, 0, 128, 128)
    assert squashed.fitted(image).shape == (128, 128, 3)
    with pytest.raises(ValueError, match="fit must be"):
        DetectorGuard("x", RedBlobDetector(), fit="crop")


def test_the_detector_guards_are_registered_by_name() -> None:
    from safeview.guards import GUARDS
    from safeview.guards.detector import GUARD_SIZES, detector_guard

    assert {"gesture", "abusive-text", "nudity"} <= set(GUARDS.names())
    assert GUARD_SIZES == {"gesture": 384, "abusive-text": 384, "nudity": 320}
    with pytest.raises(ValueError, match="no detector guard"):
        detector_guard("faces")


def test_only_the_ocr_guard_declares_itself_costly(monkeypatch: pytest.MonkeyPatch) -> None:
    # Video scores a costly guard on a sparser grid of frames (VideoOptions.costly_every).
    from safeview.guards.base import is_costly
    from safeview.guards.detector import detector_guard
    from tests.conftest import RedGuard

    monkeypatch.setattr("safeview.detectors.make_detector", lambda name: RedBlobDetector())
    costly = {
        name: is_costly(detector_guard(name)) for name in ("gesture", "abusive-text", "nudity")
    }
    assert costly == {"gesture": False, "abusive-text": True, "nudity": False}
    assert not is_costly(RedGuard()) and not is_costly(DetectorGuard("x", RedBlobDetector()))


def test_each_detection_is_one_region_of_the_search(blob_guard: DetectorGuard) -> None:
    from safeview.pipeline import carve

    image = red_square_image(size=128, square=(40, 40, 32))
    (mask,) = blob_guard.unsafe_masks(image)
    ys, xs = np.nonzero(mask)  # the blob's box, padded by a tenth of its side
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (36, 75, 36, 75)
    labels = np.arange(64).reshape(8, 8).repeat(16, axis=0).repeat(16, axis=1)
    carved = carve(labels, [mask])
    assert len(np.unique(carved[mask])) == 1 and int(carved.max()) + 1 == len(np.unique(carved))
    assert not (carved[~mask] == carved[mask][0]).any()
    # Mapped through the letterbox: a wide image's blob box lands where the blob is.
    wide = np.concatenate([image, np.full_like(image, 90)], axis=1)  # 128 x 256
    (mask,) = blob_guard.unsafe_masks(wide)
    ys, xs = np.nonzero(mask)
    assert mask.shape == (128, 256) and 34 <= ys.min() <= 40 and 71 <= xs.max() <= 78


def test_detections_of_the_same_image_are_reused() -> None:
    detector = RedBlobDetector()
    calls = []
    detect = detector.detect
    detector.detect = lambda pixels: calls.append(1) or detect(pixels)  # type: ignore[method-assign]
    guard = DetectorGuard("red-blobs", detector, size=128)
    image = red_square_image(size=128, square=(40, 40, 32))
    scores(guard, [image, image])
    guard.unsafe_masks(image)
    assert len(calls) == 1
    scores(guard, [image[::-1].copy()])
    assert len(calls) == 2
