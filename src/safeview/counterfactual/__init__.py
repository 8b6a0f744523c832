"""Counterfactual search: which regions must be obfuscated for the guard's decision to flip."""

from safeview.counterfactual.greedy import Counterfactual, greedy_search, region_means

__all__ = ["Counterfactual", "greedy_search", "region_means"]
