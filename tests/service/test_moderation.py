"""``POST /v1/moderations`` in OpenAI's shape: every OpenAI category, scored from the policy's
categories through their ``"openai"`` mapping; 0.0 and ``[]`` where no guard covers one. With the
tiny policy of the conftest (red square: sexually explicit -> ``sexual``; blue disc: violence ->
``violence``, ``violence/graphic``) and the official ``openai`` client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from safeview.policy import OPENAI_CATEGORIES, load_policy
from safeview.service.moderation import moderation_result
from tests.service.conftest import (
    SAFE,
    UNSAFE,
    data_url,
    png,
    policy_settings,
    red_only_image,
    serving,
    write_service_policy,
)

RED_ONLY = png(red_only_image())
SCORED = {"sexual", "violence", "violence/graphic"}  # what the tiny policy's guards cover


def moderate(client: TestClient, *images: bytes, **fields: Any) -> httpx.Response:
    inputs = [{"type": "image_url", "image_url": {"url": data_url(image)}} for image in images]
    return client.post("/v1/moderations", json={"input": inputs, **fields})


def assert_openai_shape(result: dict[str, Any]) -> None:
    assert set(result) == {
        "flagged",
        "categories",
        "category_scores",
        "category_applied_input_types",
    }
    for key in ("categories", "category_scores", "category_applied_input_types"):
        assert list(result[key]) == list(OPENAI_CATEGORIES), key
    assert all(isinstance(v, bool) for v in result["categories"].values())
    assert all(isinstance(v, float) for v in result["category_scores"].values())


def test_the_built_in_mapping() -> None:
    # The table in the README: which OpenAI categories each policy category covers.
    sources = load_policy().openai_sources()
    assert {name: [c.id for c in cats] for name, cats in sources.items()} == {
        "harassment": ["cyberbullying"],
        "harassment/threatening": ["cyberbullying"],
        "hate": [],
        "hate/threatening": [],
        "illicit": [],
        "illicit/violent": ["weapons"],
        "self-harm": ["self_harm"],
        "self-harm/instructions": ["self_harm"],
        "self-harm/intent": ["self_harm"],
        "sexual": ["sexually_explicit"],
        "sexual/minors": [],
        "violence": ["violence"],
        "violence/graphic": ["violence"],
    }
    # Every category of the policy reaches OpenAI's shape: none flags unseen.
    assert all(category.openai for category in load_policy().categories.values())


def test_the_server_policy_answers_with_every_openai_category(policy_client: TestClient) -> None:
    response = moderate(policy_client, UNSAFE, RED_ONLY, SAFE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("modr-") and body["model"] == "safeview-house"
    both, red, safe = body["results"]
    for result in (both, red, safe):
        assert_openai_shape(result)
        # Scored where a guard covers the category, "not covered" (0.0, []) elsewhere.
        for name in OPENAI_CATEGORIES:
            applied = result["category_applied_input_types"][name]
            assert applied == (["image"] if name in SCORED else []), name
            if name not in SCORED:
                assert result["category_scores"][name] == 0.0
                assert result["categories"][name] is False
    assert both["flagged"] and red["flagged"] and not safe["flagged"]
    assert both["categories"]["sexual"] and both["categories"]["violence"]
    assert both["categories"]["violence/graphic"]  # one policy category, two OpenAI ones
    assert both["category_scores"]["violence"] == both["category_scores"]["violence/graphic"]
    assert red["categories"]["sexual"] and not red["categories"]["violence"]
    assert red["category_scores"]["sexual"] > 0.5 > red["category_scores"]["violence"]
    assert not any(safe["categories"].values())


@pytest.mark.parametrize("model", ["omni-moderation-latest", "omni-moderation-2024-09-26"])
def test_openai_model_names_mean_the_server_policy(policy_client: TestClient, model: str) -> None:
    response = moderate(policy_client, RED_ONLY, model=model)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == model  # echoed, as OpenAI does
    assert body["results"][0]["categories"]["sexual"] is True
    assert body["results"][0]["category_applied_input_types"]["violence"] == ["image"]


def test_one_guard_covers_what_the_policy_maps_its_categories_to(
    policy_client: TestClient,
) -> None:
    response = moderate(policy_client, UNSAFE, model="safeview-red-square")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "safeview-red-square"
    result = body["results"][0]
    assert_openai_shape(result)
    # red-square's "unsafe" judges sexually_explicit in the server's policy: sexual only.
    assert result["categories"]["sexual"] is True and result["flagged"] is True
    assert result["category_applied_input_types"]["sexual"] == ["image"]
    assert result["category_applied_input_types"]["violence"] == []  # not this guard's
    assert result["category_scores"]["violence"] == 0.0


@pytest.mark.parametrize(
    "model", ["llamaguard", "safeview-nope", "/etc/passwd", "../house.json", "house.json"]
)
def test_unknown_models_and_paths_are_refused(
    policy_client: TestClient, policy_file: Path, model: str
) -> None:
    response = moderate(policy_client, SAFE, model=model)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    # The operator's file is offered by name, and its path is never shown.
    assert "safeview-house" in error["message"] and str(policy_file) not in error["message"]
    assert moderate(policy_client, SAFE, model=str(policy_file)).status_code == 422


def test_the_highest_mapped_score_wins_and_unmapped_flags_still_flag(tmp_path: Path) -> None:
    import safeview

    # violence also maps to "sexual"; sexually_explicit maps to nothing.
    path = write_service_policy(tmp_path, violence=["sexual"], sexually_explicit=[])
    policy = load_policy(path)
    red = safeview.classify(red_only_image(), policy=policy)
    result = moderation_result(red, policy)
    by_id = {category.id: category for category in red.categories}
    # The red square flags sexually_explicit, which maps to no OpenAI category: the result is
    # still flagged (fail closed), although no OpenAI category is.
    assert result["flagged"] is True and not any(result["categories"].values())
    assert result["category_scores"]["sexual"] == by_id["violence"].score_before
    both = safeview.classify(UNSAFE, policy=policy)
    result = moderation_result(both, policy)
    assert result["categories"]["sexual"] is True  # the blue disc, through violence
    assert result["category_applied_input_types"]["violence"] == []


def test_a_policy_with_an_unknown_openai_category_is_refused_at_start(tmp_path: Path) -> None:
    path = write_service_policy(tmp_path, violence=["gore"])
    with pytest.raises(ValueError, match=r"SAFEVIEW_POLICY: .*unknown OpenAI moderation category"):
        policy_settings(path)


def test_the_official_openai_client_parses_the_response(policy_file: Path) -> None:
    from openai import OpenAI
    from openai.types import ModerationCreateResponse

    with serving(policy_settings(policy_file)) as url:
        client = OpenAI(base_url=url + "/v1", api_key="unused")
        image = [{"type": "image_url", "image_url": {"url": data_url(RED_ONLY)}}]
        reply = client.moderations.create(model="omni-moderation-latest", input=image)
        assert reply.id.startswith("modr-") and reply.model == "omni-moderation-latest"
        (result,) = reply.results
        assert result.flagged is True
        assert result.categories.sexual is True and result.categories.violence is False
        assert result.categories.self_harm is False and result.categories.illicit_violent is False
        assert result.category_scores.sexual > 0.5
        assert result.category_scores.hate == 0.0
        assert result.category_applied_input_types.sexual == ["image"]
        assert result.category_applied_input_types.violence_graphic == ["image"]
        assert result.category_applied_input_types.self_harm_intent == []
        assert result.category_applied_input_types.harassment == []
        # Without a model the stock client sends none: the server's policy.
        default = client.moderations.create(input=image)
        assert default.model == "safeview-house" and default.results[0].categories.sexual
        # The raw JSON validates strictly against OpenAI's own response type.
        raw = httpx.post(
            url + "/v1/moderations", json={"model": "omni-moderation-latest", "input": image}
        )
        ModerationCreateResponse.model_validate(raw.json())


@pytest.mark.slow
def test_the_default_policy_on_a_photograph() -> None:
    """The built-in policy with its real guards, through the official client: a BSDS500
    landscape is not flagged, and every OpenAI category is present, scored where the policy's
    guards cover it."""
    from openai import OpenAI

    from safeview.service.settings import Settings

    root = Path(__file__).resolve().parents[2]
    photos = sorted((root.parent / "shared/data/bsds500/images/test").glob("*.jpg"))
    assert photos, "BSDS500 is missing"
    policy = load_policy()
    covered = {
        name
        for name, categories in policy.openai_sources().items()
        if any(category.judges for category in categories)
    }
    assert "sexual" in covered
    settings = Settings(device="cpu")
    assert settings.guard is None and settings.preload == ("policy",)
    with serving(settings) as url:
        client = OpenAI(base_url=url + "/v1", api_key="unused")
        image = [{"type": "image_url", "image_url": {"url": data_url(photos[0].read_bytes())}}]
        reply = client.moderations.create(model="omni-moderation-latest", input=image)
    (result,) = reply.results
    assert result.flagged is False
    scores = result.category_scores.model_dump(by_alias=True)
    applied = result.category_applied_input_types.model_dump(by_alias=True)
    flags = result.categories.model_dump(by_alias=True)
    assert list(scores) == list(applied) == list(flags) == list(OPENAI_CATEGORIES)
    for name in OPENAI_CATEGORIES:
        assert applied[name] == (["image"] if name in covered else []), name
        assert flags[name] is False
        assert 0.0 <= scores[name] < 0.5
