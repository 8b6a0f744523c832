from __future__ import annotations

import numpy as np
import torch

from safeview.rationale.instructblip import GenerationSettings, InstructBlipBackend
from tests.rationale.conftest import context_for

SETTINGS = GenerationSettings(num_beams=2, max_length=90)


def _decode(tokenizer, ids: torch.Tensor) -> str:
    return tokenizer.decode(ids[0], skip_special_tokens=True)


def test_conditioned_instruction_reaches_both_streams(instructblip) -> None:
    model, processor = instructblip
    backend = InstructBlipBackend(model_object=model, processor=processor, generation=SETTINGS)
    pixels = np.zeros((40, 40, 3), np.uint8)
    context = context_for(pixels, 0.95)
    _, instruction, category = backend.ask(pixels, "What is happening in the image?", context)
    assert category == "sexually_explicit"
    assert "almost certainly contains sexually explicit content" in instruction
    encoded = backend.inputs(pixels, instruction)
    llm_text = _decode(processor.tokenizer, encoded["input_ids"])
    qformer_text = _decode(processor.qformer_tokenizer, encoded["qformer_input_ids"])
    for text in (llm_text, qformer_text):
        assert "almost certainly contains sexually explicit content" in text
        assert "what is happening in the image ?" in text
    # The LLM stream also carries the query-token placeholders for the image.
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert int((encoded["input_ids"] == image_id).sum()) == 4


def test_conditioning_off_or_below_threshold_changes_both_streams(instructblip) -> None:
    model, processor = instructblip
    backend = InstructBlipBackend(model_object=model, processor=processor, generation=SETTINGS)
    pixels = np.zeros((40, 40, 3), np.uint8)
    question = "What is happening in the image?"
    on = backend.inputs(pixels, backend.ask(pixels, question, context_for(pixels, 0.95))[1])
    off_instruction = backend.ask(pixels, question, context_for(pixels, 0.95), False)[1]
    low_instruction = backend.ask(pixels, question, context_for(pixels, 0.2))[1]
    assert off_instruction == low_instruction == question
    off = backend.inputs(pixels, off_instruction)
    assert on["input_ids"].shape[1] > off["input_ids"].shape[1]
    assert on["qformer_input_ids"].shape[1] > off["qformer_input_ids"].shape[1]
    # graded wording follows the guard's confidence
    likely = backend.ask(pixels, question, context_for(pixels, 0.8))[1]
    assert "likely contains" in likely and "almost certainly" not in likely


def test_generation_returns_text_with_provenance(instructblip) -> None:
    model, processor = instructblip
    backend = InstructBlipBackend(model_object=model, processor=processor, generation=SETTINGS)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    rationale = backend.explain(context_for(pixels, 0.9), questions=True)
    assert isinstance(rationale.text, str) and rationale.text
    assert rationale.backend == "instructblip"
    assert rationale.prompt is not None and "sexually explicit" in rationale.prompt
    assert rationale.settings["num_beams"] == 2 and rationale.settings["repetition_penalty"] == 1.5
    assert [a.source for a in rationale.answers] == ["vlm", "vlm"]  # the category's 2 questions
    assert "Name the specific" not in rationale.text  # the echoed prompt is stripped


def test_paper_generation_defaults() -> None:
    settings = GenerationSettings()
    assert (
        settings.num_beams,
        settings.max_length,
        settings.top_p,
        settings.repetition_penalty,
    ) == (5, 512, 0.9, 1.5)
    assert "top_p" not in settings.kwargs()  # only when sampling
    assert GenerationSettings(do_sample=True).kwargs()["top_p"] == 0.9
