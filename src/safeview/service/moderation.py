"""``POST /v1/moderations``: OpenAI's moderation API for images, answered from a policy.

A request names a ``model``: one of OpenAI's (``omni-moderation-latest``...) or none, for the
server's policy; ``safeview-<guard>`` for one guard; ``safeview-<policy>`` for a policy the
server offers. Each result has OpenAI's full category set (:data:`OPENAI_CATEGORIES`), in
OpenAI's shape: ``flagged``, ``categories``, ``category_scores`` and
``category_applied_input_types``.

The mapping is data: each policy category lists the OpenAI categories it covers (``"openai"`` in
``policy.json``). An OpenAI category's score is the highest ``score_before`` of the covered
policy categories that name it, flagged when any of them flags; one that no guard covers scores
0.0 with ``category_applied_input_types`` ``[]`` (OpenAI's shape has no null score), so "not
covered" reads apart from "scored safe" (``["image"]``). ``flagged`` is the policy's own
decision: a flagged category that maps to no OpenAI category still flags the result.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from safeview.policy import OPENAI_CATEGORIES, OPENAI_MODEL_NAMES
from safeview.service.errors import ServiceError

if TYPE_CHECKING:
    from safeview.rationale.policy import Policy
    from safeview.report import Report
    from safeview.service.settings import Settings

#: The prefix of safeview's own model names: ``safeview-<guard>``, ``safeview-<policy>``.
MODEL_PREFIX = "safeview-"


@dataclass(frozen=True)
class ModerationRequest:
    """What a moderation request asks: one guard or one policy, and the decoded images."""

    #: The ``model`` the response names: OpenAI's name as sent, else ``safeview-<name>``.
    model: str
    guard: str | None
    policy: Policy | None
    images: list[bytes]


def decode_data_url(url: str) -> bytes:
    if url.startswith(("http://", "https://")):
        raise ServiceError(
            400,
            "unsupported_input",
            "remote image URLs are not fetched; send the image as a data: URL",
        )
    if not url.startswith("data:") or ";base64," not in url:
        raise ServiceError(400, "invalid_image_url", "image_url must be a base64 data: URL")
    try:
        return base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(400, "invalid_image_url", "image_url data is not valid base64") from None


def parse_json(body: bytes) -> Any:
    """The JSON document of ``body``; any malformed, too deep or too large number -> 400."""
    try:
        return json.loads(body or b"null")
    except RecursionError:
        raise ServiceError(400, "invalid_json", "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, int digit limit
        detail = "" if isinstance(exc, json.JSONDecodeError) else f": {exc}"
        raise ServiceError(400, "invalid_json", f"body is not valid JSON{detail}") from None


def resolve_model(model: Any, settings: Settings) -> tuple[str, str | None, Policy | None]:
    """(the response's model name, the guard or None, the policy or None) of a ``model``."""
    if model is None or model == "":
        if settings.guard is not None:
            return MODEL_PREFIX + settings.guard, settings.guard, None
        policy = settings.policy_named(settings.default_policy)
        return MODEL_PREFIX + policy.name, None, policy
    if not isinstance(model, str):
        raise ServiceError(400, "invalid_request", "model must be a string")
    if model in OPENAI_MODEL_NAMES:
        return model, None, settings.policy_named(model)
    name = model.removeprefix(MODEL_PREFIX)
    if name in settings.guards:
        return MODEL_PREFIX + name, name, None
    if name in settings.policies:
        return MODEL_PREFIX + name, None, settings.policy_named(name)
    raise ServiceError(
        422,
        "invalid_request",
        f"model: unknown {model[:100]!r} (omni-moderation-latest or none: the server's policy; "
        f"guards: {', '.join(MODEL_PREFIX + g for g in settings.guards)}; policies: "
        f"{', '.join(MODEL_PREFIX + p for p in settings.policies)})",
    )


def parse_moderation(body: bytes, settings: Settings) -> ModerationRequest:
    """The guard or policy and the decoded images of a moderation request body; runs in a
    worker thread."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or "input" not in payload:
        raise ServiceError(422, "invalid_request", "body needs an 'input' field")
    model, guard, policy = resolve_model(payload.get("model"), settings)
    items = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
    if not items:
        raise ServiceError(422, "invalid_request", "input is empty")
    if len(items) > settings.max_inputs:
        raise ServiceError(
            413,
            "too_many_inputs",
            f"input has {len(items)} items; at most {settings.max_inputs} per request "
            "(SAFEVIEW_MAX_INPUTS)",
        )
    images: list[bytes] = []
    for item in items:
        if isinstance(item, str) or (isinstance(item, dict) and item.get("type") == "text"):
            raise ServiceError(
                400,
                "unsupported_input",
                "text input is not supported: safeview moderates images",
            )
        if not isinstance(item, dict) or item.get("type") != "image_url":
            raise ServiceError(
                422,
                "invalid_request",
                "each input must be {'type': 'image_url', 'image_url': {...}}",
            )
        image_url = item.get("image_url")
        url = image_url.get("url") if isinstance(image_url, dict) else image_url
        if not isinstance(url, str):
            raise ServiceError(422, "invalid_request", "image_url.url must be a string")
        images.append(decode_data_url(url))
    return ModerationRequest(model, guard, policy, images)


def _judged(report: Report, policy: Policy, guard: str | None) -> list[tuple[str, float, bool]]:
    """(policy category, score, flagged) for each category a guard judged. A policy's report
    has them; for one guard (registered as ``guard``), each of its scored categories that
    ``policy`` maps to one of its categories (``guards`` in policy.json, or by name)."""
    if report.categories:
        return [
            (category.id, float(category.score_before or 0.0), bool(category.flagged))
            for category in report.categories
            if category.covered
        ]
    info = report.guard
    judged = []
    for name, score in report.scores_before.items():
        category = policy.category_for(guard or info.name, name)
        if category is None:
            continue
        if name == info.target:
            flagged = bool(report.flagged)
        else:  # the guard's rule for another of its categories
            flagged = info.decision == "threshold" and score >= info.threshold
        judged.append((category.id, float(score), flagged))
    return judged


def moderation_result(report: Report, policy: Policy, guard: str | None = None) -> dict[str, Any]:
    """One result in OpenAI's shape from a classify Report: every OpenAI category, scored by the
    highest score of the policy categories mapped to it; 0.0 and ``[]`` where none is covered.

    ``policy`` is the policy the report checked, or for one guard (``guard``, its registered
    name) the server's policy, whose mapping says what the guard's categories stand for.
    """
    covered: dict[str, list[tuple[float, bool]]] = {name: [] for name in OPENAI_CATEGORIES}
    for key, score, flagged in _judged(report, policy, guard):
        for name in policy.categories[key].openai:
            covered[name].append((score, flagged))
    return {
        "flagged": bool(report.flagged),
        "categories": {name: any(f for _, f in covered[name]) for name in OPENAI_CATEGORIES},
        "category_scores": {
            name: max((s for s, _ in covered[name]), default=0.0) for name in OPENAI_CATEGORIES
        },
        "category_applied_input_types": {
            name: ["image"] if covered[name] else [] for name in OPENAI_CATEGORIES
        },
    }


_IMAGE_INPUT: dict[str, Any] = {
    "type": "object",
    "required": ["type", "image_url"],
    "properties": {
        "type": {"type": "string", "enum": ["image_url"]},
        "image_url": {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string", "description": "a base64 data: URL"}},
        },
    },
}


def _per_category(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(OPENAI_CATEGORIES),
        "properties": {name: schema for name in OPENAI_CATEGORIES},
    }


def moderation_body(settings: Settings | None = None) -> dict[str, Any]:
    """The OpenAPI request body of ``POST /v1/moderations``."""
    guards = ", ".join(MODEL_PREFIX + g for g in settings.guards) if settings else "guards"
    policies = ", ".join(MODEL_PREFIX + p for p in settings.policies) if settings else "policies"
    default = (
        f"{MODEL_PREFIX}{settings.guard}"
        if settings and settings.guard
        else f"the server's policy ({settings.default_policy if settings else 'default'})"
    )
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["input"],
                    "properties": {
                        "model": {
                            "type": "string",
                            "description": (
                                "OpenAI's model names (omni-moderation-latest, ...): the "
                                "server's policy, every category of it; one guard: "
                                f"{guards} (the OpenAI categories the policy maps its "
                                f"categories to); a policy: {policies}. Omitted: {default}."
                            ),
                        },
                        "input": {
                            "oneOf": [
                                _IMAGE_INPUT,
                                {"type": "array", "items": _IMAGE_INPUT, "minItems": 1},
                            ]
                        },
                    },
                }
            }
        },
    }


#: The OpenAPI description of a moderation response (OpenAI's ``ModerationCreateResponse``).
MODERATION_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "OpenAI's moderation response: every OpenAI category for each input; "
        "0.0 and [] where no guard covers a category",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["id", "model", "results"],
                    "properties": {
                        "id": {"type": "string", "description": "modr-..."},
                        "model": {"type": "string"},
                        "results": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": [
                                    "flagged",
                                    "categories",
                                    "category_scores",
                                    "category_applied_input_types",
                                ],
                                "properties": {
                                    "flagged": {"type": "boolean"},
                                    "categories": _per_category({"type": "boolean"}),
                                    "category_scores": _per_category({"type": "number"}),
                                    "category_applied_input_types": _per_category(
                                        {
                                            "type": "array",
                                            "items": {"type": "string", "enum": ["image"]},
                                        }
                                    ),
                                },
                            },
                        },
                    },
                }
            }
        },
    }
}


__all__ = [
    "MODEL_PREFIX",
    "MODERATION_RESPONSE",
    "ModerationRequest",
    "decode_data_url",
    "moderation_body",
    "moderation_result",
    "parse_json",
    "parse_moderation",
    "resolve_model",
]
