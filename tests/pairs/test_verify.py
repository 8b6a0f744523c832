"""Pair verification: label flip and SSIM outside the edit mask."""

from __future__ import annotations

import numpy as np

from safeview.pairs.verify import ssim_outside, verify
from tests.conftest import red_square_image


def test_ssim_ignores_changes_inside_the_mask() -> None:
    before = red_square_image(96)
    mask = np.zeros((96, 96), dtype=bool)
    mask[40:72, 40:72] = True
    after = before.copy()
    after[mask] = (0, 255, 0)
    assert ssim_outside(before, before, mask) == 1.0
    assert ssim_outside(before, after, mask) > 0.999
    worse = after.copy()
    worse[:20] = 255 - worse[:20]  # a change outside the mask
    assert ssim_outside(before, worse, mask) < 0.9
    assert ssim_outside(before, after, np.ones((96, 96), bool)) is None


def test_verify_keeps_a_clean_flip_and_names_each_failure() -> None:
    before = red_square_image(96)
    mask = np.zeros((96, 96), dtype=bool)
    mask[40:72, 40:72] = True
    after = before.copy()
    after[mask] = (90, 140, 90)
    kept = verify(before, after, mask, 0.9, 0.1)
    assert kept.kept and kept.label_flipped and kept.reasons == []
    assert kept.mask_fraction == round(float(mask.mean()), 6)
    assert "SSIM" in kept.measure
    no_flip = verify(before, after, mask, 0.9, 0.7)
    assert not no_flip.kept and "did not flip" in no_flip.reasons[0]
    safe_already = verify(before, after, mask, 0.2, 0.1)
    assert "does not flag the original" in safe_already.reasons[0]
    drift = after.copy()
    drift[:30] = np.clip(drift[:30].astype(int) + 60, 0, 255).astype(np.uint8)
    drift[:30, ::2] = 0
    changed = verify(before, drift, mask, 0.9, 0.1)
    assert not changed.kept and "outside the edit mask" in changed.reasons[0]
    empty = verify(before, before, np.zeros((96, 96), bool), 0.9, 0.1)
    assert "empty mask" in empty.reasons[0]
