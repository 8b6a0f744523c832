"""The openai backend against a stub OpenAI-compatible server on 127.0.0.1 that records requests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from safeview.rationale.openai_backend import OpenAIBackend, RationaleError
from tests.rationale.conftest import context_for

GOOD = {
    "rating": "unsafe",
    "category": "sexually_explicit",
    "rationale": "A naked person, exposed breast at the upper centre.",
}


class Stub:
    """Replies with ``self.reply`` (a dict = chat completion with that JSON content)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.reply: Any = GOOD
        self.status = 200
        self.delay = 0.0


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            state.requests.append(json.loads(self.rfile.read(length)))
            state.headers.append(dict(self.headers))
            time.sleep(state.delay)
            if isinstance(state.reply, dict):
                body = json.dumps(
                    {
                        "choices": [
                            {"message": {"role": "assistant", "content": json.dumps(state.reply)}}
                        ]
                    }
                ).encode()
            else:
                body = state.reply if isinstance(state.reply, bytes) else str(state.reply).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _backend(url: str, **options: Any) -> OpenAIBackend:
    return OpenAIBackend(base_url=url, model="llava-guard", api_key="k", **options)


PIXELS = np.full((24, 32, 3), 200, np.uint8)


def test_request_carries_the_image_and_the_conditioned_prompt(stub) -> None:
    state, url = stub
    rationale = _backend(url).explain(context_for(PIXELS, 0.97))
    assert rationale.text == GOOD["rationale"]
    assert rationale.category == "sexually_explicit" and rationale.model == "llava-guard"
    request = state.requests[0]
    assert request["model"] == "llava-guard"
    assert request["response_format"] == {"type": "json_object"}
    user = request["messages"][-1]["content"]
    text = next(part["text"] for part in user if part["type"] == "text")
    image = next(part["image_url"]["url"] for part in user if part["type"] == "image_url")
    assert "almost certainly contains sexually explicit content" in text
    assert '"rationale"' in text
    assert image.startswith("data:image/png;base64,")
    assert state.headers[0]["Authorization"] == "Bearer k"
    assert rationale.prompt == text


def test_unconditioned_below_threshold(stub) -> None:
    state, url = stub
    _backend(url).explain(context_for(PIXELS, 0.1))
    text = next(
        p["text"] for p in state.requests[0]["messages"][-1]["content"] if p["type"] == "text"
    )
    assert "safety classifier" not in text


@pytest.mark.parametrize(
    ("reply", "status", "message"),
    [
        ({"rating": "unsafe", "category": "x"}, 200, "lacks a string 'rationale'"),
        ({"rating": "maybe", "category": "x", "rationale": "r"}, 200, "rating must be"),
        (b"this is not json", 200, "did not return a chat completion"),
        (b'{"choices": [{"message": {"content": "plain words"}}]}', 200, "reply is not JSON"),
        (b'{"error": "overloaded"}', 503, "HTTP 503"),
    ],
)
def test_bad_replies_give_clear_errors(stub, reply: Any, status: int, message: str) -> None:
    state, url = stub
    state.reply, state.status = reply, status
    with pytest.raises(RationaleError, match=message):
        _backend(url).explain(context_for(PIXELS, 0.9))


def test_timeout_and_unreachable_server(stub) -> None:
    state, url = stub
    state.delay = 1.0
    with pytest.raises(RationaleError, match=r"no reply .* within 0\.2 s"):
        _backend(url, timeout=0.2).explain(context_for(PIXELS, 0.9))
    with pytest.raises(RationaleError, match="cannot reach"):
        _backend("http://127.0.0.1:9/v1").explain(context_for(PIXELS, 0.9))


def test_settings_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("SAFEVIEW_OPENAI_BASE_URL", "http://example.invalid/v1/")
    monkeypatch.setenv("SAFEVIEW_OPENAI_MODEL", "m")
    backend = OpenAIBackend()
    assert backend.base_url == "http://example.invalid/v1" and backend.model == "m"
    monkeypatch.delenv("SAFEVIEW_OPENAI_BASE_URL")
    with pytest.raises(ValueError, match="base URL"):
        OpenAIBackend()


def test_questions_are_answered_through_the_server(stub) -> None:
    state, url = stub
    state.reply = {**GOOD, "answer": "Yes, exposed breast."}
    rationale = _backend(url).explain(context_for(PIXELS, 0.9), questions=True)
    assert [a.answer for a in rationale.answers] == ["Yes, exposed breast."] * 2
    assert len(state.requests) == 3
