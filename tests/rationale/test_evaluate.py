from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from safeview.rationale import Context, condition, load_policy
from safeview.rationale.evaluate import evaluate, rubric_hit, table
from tests.rationale.conftest import context_for


class ScriptedBackend:
    """Answers like a VLM that names the nudity only when told what the guard saw."""

    name = "scripted"

    def ask(
        self, pixels: np.ndarray, question: str, context: Context, conditioned: bool | None = None
    ) -> tuple[str, str, str | None]:
        instruction, category = condition(question, context, bool(conditioned))
        answer = "a naked woman, exposed breast" if category else "a person standing in a room"
        return answer, instruction, category


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "labelled"
    for category, count in (("sexually_explicit", 2), ("self_harm", 1), ("unrelated", 1)):
        (root / category).mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (32, 32), (index * 60, 80, 120)).save(root / category / f"{index}.png")
    return root


def test_table1_protocol_with_rubric(tmp_path: Path) -> None:
    policy = load_policy()
    rows = evaluate(
        _folder(tmp_path),
        {"scripted": ScriptedBackend()},
        policy,
        lambda pixels: context_for(pixels, 0.95),
    )
    result = {(r.category, r.conditioned): (r.answers, r.hit_rate) for r in rows}
    # 2 images x 2 generic questions per condition
    assert result[("sexually_explicit", True)] == (4, 1.0)
    assert result[("sexually_explicit", False)] == (4, 0.0)
    # The answer names nudity, which is not a self-harm attribute: no hit for that category.
    assert result[("self_harm", True)] == (2, 0.0)
    assert "| sexually_explicit | scripted | yes | 4 | 100.0% |" in table(rows)


def test_rubric_and_empty_folder(tmp_path: Path) -> None:
    category = load_policy().categories["cyberbullying"]
    assert rubric_hit("He shows the MIDDLE FINGER", category)
    assert not rubric_hit("a calm street", category)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in any category folder"):
        evaluate(tmp_path / "empty", {}, load_policy(), lambda p: context_for(p, 0.9))


@pytest.mark.slow
def test_cli_eval_and_explain_offline(tmp_path: Path) -> None:
    import json

    from safeview.cli import app

    runner = CliRunner()
    folder = _folder(tmp_path)
    result = runner.invoke(app, ["vlm", "eval", str(folder), "--backend", "grounded"])
    assert result.exit_code == 0, result.output
    assert "| sexually_explicit | grounded | no | 4 |" in result.stdout
    image = folder / "sexually_explicit" / "0.png"
    result = runner.invoke(
        app, ["explain", str(image), "--questions", "--json", "--guard", "open-nsfw"]
    )
    assert result.exit_code == 0, result.output
    rationale: dict[str, Any] = json.loads(result.stdout)
    assert rationale["backend"] == "grounded" and rationale["model"] == "nudenet+hands+text"
    assert rationale["text"].startswith("Not flagged: ")
    # every question of the policy; the sexual ones answered from the detector and the guards
    sexual = [a for a in rationale["answers"] if a["category"] == "sexually_explicit"]
    assert [(a["source"], a["verdict"]) for a in sexual] == [("detector", "no"), ("guard", "no")]
    assert len(rationale["answers"]) == sum(
        len(c.questions) for c in load_policy().categories.values()
    )
    bad = runner.invoke(app, ["explain", str(tmp_path / "missing.png")])
    assert bad.exit_code == 1 and "no such file" in bad.stderr
    no_server = runner.invoke(app, ["explain", str(image), "--backend", "openai"])
    assert no_server.exit_code == 1 and "base URL" in no_server.stderr
