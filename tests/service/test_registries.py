"""The service's /config comes from the stage registries."""

from __future__ import annotations

from fastapi.testclient import TestClient

from safeview.render import RENDERERS, Fill
from safeview.segmentation import SEGMENTERS


def test_config_lists_registered_styles_and_segmenters(client: TestClient) -> None:
    RENDERERS.register("service-test-black", lambda: Fill((0, 0, 0)))
    config = client.get("/config").json()
    assert "service-test-black" in config["styles"]
    assert config["styles"][:4] == ["blur", "pixelate", "fill", "inpaint"]
    assert config["segmenters"] == SEGMENTERS.names()
