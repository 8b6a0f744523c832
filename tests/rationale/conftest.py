"""A tiny InstructBLIP built from configs (random weights, word-level tokenizers made here)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from safeview.rationale import Context, Prediction, load_policy

VOCABULARY = """
a safety classifier found that this image almost certainly likely possibly contains sexually
explicit content nudity exposed intimate body parts sexual activity name the specific visual
attributes make and where they are what is happening in are people doing cyberbullying self-harm
offensive gestures or symbols weapons aggressive behaviour hate-speech text cuts scars on skin
self-destructive such as nooses pills blades there any yes no person woman man standing sitting
arm hand breast naked shirt room outdoors beach red square blue sky grass tree it shows . , ? ( ) '
"""


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(re.findall(r"[a-z0-9'-]+|[^\sa-z0-9]", VOCABULARY.lower())))
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    for word in words:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def tiny_instructblip() -> tuple[Any, Any]:
    import torch
    from transformers import (
        BlipImageProcessor,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
        InstructBlipQFormerConfig,
        InstructBlipVisionConfig,
        LlamaConfig,
    )

    torch.manual_seed(0)
    processor = InstructBlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=_tokenizer(),
        qformer_tokenizer=_tokenizer(),
        num_query_tokens=4,
    )
    tokenizer = processor.tokenizer
    config = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=16,
        ).to_dict(),
        qformer_config=InstructBlipQFormerConfig(
            vocab_size=len(processor.qformer_tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            encoder_hidden_size=32,
            max_position_embeddings=256,
            pad_token_id=0,
        ).to_dict(),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=2,
            eos_token_id=3,
            pad_token_id=0,
            initializer_range=0.2,
        ).to_dict(),
        num_query_tokens=4,
        # Larger than the usual 0.02 so that the image tokens visibly steer a 1-layer LLM.
        initializer_range=0.2,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = InstructBlipForConditionalGeneration(config).eval()
    return model, processor


@pytest.fixture(scope="module")
def instructblip() -> tuple[Any, Any]:
    return tiny_instructblip()


def context_for(pixels: Any, probability: float, guard: str = "open-nsfw") -> Context:
    policy = load_policy()
    category = policy.category_for(guard, "nsfw")
    return Context(pixels, [Prediction(guard, "nsfw", probability, category)], policy)
