"""The ``weapons`` guard: two exact logits from the ImageNet classifier, checked on real
photographs (foolbox's cannon, BSDS500) and end to end through ``safeguard``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safeview.guards.weapons import WEAPON_CLASSES, WeaponLogits
from tests.guards.photos import foolbox_imagenet, read_rgb, require_bsds


def test_two_logits_give_the_summed_weapon_probability_exactly() -> None:
    torch.manual_seed(0)
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10))
    module = WeaponLogits(classifier, [7, 2, 2], num_classes=10)
    x = torch.randn(5, 3, 2, 2, requires_grad=True)
    logits = module(x)
    assert logits.shape == (5, 2)
    expected = torch.softmax(classifier(x), dim=1)[:, [2, 7]].sum(dim=1)
    torch.testing.assert_close(torch.softmax(logits, dim=1)[:, 1], expected)
    torch.testing.assert_close(torch.softmax(logits, dim=1)[:, 0], 1 - expected)
    logits[:, 1].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_the_weapon_classes_are_the_named_imagenet_classes() -> None:
    from safeview.guards.imagenet import imagenet_categories

    names = imagenet_categories()
    assert {index: names[index] for index in WEAPON_CLASSES} == WEAPON_CLASSES
    assert {"revolver", "rifle", "assault rifle", "cannon"} <= set(WEAPON_CLASSES.values())
    # Not weapons: the bow tie, armour, warplanes.
    assert not {"bow tie", "bulletproof vest", "warplane"} & set(WEAPON_CLASSES.values())


@pytest.fixture(scope="module")
def guard():
    from safeview.guards import load_guard

    return load_guard("weapons", "cpu")


@pytest.mark.slow
def test_custom_classes_are_checked() -> None:
    from safeview.guards.weapons import WeaponsGuard

    with pytest.raises(ValueError, match="ImageNet indices"):
        WeaponsGuard("cpu", classes=[1000])
    tanks = WeaponsGuard("cpu", classes=[847])
    assert tanks.weapon_classes == {847: "tank"}


@pytest.mark.slow
def test_the_cannon_scores_high_and_ordinary_photographs_low(guard) -> None:
    from safeview.guards import load_guard, scores

    photos = foolbox_imagenet()
    probs = scores(guard, [read_rgb(path) for _, path in photos])[:, 1]
    labels = [label for label, _ in photos]
    assert probs[labels.index(471)] > 0.9  # foolbox's cannon (label 471)
    others = np.delete(probs, labels.index(471))
    assert others.max() < 0.2  # a dog, a goose, a jeep, ... : none is a weapon
    # The same numbers as the ImageNet guard's probabilities summed over the weapon classes.
    imagenet = scores(load_guard("imagenet", "cpu"), [read_rgb(path) for _, path in photos])
    np.testing.assert_allclose(imagenet[:, sorted(WEAPON_CLASSES)].sum(axis=1), probs, atol=1e-5)

    bsds = scores(guard, [read_rgb(path) for path in require_bsds()])[:, 1]
    assert len(bsds) == 200
    # BSDS500 holds two photographs of cannons (243095, 385022) and no other weapon.
    assert (bsds >= 0.5).mean() <= 0.02
    assert float(np.median(bsds)) < 0.01


@pytest.mark.slow
def test_safeguard_end_to_end_on_a_small_cannon(guard) -> None:
    from safeview import safeguard
    from safeview.io import resize

    (path,) = [path for label, path in foolbox_imagenet() if label == 471]
    image = resize(read_rgb(path), (128, 128))
    report = safeguard(image, guard="weapons", device="cpu")
    assert report.guard.name == "weapons" and report.guard.target == "weapon"
    assert report.flagged and report.scores_before["weapon"] >= 0.7
    assert report.success, report.error
    assert report.scores_after is not None and report.scores_after["weapon"] < 0.5
    assert report.image is not None and report.image.shape == image.shape
    assert 0 < report.obfuscated_fraction < 0.5 and report.regions
