"""Safeguarding against a policy: every category, with the guards that judge it.

A policy (``rationale/policy.json``, or a user's file of the same shape) lists categories; each
names the guards that judge it and a threshold (``"guards": [{"guard": "open-nsfw", "category":
"nsfw", "threshold": 0.5}]``). A category without guards is *not covered*: the report says so
instead of calling it safe. A guard is a registered name or a checkpoint from ``safeview train``
(a relative path is read relative to the policy file's folder; :func:`add_guard` writes a policy
with a checkpoint added to a category).

:class:`GuardPanel` loads the guards of a policy (or one guard) once and scores images with all of
them in one call: their probabilities side by side in one row, so the counterfactual search and
its verification treat the panel as one classifier whose decision is "any judge still flags".
:meth:`GuardPanel.bind` fixes each judge's target on the original image (a top-1 guard's class).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeview.guards import (
    Guard,
    available_guards,
    default_target,
    is_checkpoint_path,
    is_flagged,
    load_guard,
    scores,
    scores_inputs,
)
from safeview.rationale.policy import OPENAI_CATEGORIES, Category, Judge, Policy, load_policy

#: The built-in policy's name.
DEFAULT_POLICY = "default"
#: Model names of OpenAI's moderation endpoint; a stock client sends one of them. They all stand
#: for the built-in policy.
OPENAI_MODEL_NAMES = frozenset(
    {"omni-moderation-latest", "omni-moderation-2024-09-26", "text-moderation-latest",
     "text-moderation-stable", "text-moderation-007"}
)  # fmt: skip


def resolve_policy(policy: str | Path | Policy | None) -> Policy:
    """A :class:`Policy` from a name (``"default"`` or an OpenAI moderation model name), a JSON
    file's path, or a Policy. A bad file is a ``ValueError`` naming it."""
    if isinstance(policy, Policy):
        return policy
    if policy is None or str(policy) == DEFAULT_POLICY or str(policy) in OPENAI_MODEL_NAMES:
        return load_policy()
    path = Path(policy)
    if not path.is_file():
        raise ValueError(f"unknown policy {str(policy)!r}: not {DEFAULT_POLICY!r} and no such file")
    return load_policy(path)


def judge_source(policy: Policy, guard: str) -> str:
    """Where a judge's guard loads from: a registered name as is; a relative checkpoint path in
    a policy file relative to that file's folder when the checkpoint is there (else to the
    working directory), so a policy and its checkpoints can move together."""
    if policy.name == DEFAULT_POLICY or guard in available_guards() or os.path.isabs(guard):
        return guard
    beside = Path(policy.name).parent / guard
    return str(beside) if beside.is_file() else guard


def add_guard(
    policy: str | Path | None,
    category: str,
    guard: str | Path,
    guard_category: str | None,
    threshold: float,
    output: str | Path,
) -> Path:
    """Write ``output``: a copy of ``policy`` (a name or a file, as :func:`resolve_policy`) with
    ``guard`` added to the judges of ``category`` (an id, or a name :meth:`Policy.category_for`
    accepts), reading ``guard_category`` at ``threshold``; a judge of the same guard there is
    replaced. A checkpoint in the new file's folder is written as its file name, elsewhere as an
    absolute path; the source file's relative checkpoint paths are rewritten to still point to
    their files. ``ValueError`` for a category the policy does not have."""
    from safeview.io import atomic_write

    chosen = resolve_policy(policy)
    found = chosen.category_for("", category)
    if found is None:
        raise ValueError(
            f"{category!r} is not a category of policy {chosen.name} "
            f"(its categories: {', '.join(chosen.categories)})"
        )
    if chosen.name == DEFAULT_POLICY:
        text = resources.files("safeview.rationale").joinpath("policy.json").read_text("utf-8")
    else:
        text = Path(chosen.name).read_text(encoding="utf-8")
    data = json.loads(text)
    output = Path(output)
    folder = output.resolve().parent

    def written(name: str) -> str:
        """A checkpoint's path as the new file names it (a registered name as is)."""
        if name in available_guards() or not is_checkpoint_path(judge_source(chosen, name)):
            return name
        path = Path(judge_source(chosen, name)).resolve()
        return path.name if path.parent == folder else str(path)

    for entry in data["categories"].values():
        for judge in entry.get("guards", []):
            if isinstance(judge, dict) and isinstance(judge.get("guard"), str):
                judge["guard"] = written(judge["guard"])
    added = written(str(guard))
    judge_entry: dict[str, Any] = {"guard": added, "threshold": threshold}
    if guard_category is not None:
        judge_entry["category"] = guard_category
    entry = data["categories"][found.id]
    entry["guards"] = [j for j in entry.get("guards", []) if j.get("guard") != added]
    entry["guards"].append(judge_entry)
    atomic_write(output, (json.dumps(data, indent=2) + "\n").encode())
    load_policy(output)  # what was written reads back
    return output


@dataclass(frozen=True)
class BoundJudge:
    """A judge with its guard loaded and its target fixed: where its probabilities sit in the
    panel's row, which of them it reads, and its rule."""

    category: str  # the policy category (for one guard: the guard's target category)
    category_name: str
    guard: Guard
    offset: int
    target: int
    threshold: float

    @property
    def guard_category(self) -> str:
        return self.guard.categories[self.target]

    def probabilities(self, probs: np.ndarray) -> np.ndarray:
        """This judge's guard's (B, C) probabilities from the panel's (B, total) rows."""
        probs = np.atleast_2d(probs)
        return probs[:, self.offset : self.offset + len(self.guard.categories)]

    def score(self, probs: np.ndarray) -> np.ndarray:
        """p(target) for each row."""
        return self.probabilities(probs)[:, self.target]

    def flags(self, probs: np.ndarray, margin: float = 0.0) -> np.ndarray:
        return is_flagged(
            self.guard, self.probabilities(probs), self.target, self.threshold, margin
        )

    def strength(self, probs: np.ndarray) -> float:
        """How far above its threshold the first row is (ratio; top-1 guards: 1 + p)."""
        score = float(self.score(probs)[0])
        if self.guard.decision == "top1":
            return 1.0 + score
        return score / self.threshold


class GuardPanel:
    """The guards of a policy, or one guard, loaded on one device and scored together.

    ``guard`` set: a panel of that one guard (``threshold`` applies to it, its own target rule).
    Otherwise every guard of ``policy`` (default: the built-in one), each judge with its
    category's threshold.
    """

    def __init__(
        self,
        *,
        guard: str | Guard | None = None,
        policy: str | Path | Policy | None = None,
        threshold: float = 0.5,
        device: str | torch.device | None = None,
    ) -> None:
        self.policy: Policy | None = None
        self.single = guard is not None
        self.guards: list[Guard] = []
        self._specs: list[tuple[str, str, str | None, int, float]] = []
        if guard is not None:
            loaded = load_guard(guard, device)
            self.guards.append(loaded)
            self._specs.append(("", "", None, 0, threshold))
            self.name = loaded.name
            self.offsets = [0]
            return
        self.policy = resolve_policy(policy)
        self.name = self.policy.name
        index: dict[str, int] = {}
        for category, judge in self.policy.judges():
            if judge.guard not in index:
                index[judge.guard] = len(self.guards)
                self.guards.append(load_guard(judge_source(self.policy, judge.guard), device))
            loaded = self.guards[index[judge.guard]]
            if judge.category is not None and judge.category not in loaded.categories:
                raise ValueError(
                    f"policy {self.name}: category {category.id} reads {judge.category!r} of "
                    f"guard {judge.guard!r}, which has {', '.join(loaded.categories[:10])}"
                )
            self._specs.append(
                (category.id, category.name, judge.category, index[judge.guard], judge.threshold)
            )
        if not self.guards:
            raise ValueError(f"policy {self.name}: no category has a guard; nothing can be judged")
        self.offsets = list(np.cumsum([0] + [len(g.categories) for g in self.guards[:-1]]))

    @property
    def categories(self) -> list[Category]:
        """The policy's categories, covered or not (none for a one-guard panel)."""
        return list(self.policy.categories.values()) if self.policy is not None else []

    def score(
        self,
        images: list[np.ndarray],
        *,
        only: set[int] | None = None,
        fill: np.ndarray | None = None,
    ) -> np.ndarray:
        """(B, total): every guard's probabilities for each image, side by side.

        ``only`` (indices into :attr:`guards`) scores just those guards; the others' columns
        repeat ``fill`` (a row, e.g. the original image's), as if unchanged. The search uses it
        to score candidates with the guards that flagged; the output is verified with all."""
        return self._side_by_side(
            len(images),
            {
                index: lambda guard: scores(guard, images, batch_size=max(len(images), 1))
                for index in range(len(self.guards))
                if only is None or index in only
            },
            fill,
        )

    def score_inputs(self, inputs: dict[int, torch.Tensor], *, fill: np.ndarray) -> np.ndarray:
        """As :meth:`score` with ``only`` the keys of ``inputs``: each of those guards scores
        its module's input, already made (a candidate composed from region deltas, see
        :mod:`safeview.counterfactual.inputs`)."""
        counts = {len(x) for x in inputs.values()}
        if len(counts) != 1:
            raise ValueError(f"score_inputs needs one batch size for every guard, got {counts}")
        (count,) = counts
        return self._side_by_side(
            count,
            {
                index: partial(scores_inputs, inputs=x, batch_size=max(count, 1))
                for index, x in inputs.items()
            },
            fill,
        )

    def _side_by_side(
        self,
        count: int,
        scorers: dict[int, Callable[[Guard], np.ndarray]],
        fill: np.ndarray | None,
    ) -> np.ndarray:
        """(count, total): ``scorers[index](guard)`` for the guards it names, ``fill``'s columns
        repeated for the others."""
        parts = []
        for index, guard in enumerate(self.guards):
            if index in scorers:
                parts.append(scorers[index](guard))
            else:
                if fill is None:
                    raise ValueError("score(only=...) needs the fill row for the other guards")
                width = len(guard.categories)
                start = self.offsets[index]
                row = np.atleast_2d(fill)[0, start : start + width]
                parts.append(np.tile(row, (count, 1)))
        return np.concatenate(parts, axis=1)

    def index_of(self, guard: Guard) -> int:
        """The position of ``guard`` in :attr:`guards`."""
        return next(i for i, g in enumerate(self.guards) if g is guard)

    def bind(self, probs: np.ndarray) -> list[BoundJudge]:
        """The judges with their targets fixed on the original image's row ``probs``: a named
        guard category, else the guard's default target (its unsafe category, or the top-1
        class)."""
        row = np.atleast_2d(probs)[0]
        offsets = self.offsets
        judges = []
        for category, name, guard_category, index, threshold in self._specs:
            guard = self.guards[index]
            own = row[offsets[index] : offsets[index] + len(guard.categories)]
            target = (
                guard.categories.index(guard_category)
                if guard_category is not None
                else default_target(guard, own)
            )
            if self.single:
                category = name = guard.categories[target]
            judges.append(BoundJudge(category, name, guard, int(offsets[index]), target, threshold))
        return judges


def any_flagged(judges: list[BoundJudge], probs: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Whether each row still carries any judge's decision (fails closed on non-finite rows)."""
    probs = np.atleast_2d(probs)
    flags = np.zeros(len(probs), dtype=bool)
    for judge in judges:
        flags |= judge.flags(probs, margin)
    return flags


def primary(judges: list[BoundJudge], probs: np.ndarray) -> BoundJudge:
    """The judge the report names first: the flagged one furthest above its threshold, else the
    one closest to it."""
    flagged = [j for j in judges if bool(j.flags(probs)[0])]
    return max(flagged or judges, key=lambda j: j.strength(probs))


__all__ = [
    "DEFAULT_POLICY",
    "OPENAI_CATEGORIES",
    "OPENAI_MODEL_NAMES",
    "BoundJudge",
    "Category",
    "GuardPanel",
    "Judge",
    "Policy",
    "add_guard",
    "any_flagged",
    "judge_source",
    "load_policy",
    "primary",
    "resolve_policy",
]
