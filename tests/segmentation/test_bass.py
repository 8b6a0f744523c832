from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import label as connected_components

import safeview
from safeview.segmentation.bass import (
    MAX_REGION_FRACTION,
    enforce_connectivity,
    simple_point_table,
    split_large_regions,
)


def _assert_valid(labels: np.ndarray, shape: tuple[int, int]) -> None:
    assert labels.shape == shape
    k = int(labels.max()) + 1
    assert set(np.unique(labels)) == set(range(k))
    for region in range(k):
        _, pieces = connected_components(labels == region)  # 4-connectivity by default
        assert pieces == 1, f"superpixel {region} has {pieces} pieces"


def test_simple_point_table_known_configurations() -> None:
    table = simple_point_table()
    assert not table[0]  # isolated pixel: removing it deletes a component
    assert not table[255]  # interior pixel: removing it makes a hole
    assert table[1 << 1]  # only the top neighbour: an end point
    assert not table[(1 << 1) | (1 << 5)]  # top and bottom only: removing it splits the label
    assert table[(1 << 1) | (1 << 2) | (1 << 3)]  # a corner of a region


def test_two_colour_image_never_straddles_the_edge() -> None:
    yy, xx = np.mgrid[:120, :160]
    inside = (yy - 60) ** 2 + (xx - 70) ** 2 < 40**2
    image = np.where(inside[..., None], [200, 40, 40], [40, 60, 200]).astype(np.uint8)
    labels = safeview.segment(image, "bass", n_segments=30)
    _assert_valid(labels, inside.shape)
    for region in range(int(labels.max()) + 1):
        share = inside[labels == region].mean()
        assert share in (0.0, 1.0), f"superpixel {region} straddles the edge ({share:.2f})"


def test_count_adapts_flat_merges_textured_splits() -> None:
    flat = np.full((160, 240, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    textured = np.kron(rng.integers(0, 256, (40, 60, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    n_flat = int(safeview.segment(flat, "bass", n_segments=100).max()) + 1
    n_textured = int(safeview.segment(textured, "bass", n_segments=100).max()) + 1
    assert n_flat <= 30  # merged well below the initial 100 (each merge step halves at most)
    assert n_textured >= 100  # kept (and split) the initial grid
    assert n_textured >= 4 * n_flat


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    height=st.integers(8, 60),
    width=st.integers(8, 60),
    n_segments=st.integers(1, 40),
    blocky=st.booleans(),
)
def test_every_superpixel_is_connected(
    seed: int, height: int, width: int, n_segments: int, blocky: bool
) -> None:
    rng = np.random.default_rng(seed)
    if blocky:
        small = rng.integers(0, 256, (max(1, height // 6), max(1, width // 6), 3))
        image = np.kron(small, np.ones((6, 6, 1)))[:height, :width]
        image = np.pad(
            image, ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)), mode="edge"
        ).astype(np.uint8)
    else:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    labels = safeview.segment(image, "bass", n_segments=n_segments)
    _assert_valid(labels, (height, width))


def test_enforce_connectivity_absorbs_fragments() -> None:
    labels = np.zeros((10, 10), np.int64)
    labels[:, 5:] = 1
    labels[0, 0] = 1  # a stray fragment of label 1 inside label 0
    labels[9, 9] = 2  # a tiny label
    out = enforce_connectivity(labels, min_size=2)
    _assert_valid(out, (10, 10))
    assert out.max() == 1
    assert out[0, 0] == out[5, 0]


def test_same_input_same_labels() -> None:
    from skimage import data

    image = data.coffee()[::3, ::3]
    first = safeview.segment(image, "bass", seed=0)
    again = safeview.segment(image, "bass", seed=0)
    np.testing.assert_array_equal(first, again)


def test_guided_boundaries_follow_the_attribution() -> None:
    """On a flat image, only the attribution can place boundaries: bass-guided puts them on the
    edge of the attributed disc; plain bass ignores it."""
    yy, xx = np.mgrid[:120, :160]
    disc = (yy - 60) ** 2 + (xx - 80) ** 2 < 30**2
    image = np.full((120, 160, 3), 128, np.uint8)
    attribution = disc.astype(np.float64)

    def purity(labels: np.ndarray) -> float:
        """Fraction of the disc covered by superpixels that lie at least 90% inside it."""
        covered = np.zeros_like(disc)
        for region in np.unique(labels[disc]):
            if disc[labels == region].mean() >= 0.9:
                covered |= labels == region
        return float((covered & disc).sum() / disc.sum())

    guided = safeview.segment(image, "bass-guided", attribution=attribution, n_segments=40)
    plain = safeview.segment(image, "bass", attribution=attribution, n_segments=40)
    assert purity(guided) > 0.9
    assert purity(plain) < 0.5


def test_bass_guided_needs_an_attribution() -> None:
    with pytest.raises(ValueError, match="attribution"):
        safeview.segment(np.zeros((20, 20, 3), np.uint8), "bass-guided")


def test_large_regions_are_cut_until_none_is_larger_than_the_bound() -> None:
    # One region covering most of the image, a few small ones: only the large one is cut.
    labels = np.zeros((60, 80), dtype=np.int64)
    labels[:10, :10], labels[50:, 70:], labels[20:25, 30:35] = 1, 2, 3
    cut = split_large_regions(labels, 0.05)
    _assert_valid(cut, labels.shape)
    sizes = np.bincount(cut.ravel())
    assert sizes.max() <= 0.05 * labels.size
    # The small regions are untouched; the large one is now many pieces that tile it exactly.
    for region in (1, 2, 3):
        assert len(np.unique(cut[labels == region])) == 1
    pieces = np.unique(cut[labels == 0])
    assert len(pieces) >= 16 and not set(pieces) & set(np.unique(cut[labels != 0]))


def test_large_regions_are_cut_only_where_their_attribution_is_uneven() -> None:
    # Left half: one region with even attribution; right half: one region, cold but for a hot
    # 10 x 10 corner. Only the right one is cut, and the hot corner ends in a small piece.
    labels = np.zeros((60, 80), dtype=np.int64)
    labels[:, 40:] = 1
    attribution = np.zeros(labels.shape)
    attribution[:, :40] = 0.5
    attribution[50:, 70:] = 1.0
    cut = split_large_regions(labels, 0.05, attribution=attribution, min_difference=0.03)
    _assert_valid(cut, labels.shape)
    assert len(np.unique(cut[:, :40])) == 1  # even evidence: whole, though 50% of the image
    assert len(np.unique(cut[:, 40:])) >= 2
    hot = np.unique(cut[50:, 70:])
    assert np.isin(cut, hot).sum() <= 0.05 * labels.size
    # A large difference threshold leaves everything whole; none cuts geometrically.
    whole = split_large_regions(labels, 0.05, attribution=attribution, min_difference=0.6)
    assert len(np.unique(whole)) == 2
    geometric = split_large_regions(labels, 0.05, attribution=attribution, min_difference=0.0)
    assert np.bincount(geometric.ravel()).max() <= 0.05 * labels.size


def test_bass_guided_cuts_uneven_large_regions_by_default() -> None:
    xx = np.mgrid[:120, :160][1]
    image = np.full((120, 160, 3), 128, np.uint8)  # flat: BASS alone leaves large regions
    # Attribution that ramps across the image: every large region has uneven halves.
    attribution = xx / 159.0
    default = safeview.segment(image, "bass-guided", attribution=attribution)
    unbounded = safeview.segment(
        image, "bass-guided", attribution=attribution, max_region_fraction=None
    )
    _assert_valid(default, image.shape[:2])
    assert np.bincount(unbounded.ravel()).max() > MAX_REGION_FRACTION * unbounded.size
    assert len(np.unique(default)) > len(np.unique(unbounded))
    # A flat attribution gives no reason to cut: the default equals the unbounded segmentation.
    flat = np.full(image.shape[:2], 0.4)
    np.testing.assert_array_equal(
        safeview.segment(image, "bass-guided", attribution=flat),
        safeview.segment(image, "bass-guided", attribution=flat, max_region_fraction=None),
    )
    with pytest.raises(ValueError, match="max_region_fraction"):
        safeview.segment(image, "bass-guided", attribution=attribution, max_region_fraction=0)
    with pytest.raises(ValueError, match="min_attribution_difference"):
        safeview.segment(
            image, "bass-guided", attribution=attribution, min_attribution_difference=-1
        )
