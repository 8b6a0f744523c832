"""Fine-tune the InstructBLIP Q-Former on guard-conditioned instructions (the paper's training).

Records are JSON lines ``{"image": path, "question": str, "answer": str}`` (paths relative to the
file). Each question is conditioned on what the guards predict for its image, exactly as at
inference. The vision encoder, the language model and the projection stay frozen; only the Q-Former
and its query tokens train. The loss covers the answer tokens only (the released code also trained
on the prompt). A training state is written every ``save_every`` steps and at the end, and a rerun
on the same folder resumes from it; the fine-tuned model is saved with ``save_pretrained`` into the
output folder, which ``--instructblip-checkpoint`` then loads.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

STATE_FILE = "training_state.pt"


@dataclass
class Record:
    image: np.ndarray
    question: str
    answer: str


def read_records(path: str | Path) -> list[Record]:
    """Load and decode every record of a JSONL file; a bad line is a one-line error."""
    from safeview.io import load_image

    source = Path(path)
    if not source.exists():
        raise ValueError(f"{source}: no such file")
    records = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            image_path = (source.parent / item["image"]).resolve()
            records.append(
                Record(load_image(image_path).pixels, str(item["question"]), str(item["answer"]))
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{source}:{number}: bad record ({type(exc).__name__}: {exc})"
            ) from None
    if not records:
        raise ValueError(f"{source}: no records")
    return records


def trainable(name: str) -> bool:
    return name.startswith("qformer.") or name == "query_tokens"


def training_example(
    model: Any, processor: Any, pixels: np.ndarray, instruction: str, answer: str
) -> dict[str, Any]:
    """Tensors for one example: labels are -100 everywhere but on the answer (and EOS)."""
    import torch
    from PIL import Image

    prompt = processor(images=Image.fromarray(pixels), text=instruction, return_tensors="pt")
    tokenizer = processor.tokenizer
    answer_ids = tokenizer(" " + answer, add_special_tokens=False, return_tensors="pt").input_ids
    eos = torch.tensor([[tokenizer.eos_token_id]])
    input_ids = torch.cat([prompt["input_ids"], answer_ids, eos], dim=1)
    labels = torch.full_like(input_ids, -100)
    labels[:, prompt["input_ids"].shape[1] :] = input_ids[:, prompt["input_ids"].shape[1] :]
    device = next(model.parameters()).device
    return {
        "pixel_values": prompt["pixel_values"].to(device),
        "qformer_input_ids": prompt["qformer_input_ids"].to(device),
        "qformer_attention_mask": prompt["qformer_attention_mask"].to(device),
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "labels": labels.to(device),
    }


def finetune(
    model: Any,
    processor: Any,
    records: list[Record],
    conditioner: Callable[[np.ndarray, str], str],
    out: str | Path,
    *,
    epochs: int = 3,
    learning_rate: float = 1e-5,
    save_every: int = 50,
    seed: int = 0,
    resume: bool = True,
    progress: Callable[[int, int, float], None] | None = None,
) -> list[float]:
    """Train the Q-Former; returns the loss of every step run in this call."""
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(trainable(name))
    parameters = [p for n, p in model.named_parameters() if trainable(n)]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate)
    step = 0
    state_path = out / STATE_FILE
    if resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
    instructions = [conditioner(r.image, r.question) for r in records]
    total = epochs * len(records)
    losses: list[float] = []
    model.train()
    for index in _schedule(len(records), epochs, seed, start=step):
        record = records[index]
        batch = training_example(model, processor, record.image, instructions[index], record.answer)
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step, total, losses[-1])
        if step % save_every == 0:
            _save_state(model, optimizer, step, state_path)
    model.eval()
    _save_state(model, optimizer, step, state_path)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return losses


def _schedule(size: int, epochs: int, seed: int, start: int) -> Iterator[int]:
    """The same shuffled order every time, so that a resumed run continues where it stopped."""
    order: list[int] = []
    rng = random.Random(seed)
    for _ in range(epochs):
        epoch = list(range(size))
        rng.shuffle(epoch)
        order.extend(epoch)
    yield from order[start:]


def _save_state(model: Any, optimizer: Any, step: int, path: Path) -> None:
    import io

    import torch

    from safeview.io import atomic_write

    buffer = io.BytesIO()
    torch.save(
        {
            "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if trainable(n)},
            "optimizer": optimizer.state_dict(),
            "step": step,
        },
        buffer,
    )
    atomic_write(path, buffer.getvalue())
