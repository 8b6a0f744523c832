"""The service's default is a policy, as in the library: ``SAFEVIEW_GUARD`` unset means the
server's policy (``SAFEVIEW_POLICY``: the built-in one or the operator's file, checked at start).
A request sets ``guard`` or ``policy`` (a name the server offers, never a path), not both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from safeview.guards import load_guard, register_guard
from safeview.policy import OPENAI_MODEL_NAMES
from safeview.rationale.policy import Policy
from safeview.service.app import ServiceError, create_app
from safeview.service.cancel import _WATCHED
from safeview.service.options import request_options
from safeview.service.settings import Settings
from tests.conftest import RedGuard
from tests.service.conftest import (
    UNSAFE,
    policy_settings,
    service_settings,
    wait_ready,
    write_service_policy,
)
from tests.test_policy import BlueGuard

ENV = ("SAFEVIEW_GUARD", "SAFEVIEW_POLICY", "SAFEVIEW_PRELOAD", "SAFEVIEW_GUARD_FILES")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_default_is_the_built_in_policy(env: pytest.MonkeyPatch) -> None:
    for settings in (Settings(), Settings.from_env()):
        assert settings.guard is None and settings.policy == "default"
        assert settings.policies == ("default",) and settings.default_policy == "default"
        assert settings.preload == ("policy",)
    options, _ = request_options({}, Settings())
    assert options.guard is None and options.policy is None  # the library's default policy
    assert options.policy_name == "default"


def test_a_default_guard_is_still_possible(env: pytest.MonkeyPatch) -> None:
    env.setenv("SAFEVIEW_GUARD", "imagenet")
    settings = Settings.from_env()
    assert settings.guard == "imagenet" and settings.preload == ("imagenet",)
    options, _ = request_options({}, settings)
    assert options.guard == "imagenet" and options.policy is None
    env.setenv("SAFEVIEW_GUARD", "")
    assert Settings.from_env().guard is None
    env.setenv("SAFEVIEW_GUARD", "imagenett")
    with pytest.raises(ValueError, match="SAFEVIEW_GUARD: unknown guard 'imagenett'"):
        Settings.from_env()


def test_the_operators_policy_file_is_offered_by_its_stem(
    env: pytest.MonkeyPatch, policy_file: Path
) -> None:
    env.setenv("SAFEVIEW_POLICY", str(policy_file))
    env.setenv("SAFEVIEW_PRELOAD", "policy,house,imagenet")
    settings = Settings.from_env()
    assert settings.policies == ("default", "house") and settings.default_policy == "house"
    options, _ = request_options({}, settings)
    assert isinstance(options.policy, Policy) and options.policy.name == "house"
    # The file was read at start; a request names it and gets the loaded policy.
    assert request_options({"policy": "house"}, settings)[0].policy is options.policy
    for name in sorted(OPENAI_MODEL_NAMES):  # OpenAI's names: the server's policy
        assert request_options({"policy": name}, settings)[0].policy is options.policy
    assert request_options({"policy": "default"}, settings)[0].policy is None  # built in
    env.setenv("SAFEVIEW_POLICY", "omni-moderation-latest")
    env.delenv("SAFEVIEW_PRELOAD")
    assert Settings.from_env().default_policy == "default"


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.json", "neither 'default' nor a policy file"),
        ("{not json", "broken.json", "broken.json: invalid policy file"),
        ("guard", "odd.json", "names guard 'no-such-guard'"),
        ("ok", "default.json", "'default' is a reserved name"),
        ("ok", "imagenet.json", "'imagenet' is both a guard and a policy"),
    ],
)
def test_a_bad_policy_file_stops_the_start(
    env: pytest.MonkeyPatch, tmp_path: Path, content: str | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        source = write_service_policy(tmp_path, name="source")
        text = source.read_text(encoding="utf-8")
        if content == "guard":
            data = json.loads(text)
            data["categories"]["weapons"]["guards"] = [{"guard": "no-such-guard"}]
            text = json.dumps(data)
        path.write_text(content if content.startswith("{") else text, encoding="utf-8")
    env.setenv("SAFEVIEW_POLICY", str(path))
    with pytest.raises(ValueError, match=message) as caught:
        Settings.from_env()
    assert "SAFEVIEW_POLICY" in str(caught.value) or "both a guard" in str(caught.value)


@pytest.mark.parametrize("value", ["policy", "default", "none", "0", "open-nsfw,policy"])
def test_preload_words(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("SAFEVIEW_PRELOAD", value)
    settings = Settings.from_env()
    expected = () if value in ("none", "0") else tuple(value.split(","))
    assert settings.preload == expected
    sources = settings.preload_sources()
    assert [bool(guard) for guard, _ in sources] == [name == "open-nsfw" for name in expected]


def test_request_policy_rules(policy_file: Path) -> None:
    settings = policy_settings(policy_file)
    options, _ = request_options({"guard": "red-square"}, settings)
    assert options.guard == "red-square" and options.policy is None
    for fields, message in [
        ({"guard": "red-square", "policy": "house"}, "give a guard or a policy, not both"),
        ({"policy": str(policy_file)}, "never a file"),  # an existing, valid file
        ({"policy": "/etc/passwd"}, "never a file"),
        ({"policy": "house.json"}, "policy: unknown 'house.json'"),
        ({"guard": "open-nsfw"}, "guard: unknown 'open-nsfw'"),  # not offered here
    ]:
        with pytest.raises(ServiceError) as caught:
            request_options(fields, settings)
        assert caught.value.status == 422 and caught.value.code == "invalid_option", fields
        assert message in caught.value.message, fields


def test_safeguard_with_the_server_policy(policy_client: TestClient, policy_file: Path) -> None:
    response = policy_client.post("/v1/safeguard?style=fill", content=UNSAFE)
    assert response.status_code == 200, response.text
    report = response.json()["report"]
    assert report["policy"] == "house"  # its name: the server's paths are not shown
    assert str(policy_file) not in response.text
    by_id = {category["id"]: category for category in report["categories"]}
    assert by_id["sexually_explicit"]["flagged"] and by_id["violence"]["flagged"]
    assert by_id["sexually_explicit"]["flagged_after"] is False
    assert not by_id["self_harm"]["covered"]
    assert report["success"] is True
    one = policy_client.post("/v1/safeguard?style=fill&guard=blue-disc", content=UNSAFE)
    assert one.status_code == 200 and one.json()["report"]["policy"] is None
    both = policy_client.post("/v1/safeguard?guard=red-square&policy=house", content=UNSAFE)
    assert both.status_code == 422 and "not both" in both.json()["error"]["message"]
    path = policy_client.post("/v1/safeguard", params={"policy": str(policy_file)}, content=UNSAFE)
    assert path.status_code == 422 and path.json()["error"]["code"] == "invalid_option"


def test_config_and_openapi_name_the_policies(policy_client: TestClient) -> None:
    config = policy_client.get("/config").json()
    assert config["default_guard"] is None
    assert config["policies"] == ["default", "house"] and config["default_policy"] == "house"
    assert config["guards"] == ["red-square", "blue-disc"]
    assert policy_client.get("/readyz").json()["guards"] == ["red-square", "blue-disc"]
    spec = policy_client.get("/openapi.json").json()
    safeguard = spec["paths"]["/v1/safeguard"]["post"]
    parameters = {p["name"]: p["schema"] for p in safeguard["parameters"]}
    assert parameters["policy"]["enum"][:2] == ["default", "house"]
    assert "omni-moderation-latest" in parameters["policy"]["enum"]
    assert "not with guard" in parameters["policy"]["description"]
    assert "Default: policy house" in parameters["policy"]["description"]
    moderation = spec["paths"]["/v1/moderations"]["post"]
    model = moderation["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "safeview-red-square" in model["model"]["description"]
    assert "omni-moderation-latest" in model["model"]["description"]
    result = moderation["responses"]["200"]["content"]["application/json"]["schema"]
    scores = result["properties"]["results"]["items"]["properties"]["category_scores"]
    assert "violence/graphic" in scores["required"]


def test_config_with_a_default_guard(client: TestClient) -> None:
    config = client.get("/config").json()
    assert config["default_guard"] == "red-square"
    assert config["policies"] == ["default"] and config["default_policy"] == "default"


def test_every_guard_of_a_policy_checks_the_deadline(tmp_path: Path) -> None:
    # Not preloaded: only the request's own watch can hook the guards of its pipeline.
    register_guard("watch-red", lambda device: RedGuard())
    register_guard("watch-blue", lambda device: BlueGuard())
    data = json.loads(write_service_policy(tmp_path).read_text(encoding="utf-8"))
    data["categories"]["sexually_explicit"]["guards"] = [{"guard": "watch-red"}]
    data["categories"]["violence"]["guards"] = [{"guard": "watch-blue"}]
    path = tmp_path / "watched.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    settings = policy_settings(path, guards=("red-square",), preload=())
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        modules = [load_guard(name, "cpu").module for name in ("watch-red", "watch-blue")]
        assert not any(module in _WATCHED for module in modules)
        response = test_client.post("/v1/safeguard?style=fill", content=UNSAFE)
        assert response.status_code == 200, response.text
        assert all(module in _WATCHED for module in modules)


def test_the_single_guard_settings_still_default_to_it() -> None:
    settings = service_settings()
    assert settings.guard == "red-square" and settings.default_policy == "default"
