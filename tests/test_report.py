from __future__ import annotations

import json

import numpy as np
import pytest

from safeview.report import JSON_SCHEMA, SCHEMA_VERSION, GuardInfo, InputInfo, Region, Report


def _report() -> Report:
    return Report(
        input=InputInfo("a.jpg", 10, 20, "0" * 64, "JPEG"),
        guard=GuardInfo("open-nsfw", "v", "threshold", "nsfw", 1, 0.5),
        flagged=True,
        scores_before={"sfw": 0.1, "nsfw": 0.9},
        scores_after={"sfw": 0.8, "nsfw": 0.2},
        success=True,
        depth=2,
        regions=[Region(3, 1, 0.7, 0.1, [0, 0, 5, 5])],
        image=np.zeros((20, 10, 3), np.uint8),
        encoded=b"xx",
    )


def test_json_has_schema_version_and_required_keys_and_no_arrays() -> None:
    data = json.loads(_report().to_json())
    assert data["schema_version"] == SCHEMA_VERSION
    for key in JSON_SCHEMA["required"]:
        assert key in data, key
    assert "image" not in data and "encoded" not in data
    assert data["regions"][0]["bbox"] == [0, 0, 5, 5]


def test_round_trip() -> None:
    report = _report()
    again = Report.from_dict(json.loads(report.to_json()))
    assert again == report


def test_unknown_schema_version_is_refused() -> None:
    data = _report().to_dict()
    data["schema_version"] = "0.1"
    with pytest.raises(ValueError, match="schema_version"):
        Report.from_dict(data)


def test_region_validates() -> None:
    with pytest.raises(ValueError):
        Region(1, 1, 0.5, 1.5, [0, 0, 1, 1])
    with pytest.raises(ValueError):
        Region(1, 1, 0.5, 0.5, [0, 0, 1])


def test_nan_scores_do_not_produce_invalid_json() -> None:
    report = _report()
    report.scores_after = {"nsfw": float("nan")}
    with pytest.raises(ValueError):
        report.to_json()
