"""Fixtures for the service tests: the tiny red-square guard behind the app, in-process and live."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from safeview.guards import register_guard
from safeview.service.app import Settings, create_app
from tests.conftest import RedGuard, red_square_image

register_guard("red-square", lambda device: RedGuard())


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


UNSAFE = png(red_square_image())
SAFE = png(np.full((64, 64, 3), 120, np.uint8))


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
def live_server() -> Iterator[str]:
    with serving() as url:
        yield url
