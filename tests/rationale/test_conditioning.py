"""The library helpers behind `safeview explain`, `vlm finetune` and `vlm eval`: backend options
from the flags (the device reaches instructblip) and guard-conditioned contexts/instructions."""

from __future__ import annotations

from typing import Any

from safeview.rationale import backend_options, guard_conditioner, guard_context
from tests.conftest import RedGuard, red_square_image


def test_backend_options_pass_the_device_to_instructblip() -> None:
    flags: dict[str, Any] = {
        "model": "m",
        "base_url": "http://x/v1",
        "api_key": "k",
        "checkpoint": "ckpt",
        "device": "cuda:1",
    }
    assert backend_options("instructblip", **flags) == {
        "model": "m",
        "checkpoint": "ckpt",
        "device": "cuda:1",
    }
    assert backend_options("openai", **flags) == {
        "base_url": "http://x/v1",
        "model": "m",
        "api_key": "k",
    }
    assert backend_options("grounded", **flags) == {}


def test_guard_context_and_conditioner_use_the_guards_on_the_device(monkeypatch) -> None:
    import safeview.guards

    loaded: list[tuple[str, Any]] = []

    def fake_load(name: str, device: Any = None) -> RedGuard:
        loaded.append((name, device))
        return RedGuard()

    monkeypatch.setattr(safeview.guards, "load_guard", fake_load)
    pixels = red_square_image(64)
    context = guard_context(["red-square"], device="cpu")(pixels)
    assert loaded == [("red-square", "cpu")]
    [prediction] = context.predictions
    assert prediction.guard == "red-square" and prediction.probability > 0.5
    instruction = guard_conditioner(["red-square"], device="cpu")(pixels, "What is shown?")
    assert "What is shown?" in instruction
    assert loaded[-1] == ("red-square", "cpu")


def test_pairs_eval_hands_the_device_to_the_vlm(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    import safeview.pairs
    from safeview.cli import app

    seen: dict[str, Any] = {}

    class Judge:
        def __init__(self, name: str, **options: Any) -> None:
            seen.update(options, name=name)
            raise ValueError("stop here")

    monkeypatch.setattr(safeview.pairs, "VLMJudge", Judge)
    result = CliRunner().invoke(
        app, ["pairs", "eval", str(tmp_path), "--vlm", "instructblip", "--device", "cuda:3"]
    )
    assert result.exit_code == 1 and "stop here" in result.output
    assert seen["name"] == "instructblip" and seen["device"] == "cuda:3"
