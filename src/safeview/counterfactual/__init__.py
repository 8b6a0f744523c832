"""Counterfactual search: which regions must be obfuscated for the guard's decision to flip.

Searches are chosen by name (:func:`make_search`): ``"coarse-to-fine"`` (default) refines a flip
found on a coarse region hierarchy; ``"greedy"`` is the paper's prefix search by mean attribution;
``"powerset"`` scores every subset of the top regions in order of area (a costly comparator).
A search maps (predict, still_flagged, render, labels, attribution, image) to a Counterfactual;
:func:`search_verified` (``verify.py``) runs one and verifies its flip on the full-resolution,
encoded output, trying larger flips and wider margins when it does not hold.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import numpy as np

from safeview.counterfactual.coarse_to_fine import check_options, coarse_to_fine_search
from safeview.counterfactual.gradient import RegionGradient
from safeview.counterfactual.greedy import (
    Counterfactual,
    Predict,
    ScoreSets,
    StillFlagged,
    greedy_search,
    region_means,
)
from safeview.counterfactual.hierarchy import Hierarchy, build_hierarchy
from safeview.counterfactual.powerset import powerset_search
from safeview.counterfactual.verify import Rendered, Verified, search_verified
from safeview.registry import Registry

DEFAULT_SEARCH = "coarse-to-fine"


class Search(Protocol):
    def __call__(
        self,
        predict: Predict,
        still_flagged: StillFlagged,
        render: Callable[[np.ndarray], np.ndarray],
        labels: np.ndarray,
        attribution: np.ndarray,
        image: np.ndarray,
    ) -> Counterfactual: ...


def _ignoring_image(function: Callable[..., Counterfactual]) -> Callable[..., Counterfactual]:
    """A search that works on labels and attribution alone, with the common signature."""

    def search(
        predict: Predict,
        still_flagged: StillFlagged,
        render: Callable[[np.ndarray], np.ndarray],
        labels: np.ndarray,
        attribution: np.ndarray,
        image: np.ndarray,
        *,
        score_sets: ScoreSets | None = None,
        **options: Any,
    ) -> Counterfactual:
        return function(
            predict, still_flagged, render, labels, attribution, score_sets=score_sets, **options
        )

    return search


_greedy = _ignoring_image(greedy_search)
_powerset = _ignoring_image(powerset_search)


def _coarse_to_fine(
    predict: Predict,
    still_flagged: StillFlagged,
    render: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    attribution: np.ndarray,
    image: np.ndarray,
    *,
    factor: float = 2.0,
    attribution_weight: float = 1.0,
    region_gradient: RegionGradient | None = None,
    score_sets: ScoreSets | None = None,
    **options: Any,
) -> Counterfactual:
    hierarchy = build_hierarchy(
        labels, image, attribution, factor=factor, attribution_weight=attribution_weight
    )
    return coarse_to_fine_search(
        predict,
        still_flagged,
        render,
        hierarchy,
        region_gradient=region_gradient,
        score_sets=score_sets,
        **options,
    )


def _keywords(*functions: Callable[..., Any]) -> frozenset[str]:
    names: set[str] = set()
    for function in functions:
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
                names.add(parameter.name)
    return frozenset(names)


class SearchFactory:
    """``factory(**options) -> Search``: ``function`` with ``options`` bound, after checking them
    against ``allowed`` (the keyword-only parameters of the search and what it calls)."""

    def __init__(
        self,
        name: str,
        function: Callable[..., Counterfactual],
        allowed: frozenset[str],
        check: Callable[..., None] | None = None,
    ):
        self.name, self.function, self.allowed, self.check = name, function, allowed, check

    def __call__(self, **options: Any) -> Search:
        unknown = sorted(set(options) - self.allowed)
        if unknown:
            raise ValueError(
                f"bad option for search {self.name!r}: {', '.join(unknown)} "
                f"(available: {', '.join(sorted(self.allowed))})"
            )
        if self.check is not None:
            self.check(**options)
        search: Search = partial(self.function, **options)
        return search


#: Every search by name: ``factory(**options) -> Search`` (registration order: the default first).
SEARCHES: Registry[Search] = Registry("search", sort=False)
SEARCHES.register(
    "coarse-to-fine",
    SearchFactory(
        "coarse-to-fine",
        _coarse_to_fine,
        _keywords(_coarse_to_fine, coarse_to_fine_search),
        check_options,
    ),
)
SEARCHES.register("greedy", SearchFactory("greedy", _greedy, _keywords(greedy_search)))
SEARCHES.register("powerset", SearchFactory("powerset", _powerset, _keywords(powerset_search)))


def available_searches() -> list[str]:
    return SEARCHES.names()


def make_search(name: str, **options: Any) -> Search:
    """The search ``name`` with ``options`` bound (e.g. ``max_regions`` for greedy)."""
    return SEARCHES.create(name, **options)


__all__ = [
    "DEFAULT_SEARCH",
    "SEARCHES",
    "Counterfactual",
    "Hierarchy",
    "Rendered",
    "Search",
    "SearchFactory",
    "Verified",
    "available_searches",
    "build_hierarchy",
    "coarse_to_fine_search",
    "greedy_search",
    "make_search",
    "powerset_search",
    "region_means",
    "search_verified",
]
