"""Policy lookups for guards trained by `safeview train` (named by file, category by name)."""

from __future__ import annotations

from safeview.rationale import load_policy


def test_trained_guard_categories_map_to_policy_categories() -> None:
    policy = load_policy()
    assert policy.category_for("open-nsfw", "nsfw").id == "sexually_explicit"  # type: ignore[union-attr]
    for name in ("self-harm", "self_harm", "Self harm"):
        found = policy.category_for("self-harm.pt", name)
        assert found is not None and found.id == "self_harm"
    assert policy.category_for("guard.pt", "cyberbullying").id == "cyberbullying"  # type: ignore[union-attr]
    assert policy.category_for("guard.pt", "symbol") is None
