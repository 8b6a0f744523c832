"""Q-Former fine-tuning on the tiny InstructBLIP: answer-only loss, the loss falls, only the
Q-Former changes, resume; then the CLI trains and explains with the result, all offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from safeview.rationale import condition
from safeview.rationale.finetune import Record, finetune, trainable, training_example
from tests.rationale.conftest import context_for, tiny_instructblip

ANSWERS = [
    "yes naked woman on beach",
    "no man standing in room",
    "yes exposed breast",
    "no person sitting outdoors",
]


def _records() -> list[Record]:
    colours = [(220, 30, 30), (30, 30, 220), (30, 200, 30), (200, 200, 200)]
    return [
        Record(np.full((40, 40, 3), c, np.uint8), "what is happening in the image?", a)
        for c, a in zip(colours, ANSWERS, strict=True)
    ]


def _conditioner(pixels: np.ndarray, question: str) -> str:
    return condition(question, context_for(pixels, 0.95))[0]


def test_labels_cover_the_answer_only() -> None:
    model, processor = tiny_instructblip()
    record = _records()[0]
    instruction = _conditioner(record.image, record.question)
    batch = training_example(model, processor, record.image, instruction, record.answer)
    answer_ids = processor.tokenizer(" " + record.answer, add_special_tokens=False).input_ids
    supervised = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert supervised == [*answer_ids, processor.tokenizer.eos_token_id]
    assert "what is happening" in processor.qformer_tokenizer.decode(batch["qformer_input_ids"][0])
    assert "naked" not in processor.qformer_tokenizer.decode(batch["qformer_input_ids"][0])


def test_loss_falls_only_qformer_changes_and_training_resumes(tmp_path: Path) -> None:
    model, processor = tiny_instructblip()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = finetune(
        model,
        processor,
        _records(),
        _conditioner,
        tmp_path,
        epochs=12,
        learning_rate=1e-2,
        save_every=10,
    )
    assert len(losses) == 48
    # Only the Q-Former learns, so the fall is modest but clear (5.0 -> 4.2 when written).
    assert np.mean(losses[-8:]) < 0.9 * np.mean(losses[:8])
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(trainable(name) for name in changed)
    assert any(name.startswith("qformer.") for name in changed)
    assert "query_tokens" in changed
    assert (tmp_path / "config.json").exists() and (tmp_path / "training_state.pt").exists()
    # Resume: a longer schedule continues from step 48 instead of starting over.
    more = finetune(
        model, processor, _records(), _conditioner, tmp_path, epochs=13, learning_rate=1e-2
    )
    assert len(more) == 4


@pytest.mark.slow
def test_cli_finetune_then_explain_with_the_checkpoint(tmp_path: Path) -> None:
    from safeview.cli import app

    model, processor = tiny_instructblip()
    base = tmp_path / "tiny"
    model.save_pretrained(base)
    processor.save_pretrained(base)
    lines = []
    for index, record in enumerate(_records()):
        Image.fromarray(record.image).save(tmp_path / f"{index}.png")
        lines.append(
            json.dumps(
                {"image": f"{index}.png", "question": record.question, "answer": record.answer}
            )
        )
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "tuned"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "vlm",
            "finetune",
            str(data),
            "-o",
            str(out),
            "--model",
            str(base),
            "--epochs",
            "2",
            "--lr",
            "1e-3",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "trained 8 steps" in result.stdout
    result = runner.invoke(
        app,
        [
            "explain",
            str(tmp_path / "0.png"),
            "--backend",
            "instructblip",
            "--instructblip-checkpoint",
            str(out),
            "--json",
            "--device",
            "cpu",
            "--num-beams",
            "2",
            "--max-length",
            "120",
        ],
    )
    assert result.exit_code == 0, result.output
    rationale = json.loads(result.stdout)
    assert rationale["settings"]["num_beams"] == 2 and rationale["settings"]["max_length"] == 120
    assert rationale["backend"] == "instructblip" and rationale["model"] == str(out)
    assert rationale["prompt"]  # the exact instruction is recorded
    bad = runner.invoke(
        app, ["vlm", "finetune", str(tmp_path / "nope.jsonl"), "-o", str(out), "--model", str(base)]
    )
    assert bad.exit_code == 1 and "no such file" in bad.stderr
