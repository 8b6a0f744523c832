"""Explain why: rationales grounded in unsafe attributes, chosen by backend name.

``grounded`` (offline default: the guards' own evidence), ``instructblip`` (transformers'
InstructBLIP with a classifier-conditioned instruction) and ``openai`` (any OpenAI-compatible
server with image input). ``explain(image, backend=...)`` returns a :class:`Rationale`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from safeview.rationale.base import Answer, Backend, Context, Prediction, Rationale, condition
from safeview.rationale.policy import Policy, load_policy
from safeview.registry import Registry

#: The built-in backends, in order (``RATIONALES.names()`` also lists registered plug-ins).
BACKENDS = ("grounded", "instructblip", "openai")
#: Every rationale backend by name: ``factory(**options) -> Backend``.
RATIONALES: Registry[Backend] = Registry("rationale backend", sort=False)
_CACHE: dict[tuple[Any, ...], Backend] = {}
_LOCK = threading.Lock()


def _forget(name: str) -> None:
    with _LOCK:
        for key in [key for key in _CACHE if key[0] == name]:
            del _CACHE[key]


RATIONALES.on_change(_forget)


@RATIONALES.register("grounded")
def _grounded(**options: Any) -> Backend:
    from safeview.rationale.grounded import GroundedBackend

    return GroundedBackend(**options)


@RATIONALES.register("instructblip")
def _instructblip(**options: Any) -> Backend:
    from safeview.rationale.instructblip import InstructBlipBackend

    return InstructBlipBackend(**options)


@RATIONALES.register("openai")
def _openai(**options: Any) -> Backend:
    from safeview.rationale.openai_backend import OpenAIBackend

    return OpenAIBackend(**options)


def make_backend(name: str, **options: Any) -> Backend:
    """A backend by name; backends that load models are kept per process (same options)."""
    RATIONALES.factory(name)  # an unknown name fails here, naming what is available
    key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = RATIONALES.factory(name)(**options)
        return _CACHE[key]


def predictions(
    pixels: np.ndarray,
    guards: list[str] | None = None,
    policy: Policy | None = None,
    device: str | None = None,
    report: Any = None,
) -> list[Prediction]:
    """Each guard's probability for its unsafe category, mapped to the policy's categories.

    A Report's ``scores_before`` is reused for its own guard instead of scoring again; a report
    made against a policy gives every judge's score. Without guards or a report: every guard
    of the policy, each judging its categories.
    """
    from safeview.guards import default_target, load_guard, scores

    policy = policy or load_policy()
    found = []
    if report is not None and getattr(report, "categories", None):
        for result in report.categories:
            for judge in result.judges:
                found.append(
                    Prediction(
                        judge["guard"],
                        judge["category"],
                        float(judge["score_before"]),
                        policy.categories.get(result.id)
                        or policy.category_for(judge["guard"], judge["category"]),
                    )
                )
        return found
    if not guards and report is None and policy.judges():
        from safeview.policy import GuardPanel

        panel = GuardPanel(policy=policy, device=device)
        row = panel.score([pixels])
        for judge in panel.bind(row):
            found.append(
                Prediction(
                    judge.guard.name,
                    judge.guard_category,
                    float(judge.score(row)[0]),
                    policy.categories.get(judge.category),
                )
            )
        return found
    names = list(guards or [])
    if report is not None and report.guard.name not in names:
        names.insert(0, report.guard.name)
    for name in names or ["open-nsfw"]:
        if report is not None and name == report.guard.name:
            target = report.guard.target
            probability = float(report.scores_before.get(target, 0.0))
        else:
            guard = load_guard(name, device)
            probs = scores(guard, [pixels])[0]
            target = guard.categories[default_target(guard, probs)]
            probability = float(probs[guard.categories.index(target)])
        found.append(Prediction(name, target, probability, policy.category_for(name, target)))
    return found


def backend_options(
    backend: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    checkpoint: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """The options of a built-in backend from the command line's flags: ``openai`` takes the
    server, model and key; ``instructblip`` the model, a fine-tuned checkpoint and the device;
    the others none."""
    if backend == "openai":
        return {"base_url": base_url, "model": model, "api_key": api_key}
    if backend == "instructblip":
        return {"model": model, "checkpoint": checkpoint, "device": device}
    return {}


def guard_context(
    guards: list[str] | None = None, policy: Policy | None = None, device: str | None = None
) -> Callable[[np.ndarray], Context]:
    """``pixels -> Context``: what ``guards`` predict for an image, under ``policy`` (default:
    the built-in one)."""
    chosen = policy or load_policy()

    def context(pixels: np.ndarray) -> Context:
        return Context(pixels, predictions(pixels, guards, chosen, device), chosen)

    return context


def guard_conditioner(
    guards: list[str] | None = None, policy: Policy | None = None, device: str | None = None
) -> Callable[[np.ndarray, str], str]:
    """``(pixels, question) -> instruction``: ``question`` conditioned on what ``guards``
    predict for the image (the instructions of ``vlm finetune``)."""
    context = guard_context(guards, policy, device)

    def conditioner(pixels: np.ndarray, question: str) -> str:
        return condition(question, context(pixels))[0]

    return conditioner


def explain(
    image: Any,
    backend: str = "grounded",
    *,
    guards: list[str] | None = None,
    questions: bool = False,
    policy: Policy | str | None = None,
    report: Any = None,
    device: str | None = None,
    **options: Any,
) -> Rationale:
    """Why ``image`` is (or is not) unsafe, from ``backend``; ``options`` go to the backend.

    ``report`` (from :func:`safeview.safeguard`) adds what the search obfuscated; ``guards``
    (default: the report's guard, else ``open-nsfw``) condition the instruction.
    """
    from safeview.io import LoadedImage, load_image

    loaded = image if isinstance(image, LoadedImage) else load_image(image)
    from safeview.policy import resolve_policy

    chosen = resolve_policy(policy)
    context = Context(
        pixels=loaded.pixels,
        predictions=predictions(loaded.pixels, guards, chosen, device, report),
        policy=chosen,
        report=report,
    )
    if backend == "instructblip":
        options.setdefault("device", device)
    return make_backend(backend, **options).explain(context, questions=questions)


__all__ = [
    "BACKENDS",
    "RATIONALES",
    "Answer",
    "Context",
    "Policy",
    "Prediction",
    "Rationale",
    "backend_options",
    "condition",
    "explain",
    "guard_conditioner",
    "guard_context",
    "load_policy",
    "make_backend",
    "predictions",
]
