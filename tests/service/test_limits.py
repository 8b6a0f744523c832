"""The service's bounds: each bad or expensive request fails alone, with a clear 4xx/5xx JSON error,
and neither stalls the rest nor holds memory or a worker after its deadline."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from safeview.guards import register_guard
from safeview.service.app import Limiter, ServiceError, Settings, create_app
from safeview.service.cancel import checkpoint
from tests.conftest import RedGuard
from tests.service.conftest import UNSAFE, data_url, service_settings, serving, wait_ready


class SlowRedGuard(RedGuard):
    """The red-square guard at 250 ms a forward pass, counting its passes."""

    name = "slow-red"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

        def slow(_module: Any, _inputs: Any, _output: Any) -> None:
            self.calls += 1  # after the forward pass: a cancelled pass is not counted
            time.sleep(0.25)

        self.module.register_forward_hook(slow)


SLOW = SlowRedGuard()
register_guard("slow-red", lambda device: SLOW)


def test_timed_out_work_stops_at_its_next_batch() -> None:
    from safeview.pipeline import safeguard

    settings = service_settings(
        guard="slow-red",
        guards=("slow-red",),
        preload=("slow-red",),
        timeout_s=0.4,
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        safeguard(UNSAFE, "red-square", style="fill")  # compiled: the slow guard dominates
        SLOW.calls = 0
        response = client.post("/v1/safeguard?style=fill", content=UNSAFE)  # ~4 passes
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "timeout"
        time.sleep(0.3)  # the pass running at the deadline finishes
        calls = SLOW.calls
        time.sleep(1.0)  # work left running would make its remaining passes here
        assert calls >= 1
        assert SLOW.calls == calls, "the timed-out search kept running"


def test_a_timed_out_request_keeps_its_slot_until_its_work_stops() -> None:
    stop = threading.Event()

    def stubborn() -> None:  # never checks for cancellation
        stop.wait(5)

    def cooperative() -> None:
        for _ in range(100):
            checkpoint()
            time.sleep(0.02)

    async def scenario() -> None:
        limiter = Limiter(slots=1, queue=0)
        with pytest.raises(ServiceError) as late:
            await limiter.run(0.1, stubborn)
        assert late.value.status == 503
        with pytest.raises(ServiceError) as busy:  # the slot is still held by stubborn()
            await limiter.run(1.0, time.sleep, 0)
        assert busy.value.status == 429
        stop.set()
        await asyncio.sleep(0.2)
        assert limiter.active == 0
        await limiter.run(1.0, time.sleep, 0)  # freed once stubborn() returned
        started = time.monotonic()
        with pytest.raises(ServiceError):
            await limiter.run(0.1, cooperative)
        await asyncio.sleep(0.1)
        assert limiter.active == 0  # cooperative() stopped at its next checkpoint
        assert time.monotonic() - started < 1.0
        limiter.close()

    asyncio.run(scenario())


def test_moderation_caps_the_number_of_inputs(client: TestClient) -> None:
    item = {"type": "image_url", "image_url": {"url": data_url(UNSAFE)}}
    response = client.post("/v1/moderations", json={"input": [item] * 17})
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "too_many_inputs" and "16" in error["message"]
    assert client.post("/v1/moderations", json={"input": [item] * 16}).status_code == 200


def test_slow_attribution_and_model_backends_are_operator_only(client: TestClient) -> None:
    slow = client.post("/v1/safeguard?attribution=ablationcam", content=UNSAFE)
    assert slow.status_code == 422 and "not enabled" in slow.json()["error"]["message"]
    blip = client.post("/v1/safeguard?rationale=instructblip", content=UNSAFE)
    assert blip.status_code == 422 and "not enabled" in blip.json()["error"]["message"]


def test_instructblip_needs_a_local_model_folder(tmp_path, monkeypatch) -> None:
    from safeview.service.options import request_options

    with pytest.raises(ValueError, match="local model folder"):
        service_settings(rationales=("grounded", "instructblip"))
    with pytest.raises(ValueError, match="local model folder"):  # a hub id is not a folder
        service_settings(
            rationales=("instructblip",), instructblip_model="Salesforce/instructblip-vicuna-7b"
        )
    monkeypatch.setenv("SAFEVIEW_ATTRIBUTIONS", "fullgrad,ablationcam")
    monkeypatch.setenv("SAFEVIEW_RATIONALES", "grounded,instructblip")
    monkeypatch.setenv("SAFEVIEW_INSTRUCTBLIP_MODEL", str(tmp_path))
    monkeypatch.setenv("SAFEVIEW_PRELOAD", "")
    settings = Settings.from_env()
    options, _ = request_options(
        {"guard": "open-nsfw", "rationale": "instructblip", "attribution": "ablationcam"}, settings
    )
    assert options.rationale_options == {"model": str(tmp_path)}
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    create_app(settings)
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": 5, "input": []}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"input": [], "n": ' + b"7" * 5000 + b"}",
        b'{"model": {"a": 1}, "input": [1]}',
    ],
    ids=["model-not-a-string", "nested-100k", "5000-digit-int", "model-object"],
)
def test_hostile_json_is_a_400(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/v1/moderations", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("invalid_json", "invalid_request")


def _multipart(parts: list[bytes], boundary: bytes = b"b0undary") -> tuple[bytes, str]:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + b"--" + boundary + b"--\r\n", "multipart/form-data; boundary=" + boundary.decode()


def test_multipart_with_too_many_parts_is_refused_quickly(client: TestClient) -> None:
    tiny = b'Content-Disposition: form-data; name="x"\r\n\r\nv'
    body, content_type = _multipart([tiny] * 250_000)
    started = time.monotonic()
    response = client.post("/v1/safeguard", content=body, headers={"content-type": content_type})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_many_parts"
    assert time.monotonic() - started < 5


def test_nested_multipart_is_a_400(client: TestClient) -> None:
    inner = b'Content-Disposition: form-data; name="file"\r\n\r\nx'
    for depth in range(2000):
        boundary = b"b%d" % depth
        body, content_type = _multipart([inner], boundary)
        inner = (b"Content-Type: " + content_type.encode() + b"\r\n\r\n") + body
    body, content_type = _multipart([inner], b"outer")
    response = client.post("/v1/safeguard", content=body, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert "nested" in response.json()["error"]["message"]


def test_multipart_is_parsed_off_the_event_loop(client: TestClient, monkeypatch) -> None:
    import safeview.service.app as app_module

    original = app_module._parse_multipart
    loops: list[bool] = []

    def spy(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            loops.append(True)
        except RuntimeError:
            loops.append(False)
        return original(*args)

    monkeypatch.setattr(app_module, "_parse_multipart", spy)
    response = client.post(
        "/v1/safeguard", files={"file": ("x.png", UNSAFE, "image/png")}, data={"style": "fill"}
    )
    assert response.status_code == 200, response.text
    assert loops == [False]


def _request_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _status_of(sock: socket.socket) -> int:
    """The status of the next whole response on ``sock`` (head and Content-Length body read)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split()[1])


def test_a_stalled_body_gets_a_408() -> None:
    settings = service_settings(body_timeout_s=0.5)
    with serving(settings) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_request_head("/v1/safeguard", 10_000) + UNSAFE[:100])
            started = time.monotonic()
            assert _status_of(sock) == 408  # without a deadline: recv() times out
            assert time.monotonic() - started < 3


def test_memory_held_by_in_flight_bodies_is_capped() -> None:
    settings = service_settings(max_body_bytes=80_000, max_inflight_bytes=100_000)
    with serving(settings) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as first:
            first.sendall(_request_head("/v1/safeguard", 60_000) + b"x" * 30_000)  # stalls
            time.sleep(0.3)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as second:
                second.sendall(_request_head("/v1/safeguard", 60_000) + b"x" * 30_000)
                assert _status_of(second) == 503
            first.sendall(b"x" * 30_000)  # completes: its budget is given back
            assert _status_of(first) == 415
        import httpx

        assert httpx.post(url + "/v1/safeguard?style=fill", content=UNSAFE).status_code == 200


def test_slow_request_heads_are_dropped(monkeypatch) -> None:
    from safeview.service.server import uvicorn_options

    monkeypatch.setenv("SAFEVIEW_HEADER_TIMEOUT_S", "0.5")
    options = uvicorn_options()
    assert options["limit_concurrency"] and options["h11_max_incomplete_event_size"]
    with serving(**options) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            started = time.monotonic()
            assert sock.recv(1024) == b""  # closed by the server, not by our timeout
            assert time.monotonic() - started < 3
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            time.sleep(0.2)
            sock.sendall(b"Host: 127.0.0.1\r\n\r\n")  # a head complete in time
            assert _status_of(sock) == 200
            # the deadline is for the head only: a body may take longer (it has its own)
            sock.sendall(_request_head("/v1/safeguard?style=fill", len(UNSAFE)))
            for start in range(0, len(UNSAFE), len(UNSAFE) // 4 + 1):
                time.sleep(0.25)
                sock.sendall(UNSAFE[start : start + len(UNSAFE) // 4 + 1])
            assert _status_of(sock) == 200


def test_docs_spec_and_config_need_the_key() -> None:
    with TestClient(create_app(service_settings(api_key="sekrit"))) as client:
        wait_ready(client)
        for path in ("/openapi.json", "/config", "/docs", "/redoc"):
            response = client.get(path)
            assert response.status_code in (401, 404), path
            assert "<script" not in response.text
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/config").status_code == 401
        auth = {"authorization": "Bearer sekrit"}
        assert client.get("/config", headers=auth).json()["api_key_required"] is True
        docs = client.get("/docs", headers=auth)
        assert docs.status_code == 404 and "<script" not in docs.text  # no UI from a CDN
        spec = client.get("/openapi.json", headers=auth).json()
        for path in ("/v1/moderations", "/v1/safeguard"):
            operation = spec["paths"][path]["post"]
            assert operation["requestBody"]["content"], path
            assert {"400", "401", "413", "429", "503"} <= set(operation["responses"]), path
        assert (
            "multipart/form-data"
            in spec["paths"]["/v1/safeguard"]["post"]["requestBody"]["content"]
        )


def test_security_headers(client: TestClient) -> None:
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert "script-src 'sha256-" in csp and "default-src 'none'" in csp
    for response in (page, client.get("/healthz"), client.post("/v1/moderations", json={})):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_no_host_reflecting_redirect_and_405_with_allow(client: TestClient) -> None:
    response = client.get("/healthz/", headers={"host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404 and "location" not in response.headers
    wrong = client.get("/v1/moderations")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_errors_are_json_with_the_error_shape(client: TestClient) -> None:
    body = json.loads(client.get("/nope").text)
    assert body["error"]["code"] == "not_found"


def test_multipart_parser_forms() -> None:
    from safeview.service.multipart import MultipartError, parse_form

    body = (
        b"preamble\r\n--xyz\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--not-the-boundary\r\n"
        b"--xyz\r\n"
        b'Content-Disposition: form-data; name="style"\r\n\r\nfill\r\n'
        b"--xyz\r\n\r\nno headers, skipped\r\n"
        b'--xyz\r\nContent-Disposition: form-data; name="b64"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n"
        b"--xyz--\r\nepilogue"
    )
    parts = parse_form(body, 'multipart/form-data; boundary="xyz"')
    assert parts == [
        ("file", b"\x89PNG\r\n--not-the-boundary"),
        ("style", b"fill"),
        ("b64", b"hi"),
    ]
    with pytest.raises(MultipartError, match="more than 2 parts") as many:
        parse_form(body, "multipart/form-data; boundary=xyz", max_parts=2)
    assert many.value.status == 413
    for bad_body, content_type in [
        (body, "multipart/form-data"),  # no boundary
        (body[: body.index(b"--xyz--")], "multipart/form-data; boundary=xyz"),  # unterminated
        (
            b"--xyz\r\n" + b"X: y\r\n" * 5000 + b"\r\nv\r\n--xyz--",
            "multipart/form-data; boundary=xyz",
        ),
    ]:
        with pytest.raises(MultipartError) as error:
            parse_form(bad_body, content_type)
        assert error.value.status == 400
