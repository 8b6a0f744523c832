"""The ``instructblip`` backend: transformers' InstructBLIP, instruction conditioned on the guards.

ConditionalVLM (the Image Safeguarding paper): the instruction is built from what the guards
predicted (category, and wording graded by their confidence; no conditioning below the policy's
threshold) and reaches both the Q-Former (``qformer_input_ids``) and the language model
(``input_ids``), as the InstructBLIP processor does for any instruction. Any checkpoint works: a hub
id present in the local cache, a local folder, or one written by ``safeview vlm finetune``.
Generation defaults follow the paper: 5 beams, max length 512, top_p 0.9 (used when sampling),
repetition penalty 1.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from safeview.rationale.base import Answer, Context, Rationale, condition

DEFAULT_MODEL = "Salesforce/instructblip-vicuna-7b"


@dataclass
class GenerationSettings:
    num_beams: int = 5
    max_length: int = 512
    top_p: float = 0.9
    repetition_penalty: float = 1.5
    do_sample: bool = False

    def kwargs(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "num_beams": self.num_beams,
            "max_length": self.max_length,
            "repetition_penalty": self.repetition_penalty,
            "do_sample": self.do_sample,
        }
        if self.do_sample:  # top_p only means something when sampling
            values["top_p"] = self.top_p
        return values


def load_instructblip(path: str, device: str | None = None) -> tuple[Any, Any]:
    """(model, processor) from a local folder or an already cached hub id; never a download
    (``local_files_only``)."""
    import torch
    from transformers import InstructBlipForConditionalGeneration, InstructBlipProcessor

    from safeview.guards.base import select_device

    resolved = select_device(device)
    dtype = torch.float16 if resolved.type == "cuda" else torch.float32
    try:
        processor = InstructBlipProcessor.from_pretrained(path, local_files_only=True)
        model = InstructBlipForConditionalGeneration.from_pretrained(
            path, dtype=dtype, local_files_only=True
        )
    except OSError as exc:
        raise ValueError(
            f"cannot load InstructBLIP from {path!r}: {' '.join(str(exc).split())}"
        ) from None
    # transformers wraps .to() in a decorator whose signature mypy misreads.
    model = getattr(model, "to")(resolved)  # noqa: B009
    return model.eval(), processor


class InstructBlipBackend:
    name = "instructblip"

    def __init__(
        self,
        model: str | None = None,
        checkpoint: str | None = None,
        device: str | None = None,
        generation: GenerationSettings | None = None,
        conditioning: bool = True,
        model_object: Any = None,
        processor: Any = None,
    ) -> None:
        self.model_id = (
            checkpoint
            or model
            or ("<in-memory model>" if model_object is not None else DEFAULT_MODEL)
        )
        self.device = device
        self.generation = generation or GenerationSettings()
        self.conditioning = conditioning
        self._model = model_object
        self._processor = processor

    def loaded(self) -> tuple[Any, Any]:
        if self._model is None or self._processor is None:
            self._model, self._processor = load_instructblip(self.model_id, self.device)
        return self._model, self._processor

    def inputs(self, pixels: np.ndarray, instruction: str) -> Any:
        """The processor's tensors for one image and instruction (both input streams)."""
        from PIL import Image

        model, processor = self.loaded()
        encoded = processor(images=Image.fromarray(pixels), text=instruction, return_tensors="pt")
        return encoded.to(next(model.parameters()).device)

    def generate(self, pixels: np.ndarray, instruction: str) -> str:
        import torch

        model, processor = self.loaded()
        encoded = self.inputs(pixels, instruction)
        if "pixel_values" in encoded:
            encoded["pixel_values"] = encoded["pixel_values"].to(next(model.parameters()).dtype)
        with torch.inference_mode():
            output = model.generate(**encoded, **self.generation.kwargs())
        prompt = encoded["input_ids"]
        length = prompt.shape[1]
        if output.shape[1] >= length and torch.equal(output[0, :length], prompt[0]):
            output = output[:, length:]  # decoder-only models echo the prompt
        text = processor.batch_decode(output, skip_special_tokens=True)[0]
        return " ".join(str(text).split())

    def ask(
        self, pixels: np.ndarray, question: str, context: Context, conditioned: bool | None = None
    ) -> tuple[str, str, str | None]:
        """(answer, the exact instruction, the category conditioned on)."""
        instruction, category = condition(
            question, context, self.conditioning if conditioned is None else conditioned
        )
        return self.generate(pixels, instruction), instruction, category

    def explain(self, context: Context, questions: bool = False) -> Rationale:
        text, instruction, category = self.ask(
            context.pixels, "What is happening in the image?", context
        )
        answers = []
        if questions:
            top = context.top()
            policy = context.policy
            chosen = [top.category] if top and top.category else list(policy.categories.values())
            for entry in chosen:
                for question in entry.questions:
                    answer, _, _ = self.ask(context.pixels, question.text, context)
                    answers.append(Answer(question.text, answer, "vlm"))
        settings = dict(self.generation.__dict__)
        settings["conditioning"] = self.conditioning
        return Rationale(
            text=text,
            backend=self.name,
            model=self.model_id,
            prompt=instruction,
            category=category,
            answers=answers,
            settings=settings,
        )
