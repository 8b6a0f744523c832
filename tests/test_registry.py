"""The one registry type, and every stage's registry built on it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from safeview.registry import Registry
from tests.conftest import RedGuard


class Thing:
    def __init__(self, size: int = 1) -> None:
        self.size = size


def test_register_create_names_contains() -> None:
    things: Registry[Thing] = Registry("thing")
    things.register("b", Thing)

    @things.register("a")
    def make_a(size: int = 2) -> Thing:
        return Thing(size)

    assert make_a().size == 2  # the decorator returns the function itself
    assert things.names() == ["a", "b"]
    assert "a" in things and "c" not in things and 3 not in things
    assert things.create("a").size == 2
    assert things.create("b", size=5).size == 5
    assert list(things) == ["a", "b"] and len(things) == 2


def test_registration_order_kept_when_asked() -> None:
    things: Registry[Thing] = Registry("thing", sort=False)
    things.register("z", Thing)
    things.register("a", Thing)
    assert things.names() == ["z", "a"]


def test_unknown_name_and_bad_option_are_worded_once() -> None:
    things: Registry[Thing] = Registry("segmenter")
    things.register("a", Thing)
    things.register("b", Thing)
    with pytest.raises(ValueError, match=r"^unknown segmenter 'x' \(available: a, b\)$"):
        things.create("x")
    with pytest.raises(ValueError, match=r"^bad option for segmenter 'a': .*colour"):
        things.create("a", colour=3)
    with pytest.raises(ValueError, match="bad option for segmenter 'a'"):
        things.check_options("a", {"colour": 3})
    things.check_options("a", {"size": 3})


def test_factory_taking_any_options_judges_them_itself() -> None:
    things: Registry[Thing] = Registry("thing")
    things.register("loose", lambda **options: Thing(**options))
    things.check_options("loose", {"colour": 1})  # cannot tell from the signature
    with pytest.raises(ValueError, match="bad option for thing 'loose'"):
        things.create("loose", colour=1)


def test_on_change_runs_after_each_registration() -> None:
    seen: list[str] = []
    things: Registry[Thing] = Registry("thing")
    things.on_change(seen.append)
    things.register("a", Thing)
    things.register("a", Thing)
    assert seen == ["a", "a"]


def test_a_bad_name_or_factory_is_refused() -> None:
    things: Registry[Thing] = Registry("thing")
    with pytest.raises(ValueError):
        things.register("", Thing)
    with pytest.raises(TypeError):
        things.register("x", 3)  # type: ignore[call-overload]


def test_register_guard_replaces_a_guard_already_loaded() -> None:
    from safeview.guards import load_guard, register_guard

    first, second = RedGuard(), RedGuard()
    register_guard("registry-test-guard", lambda device: first)
    assert load_guard("registry-test-guard", "cpu") is first
    register_guard("registry-test-guard", lambda device: second)
    assert load_guard("registry-test-guard", "cpu") is second  # not the cached first one


def test_stage_registries_list_the_built_ins() -> None:
    from safeview.attribution import ATTRIBUTIONS, METHODS
    from safeview.counterfactual import SEARCHES
    from safeview.guards import GUARDS
    from safeview.pairs.editors import EDITORS
    from safeview.rationale import BACKENDS, RATIONALES
    from safeview.render import RENDERERS, STYLES
    from safeview.segmentation import SEGMENTERS
    from safeview.train.backbones import BACKBONES

    assert {"open-nsfw", "imagenet"} <= set(GUARDS.names())
    assert ATTRIBUTIONS.names()[: len(METHODS)] == list(METHODS)
    assert {"slic", "felzenszwalb", "watershed", "bass", "bass-guided"} <= set(SEGMENTERS.names())
    assert SEARCHES.names()[:3] == ["coarse-to-fine", "greedy", "powerset"]
    assert RENDERERS.names()[: len(STYLES)] == list(STYLES)
    assert RATIONALES.names()[: len(BACKENDS)] == list(BACKENDS)
    assert EDITORS.names()[:3] == ["obfuscate", "inpaint", "diffusers"]
    assert {"efficientnet-lite0", "resnet50", "open-nsfw"} <= set(BACKBONES.names())


def test_make_renderer_passes_options() -> None:
    from safeview.render import make_renderer

    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.ones((64, 64), dtype=bool)
    light = make_renderer("blur", strength=0.01)
    assert getattr(light, "strength", None) == 0.01
    heavy = make_renderer("blur", strength=0.5)
    # A heavier blur leaves less variation.
    assert heavy.render(image, mask).std() < light.render(image, mask).std()
    with pytest.raises(ValueError, match="bad option for style 'blur'"):
        make_renderer("blur", radius=3)
    with pytest.raises(ValueError, match=r"unknown style 'x' \(available: blur, pixelate"):
        make_renderer("x")


def test_old_names_are_thin_wrappers() -> None:
    from safeview.segmentation import (
        SEGMENTERS,
        available_segmenters,
        make_segmenter,
        register_segmenter,
    )

    class Grid:
        name = "grid"

        def __init__(self, cells: int = 2) -> None:
            self.cells = cells

        def segment(self, image: np.ndarray, attribution: Any = None) -> np.ndarray:
            return np.zeros(image.shape[:2], dtype=np.int32)

    register_segmenter("registry-test-grid", Grid)
    assert "registry-test-grid" in SEGMENTERS
    assert "registry-test-grid" in available_segmenters()
    assert make_segmenter("registry-test-grid", cells=3).cells == 3  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="bad option for segmenter 'registry-test-grid'"):
        make_segmenter("registry-test-grid", rows=3)


def test_a_registered_search_is_made_by_name() -> None:
    from safeview.counterfactual import SEARCHES, make_search

    calls: list[dict[str, Any]] = []

    def factory(**options: Any) -> Any:
        calls.append(options)
        return lambda *args: None

    SEARCHES.register("registry-test-search", factory)
    make_search("registry-test-search", depth=2)
    assert calls == [{"depth": 2}]
    with pytest.raises(ValueError, match="bad option for search 'greedy': top_n"):
        make_search("greedy", top_n=3)
