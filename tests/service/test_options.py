"""Request options through the options contract: a registered plug-in is accepted without
service changes, segmenter_options are validated, one Pipeline per distinct options, and the
OpenAPI choices come from the registries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from safeview.options import SafeguardOptions
from safeview.segmentation import SEGMENTERS
from safeview.service.app import ServiceError, create_app
from safeview.service.options import PipelineCache, request_options
from tests.service.conftest import UNSAFE, service_settings, wait_ready


class Grid:
    """A plug-in segmenter: ``cells`` x ``cells`` rectangles."""

    name = "test-grid"

    def __init__(self, cells: int = 4) -> None:
        self.cells = cells

    def segment(self, image: np.ndarray, attribution: np.ndarray | None = None) -> np.ndarray:
        height, width = image.shape[:2]
        rows = np.minimum(np.arange(height) * self.cells // height, self.cells - 1)
        cols = np.minimum(np.arange(width) * self.cells // width, self.cells - 1)
        return (rows[:, None] * self.cells + cols[None, :]).astype(np.int32)


SEGMENTERS.register("test-grid", Grid)


def test_a_registered_segmenter_and_its_options_are_accepted(client: TestClient) -> None:
    params = {"segmenter": "test-grid", "segmenter_options": '{"cells": 8}', "style": "fill"}
    response = client.post("/v1/safeguard", params=params, content=UNSAFE)
    assert response.status_code == 200, response.text
    assert response.json()["report"]["success"] is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('{"rows": 3}', "bad option for segmenter 'test-grid'"),
        ("[8]", "segmenter_options: not a JSON object"),
        ("{cells", "segmenter_options: not a JSON object"),
    ],
)
def test_bad_segmenter_options_are_invalid_options(
    client: TestClient, options: str, message: str
) -> None:
    params = {"segmenter": "test-grid", "segmenter_options": options}
    response = client.post("/v1/safeguard", params=params, content=UNSAFE)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_option" and message in error["message"]


def test_operator_restrictions_hold() -> None:
    settings = service_settings(device="cpu", max_pixels=1234)
    options, viz = request_options({"threshold": "0.4", "viz": "true", "device": "cuda"}, settings)
    assert isinstance(options, SafeguardOptions) and viz is True
    assert options.guard == "red-square" and options.threshold == 0.4
    assert options.device == "cpu" and options.max_pixels == 1234  # not from the request
    for fields, message in [
        ({"max_regions": "21"}, "max_regions: must be in 1..20"),
        (
            {"segmenter_options": '{"n_segments": 100000}'},
            "segmenter_options.n_segments: must be in 1..400",
        ),
        ({"search": "powerset"}, "is not offered here"),
        ({"attribution": "ablationcam"}, "not enabled on this server"),
        ({"attribution": "nope"}, "unknown"),
        ({"rationale": "oracle"}, "rationale: unknown 'oracle'"),
        ({"guard": "open-nsfw"}, "guard: unknown 'open-nsfw'"),
        ({"threshold": "abc"}, "threshold: not a number"),
    ]:
        with pytest.raises(ServiceError) as caught:
            request_options(fields, settings)
        assert caught.value.status == 422 and caught.value.code == "invalid_option", fields
        assert message in caught.value.message, fields


def test_one_pipeline_per_distinct_options(client: TestClient, monkeypatch) -> None:
    import safeview.pipeline

    built: list[dict[str, Any]] = []

    class Counting(safeview.pipeline.Pipeline):
        def __init__(self, options: SafeguardOptions | None = None, **overrides: Any) -> None:
            super().__init__(options, **overrides)
            built.append(self.options.to_dict())

    monkeypatch.setattr(safeview.pipeline, "Pipeline", Counting)
    for style in ("fill", "fill", "pixelate", "fill"):
        response = client.post(f"/v1/safeguard?style={style}", content=UNSAFE)
        assert response.status_code == 200, response.text
    assert [options["style"] for options in built] == ["fill", "pixelate"]


def test_pipeline_cache_is_a_bounded_lru() -> None:
    cache = PipelineCache(size=2)
    fill, blur, pixelate = (
        SafeguardOptions(guard="red-square", style=style) for style in ("fill", "blur", "pixelate")
    )
    first = cache.get(fill)
    assert cache.get(SafeguardOptions(guard="red-square", style="fill")) is first
    cache.get(blur)
    cache.get(fill)  # fill is now the most recently used
    cache.get(pixelate)  # evicts blur
    assert len(cache) == 2 and cache.get(fill) is first
    with pytest.raises(ValueError):
        PipelineCache(size=0)


def test_openapi_choices_come_from_the_registries() -> None:
    from safeview.attribution import ATTRIBUTIONS
    from safeview.rationale import RATIONALES

    with TestClient(create_app(service_settings())) as client:
        wait_ready(client)
        spec = client.get("/openapi.json").json()
    parameters = {
        p["name"]: p["schema"] for p in spec["paths"]["/v1/safeguard"]["post"]["parameters"]
    }
    assert "test-grid" in parameters["segmenter"]["enum"]
    assert parameters["attribution"]["enum"] == ATTRIBUTIONS.names()
    assert parameters["rationale"]["enum"] == RATIONALES.names()
    assert parameters["max_regions"]["maximum"] == 20
    assert parameters["guard"]["enum"] == ["red-square"]


@pytest.mark.parametrize("value", ["0", "none", ""])
def test_preload_none_words_mean_nothing(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from safeview.service.settings import Settings

    monkeypatch.setenv("SAFEVIEW_PRELOAD", value)
    assert Settings.from_env().preload == ()


def test_an_unknown_preload_guard_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from safeview.service.settings import Settings

    monkeypatch.setenv("SAFEVIEW_PRELOAD", "imagenett")
    with pytest.raises(ValueError, match="SAFEVIEW_PRELOAD: unknown guard 'imagenett'"):
        Settings.from_env()
