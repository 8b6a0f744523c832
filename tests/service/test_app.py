"""The HTTP service in-process (FastAPI's TestClient) and over 127.0.0.1 with the official
``openai`` client."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from safeview.policy import OPENAI_CATEGORIES
from safeview.service.app import Settings, create_app
from tests.conftest import red_square_image
from tests.service.conftest import SAFE, UNSAFE, data_url, png, service_settings, wait_ready


def test_health_ready_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    assert "/v1/moderations" in client.get("/openapi.json").json()["paths"]
    assert "Reveal original" in client.get("/").text


def test_moderation_flags_the_unsafe_image_only(client: TestClient) -> None:
    response = client.post(
        "/v1/moderations",
        json={
            "input": [
                {"type": "image_url", "image_url": {"url": data_url(UNSAFE)}},
                {"type": "image_url", "image_url": {"url": data_url(SAFE)}},
            ]
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("modr-") and body["model"] == "safeview-red-square"
    first, second = body["results"]
    assert first["flagged"] is True
    # OpenAI's category set; the built-in policy maps none of red-square's categories, so none
    # is covered (0.0, []), and the guard's own decision still flags the result.
    assert list(first["categories"]) == list(OPENAI_CATEGORIES)
    assert not any(first["categories"].values())
    assert set(first["category_scores"].values()) == {0.0}
    assert all(types == [] for types in first["category_applied_input_types"].values())
    assert second["flagged"] is False


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"input": "some text"}, 400, "unsupported_input"),
        ({"input": [{"type": "text", "text": "hi"}]}, 400, "unsupported_input"),
        (
            {"input": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            400,
            "unsupported_input",
        ),
        (
            {"input": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}}]},
            400,
            "invalid_image_url",
        ),
        (
            {
                "input": [
                    {"type": "image_url", "image_url": {"url": data_url(b"not an image at all")}}
                ]
            },
            415,
            "unsupported_media_type",
        ),
        ({"nope": 1}, 422, "invalid_request"),
        ({"input": [], "model": "llamaguard"}, 422, "invalid_request"),
    ],
)
def test_moderation_bad_input_is_a_json_4xx(
    client: TestClient, payload: object, status: int, code: str
) -> None:
    response = client.post("/v1/moderations", json=payload)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_invalid_json_body(client: TestClient) -> None:
    response = client.post(
        "/v1/moderations", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_safeguard_raw_body_json_and_image(client: TestClient) -> None:
    response = client.post("/v1/safeguard?style=fill&viz=true", content=UNSAFE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["report"]["flagged"] is True and body["report"]["success"] is True
    output = Image.open(io.BytesIO(base64.b64decode(body["image"])))
    assert output.size == (128, 128)
    assert body["visualization"] is not None
    response = client.post("/v1/safeguard", content=UNSAFE, headers={"accept": "image/jpeg"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"  # PNG in, PNG out
    assert response.headers["x-safeview-success"] == "true"


def test_safeguard_multipart_is_parsed_in_memory(client: TestClient, monkeypatch) -> None:
    import importlib.util
    import tempfile

    import starlette.formparsers

    import safeview.service.app as service_app

    spooled: list[str] = []

    def no_temp_files(*args: object, **kwargs: object) -> None:
        spooled.append("temporary file")
        raise AssertionError("the original was spooled to a temporary file")

    # Patched where it is looked up too: Starlette imported SpooledTemporaryFile by name.
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", no_temp_files)
    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", no_temp_files)
    parsed: list[tuple[bytes, list[tuple[str, bytes]]]] = []
    own_parser = service_app.parse_form

    def recording_parser(body: bytes, *args: object, **kwargs: object) -> list[tuple[str, bytes]]:
        parts = own_parser(body, *args, **kwargs)  # type: ignore[arg-type]
        parsed.append((body, parts))
        return parts

    monkeypatch.setattr(service_app, "parse_form", recording_parser)
    big = png(np.kron(red_square_image(), np.ones((8, 8, 1), np.uint8)))
    files = {"file": ("x.png", big, "image/png")}

    if importlib.util.find_spec("python_multipart") is not None:
        # The patch bites: Starlette's own form parser, which spools every file part, fails.
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        async def starlette_form(request: Request) -> PlainTextResponse:
            await request.form()
            return PlainTextResponse("parsed")

        control = Starlette(routes=[Route("/", starlette_form, methods=["POST"])])
        with TestClient(control, raise_server_exceptions=False) as other:
            assert other.post("/", files=files).status_code == 500
        assert spooled
        spooled.clear()

    response = client.post("/v1/safeguard", files=files, data={"style": "fill"})
    assert response.status_code == 200, response.text
    assert response.json()["report"]["style"] == "fill"
    assert not spooled
    # The service's own parser got the whole body in memory and found the original in it.
    assert len(parsed) == 1
    body, parts = parsed[0]
    assert (
        isinstance(body, bytes) and dict(parts)["file"] == big and dict(parts)["style"] == b"fill"
    )


@pytest.mark.parametrize(
    ("content", "query", "status", "code"),
    [
        (b"", "", 400, "invalid_image"),
        (b"hello", "", 415, "unsupported_media_type"),
        (UNSAFE[: len(UNSAFE) // 2], "", 400, "invalid_image"),
        (UNSAFE, "?threshold=abc", 422, "invalid_option"),
        (UNSAFE, "?style=smudge", 422, "invalid_option"),
        (UNSAFE, "?guard=other", 422, "invalid_option"),
    ],
)
def test_safeguard_bad_input(
    client: TestClient, content: bytes, query: str, status: int, code: str
) -> None:
    response = client.post("/v1/safeguard" + query, content=content)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_limits_body_size_pixels_and_api_key(monkeypatch) -> None:
    monkeypatch.setenv("SAFEVIEW_API_KEY", "sekrit")
    settings = service_settings(
        max_body_bytes=50_000, max_pixels=10_000, api_key=Settings.from_env().api_key
    )
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        assert test_client.post("/v1/safeguard", content=UNSAFE).status_code == 401
        auth = {"authorization": "Bearer sekrit"}
        too_big = test_client.post("/v1/safeguard", content=b"x" * 60_000, headers=auth)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"
        bomb = test_client.post("/v1/safeguard", content=UNSAFE, headers=auth)  # 128 x 128
        assert bomb.status_code == 413 and bomb.json()["error"]["code"] == "image_too_large"
        assert test_client.get("/healthz").status_code == 200  # no key needed


def test_busy_server_answers_429_and_timeouts_503() -> None:
    import asyncio

    from safeview.service.app import Limiter, ServiceError

    async def scenario() -> tuple[int, int]:
        limiter = Limiter(slots=1, queue=0)
        slow = asyncio.create_task(limiter.run(5.0, time.sleep, 0.5))
        await asyncio.sleep(0.05)
        with pytest.raises(ServiceError) as busy:
            await limiter.run(5.0, time.sleep, 0.01)
        await slow
        with pytest.raises(ServiceError) as late:
            await limiter.run(0.1, time.sleep, 0.5)
        return busy.value.status, late.value.status

    assert asyncio.run(scenario()) == (429, 503)


def test_official_openai_client_works_unchanged(live_server: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=live_server + "/v1", api_key="unused")
    result = client.moderations.create(
        model="red-square",
        input=[{"type": "image_url", "image_url": {"url": data_url(UNSAFE)}}],
    )
    assert result.model == "safeview-red-square"
    assert result.results[0].flagged is True
    # Every OpenAI category parses; none is covered by this guard (see test_moderation.py).
    assert result.results[0].category_scores.sexual == 0.0
    assert result.results[0].category_applied_input_types.sexual == []


def test_safeguard_with_a_rationale(client: TestClient) -> None:
    response = client.post("/v1/safeguard?style=fill&rationale=grounded", content=UNSAFE)
    assert response.status_code == 200, response.text
    rationale = response.json()["report"]["rationale"]
    assert rationale["backend"] == "grounded" and rationale["text"]
    bad = client.post("/v1/safeguard?rationale=oracle", content=UNSAFE)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_option"


def test_concurrent_requests_all_succeed(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(_: int) -> int:
        return client.post("/v1/safeguard?style=fill", content=UNSAFE).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(post, range(12))) == [200] * 12


def test_trained_guard_files_are_served_by_stem(tmp_path, monkeypatch) -> None:
    from safeview.train import TrainConfig, find_dataset, train_guard
    from tests.train.conftest import write_dataset

    data = find_dataset(write_dataset(tmp_path / "data"), "red")
    checkpoint = tmp_path / "red-probe.pt"
    train_guard(data, checkpoint, TrainConfig("red", backbone="tiny-test", probe=True))
    monkeypatch.setenv("SAFEVIEW_GUARD_FILES", str(checkpoint))
    monkeypatch.setenv("SAFEVIEW_PRELOAD", "red-probe")
    settings = Settings.from_env()
    assert "red-probe" in settings.guards
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        reply = test_client.post(
            "/v1/moderations",
            json={
                "model": "safeview-red-probe",
                "input": [{"type": "image_url", "image_url": {"url": data_url(UNSAFE)}}],
            },
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == "safeview-red-probe"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    monkeypatch.setenv("SAFEVIEW_GUARD_FILES", str(bad))
    with pytest.raises(ValueError, match="not a readable guard checkpoint"):
        Settings.from_env()


def test_preloading_builds_the_guards_onnxruntime_copies_before_the_first_request() -> None:
    import safeview.guards.runtime as runtime
    from safeview.guards import register_guard
    from tests.conftest import RedGuard

    guard = RedGuard()
    register_guard("red-preloaded", lambda device: guard)
    settings = service_settings(
        guard="red-preloaded", guards=("red-preloaded",), preload=("red-preloaded",)
    )
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        cached = runtime._CACHE.get(guard.module)
        assert cached is not None and cached[1] is not None
        response = test_client.post("/v1/safeguard?style=fill", content=UNSAFE)
        assert response.status_code == 200
        assert runtime._CACHE.get(guard.module) == cached  # the same copy, not exported again
