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


def test_config_names_the_library_default_segmenter(client: TestClient) -> None:
    # The review page preselects it, so the page obfuscates as the CLI and API do by default.
    config = client.get("/config").json()
    assert config["default_segmenter"] == "bass-guided"
    assert config["default_segmenter"] in config["segmenters"]
