"""Fixtures for the service tests: the tiny red-square guard behind the app, in-process and live;
a tiny policy (red square: sexually explicit, blue disc: violence) for the policy default."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from safeview.guards import register_guard
from safeview.service.app import Settings, create_app
from tests.conftest import RedGuard, red_square_image
from tests.test_policy import BlueGuard, write_policy

register_guard("red-square", lambda device: RedGuard())
register_guard("blue-disc", lambda device: BlueGuard())


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


UNSAFE = png(red_square_image())  # a red square and a blue disc: both tiny guards flag it
SAFE = png(np.full((64, 64, 3), 120, np.uint8))


def red_only_image() -> np.ndarray:
    """The red square without the blue disc."""
    image = red_square_image()
    image[80:, :60] = (90, 140, 90)
    return image


def write_service_policy(folder: Path, name: str = "house", **openai: list[str]) -> Path:
    """A policy file ``folder/name.json``: the red-square guard judges sexually_explicit, the
    blue-disc guard violence; ``openai`` replaces categories' OpenAI mappings."""
    import json

    path = write_policy(
        folder,
        {
            "sexually_explicit": [{"guard": "red-square", "category": "unsafe"}],
            "violence": [{"guard": "blue-disc", "category": "unsafe", "threshold": 0.5}],
        },
    )
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, names in openai.items():
        data["categories"][key]["openai"] = names
    target = folder / f"{name}.json"
    target.write_text(json.dumps(data), encoding="utf-8")
    return target


def policy_settings(policy_file: Path, **overrides: object) -> Settings:
    """A server without a default guard: requests get the operator's policy ``policy_file``."""
    values: dict[str, object] = {
        "guards": ("red-square", "blue-disc"),
        "policy": str(policy_file),
        "preload": ("policy",),
        "device": "cpu",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def service_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "guard": "red-square",
        "guards": ("red-square",),
        "preload": ("red-square",),
        "device": "cpu",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def wait_ready(test_client: TestClient) -> None:
    for _ in range(200):
        if test_client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("service never became ready")


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(service_settings())) as test_client:
        wait_ready(test_client)
        yield test_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(settings: Settings | None = None, **uvicorn_options: Any) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    import httpx
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings or service_settings()),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            **uvicorn_options,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    return write_service_policy(tmp_path)


@pytest.fixture
def policy_client(policy_file: Path) -> Iterator[TestClient]:
    """The app with the tiny policy as the server's policy (no default guard)."""
    with TestClient(create_app(policy_settings(policy_file))) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.fixture
def live_server() -> Iterator[str]:
    with serving() as url:
        yield url
