"""SafeguardOptions: one validated options contract; Pipeline: the stages built once."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import safeview
from safeview.options import SafeguardOptions
from safeview.pipeline import Pipeline
from tests.conftest import RedGuard


def test_defaults_in_one_place() -> None:
    options = SafeguardOptions()
    # No guard: every category of the built-in policy is checked.
    assert options.guard is None and options.policy is None and options.policy_name == "default"
    assert options.attribution == "fullgrad"
    assert options.segmenter == "bass-guided" and options.search == "coarse-to-fine"
    assert options.style == "blur" and options.threshold == 0.5 and options.max_regions == 10
    assert options.on_failure == "blur-all" and options.prune is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.threshold = 0.3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"threshold": 0.0}, "threshold must be in"),
        ({"threshold": 1.0}, "threshold must be in"),
        ({"max_regions": 0}, "max_regions must be"),
        ({"margin": 0.5}, "margin must be"),
        ({"on_failure": "shrug"}, "unknown on_failure"),
        ({"style": "smudge"}, "unknown style 'smudge'"),
        ({"style_options": {"strength": 2.0}}, "blur strength"),
        ({"style_options": {"radius": 2}}, "bad option for style 'blur'"),
        ({"segmenter": "nope"}, "unknown segmenter 'nope'"),
        ({"segmenter": "slic", "segmenter_options": {"colour": 1}}, "bad option for segmenter"),
        ({"search": "nope"}, "unknown search 'nope'"),
        ({"search": "greedy", "search_options": {"top_n": 2}}, "bad option for search"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"guard": "nope"}, "unknown guard 'nope'"),
        ({"guard": "missing/guard.pt"}, "does not exist"),
        ({"attribution": "nope"}, "unknown attribution method 'nope'"),
        ({"rationale": "nope"}, "unknown rationale backend 'nope'"),
    ],
)
def test_bad_values_fail_at_construction(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SafeguardOptions(**changes)


def test_from_mapping_converts_form_strings_and_round_trips() -> None:
    options = SafeguardOptions.from_mapping(
        {
            "threshold": "0.4",
            "max_regions": "3",
            "prune": "false",
            "segmenter": "slic",
            "segmenter_options": '{"n_segments": 20}',
            "style": "pixelate",
            "style_options": {"blocks": 8},
            "batch_size": "",
            "rationale": None,
        }
    )
    assert options.threshold == 0.4 and options.max_regions == 3 and options.prune is False
    assert options.segmenter_options == {"n_segments": 20}
    assert options.batch_size is None
    data = options.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert SafeguardOptions.from_mapping(data) == options
    with pytest.raises(ValueError, match="unknown option 'colour'"):
        SafeguardOptions.from_mapping({"colour": "red"})
    with pytest.raises(ValueError, match="threshold: not a number"):
        SafeguardOptions.from_mapping({"threshold": "high"})
    with pytest.raises(ValueError, match="prune: not a boolean"):
        SafeguardOptions.from_mapping({"prune": "maybe"})


def test_to_dict_names_objects() -> None:
    data = SafeguardOptions(guard=RedGuard(), device="cpu").to_dict()
    assert data["guard"] == RedGuard().name and data["device"] == "cpu"


def test_safeguard_keywords_and_options_object_agree(
    red_square: np.ndarray, red_guard: RedGuard
) -> None:
    options = SafeguardOptions(guard=red_guard, style="fill", working_size=128, segmenter="slic")
    by_object = safeview.safeguard(red_square, options)
    by_keywords = safeview.safeguard(
        red_square, guard=red_guard, style="fill", working_size=128, segmenter="slic"
    )
    overridden = safeview.safeguard(red_square, options, style="pixelate")
    assert by_object.encoded == by_keywords.encoded
    assert by_object.regions == by_keywords.regions
    assert overridden.style == "pixelate"


def test_style_options_reach_the_renderer(red_square: np.ndarray, red_guard: RedGuard) -> None:
    common: dict[str, Any] = {"guard": red_guard, "working_size": 128, "segmenter": "slic"}
    light = safeview.safeguard(red_square, style_options={"strength": 0.01}, **common)
    heavy = safeview.safeguard(red_square, style_options={"strength": 0.3}, **common)
    assert heavy.success  # a faint blur may not hide the red square; a heavy one does
    assert light.encoded != heavy.encoded


def test_a_pipeline_builds_its_stages_once(
    red_square: np.ndarray, red_guard: RedGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safeview.pipeline as pipeline_module

    built: list[str] = []
    real = pipeline_module.make_attribution

    def counting(method: str, guard: Any) -> Any:
        built.append(method)
        return real(method, guard)

    monkeypatch.setattr(pipeline_module, "make_attribution", counting)
    pipeline = Pipeline(SafeguardOptions(guard=red_guard, working_size=96, segmenter="slic"))
    first = pipeline.safeguard(red_square)
    second = pipeline.safeguard(red_square)
    assert built == ["fullgrad"]
    assert first.encoded == second.encoded
    assert pipeline.classify(red_square).flagged


def test_a_pipeline_refuses_bad_overrides() -> None:
    with pytest.raises(ValueError, match="unknown option 'colour'"):
        Pipeline(colour="red")
    with pytest.raises(ValueError, match="threshold"):
        Pipeline(threshold=2.0)


def test_batch_records_the_options_as_settings(tmp_path: Path, red_guard: RedGuard) -> None:
    from safeview.batch import settings_of

    options = SafeguardOptions(guard=red_guard, threshold=0.3)
    settings = settings_of(options, viz=True)
    neutral = ("device", "batch_size", "protect")  # an empty protect: as before it existed
    expected = {k: v for k, v in options.to_dict().items() if k not in neutral}
    assert settings == {**expected, "viz": True}
    assert settings_of(options.to_dict() | {"guard": red_guard}, viz=True) == settings
    protected = settings_of(options.replace(protect=("faces",)), viz=True)
    assert protected == {**settings, "protect": ["faces"]}
