"""Editors: attribution masks, and the diffusers editor with tiny pipelines built from configs
(random weights, a character-level CLIP tokenizer written here): real loading code, no download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from safeview.pairs.editors import DiffusersEditor, attribution_mask, make_editor
from tests.conftest import RedGuard, red_square_image


def tiny_pipeline(folder: Path, kind: str) -> Path:
    """A StableDiffusion InstructPix2Pix ("instruct") or inpainting pipeline, saved to disk."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(".,'-"):
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    (folder / "tok").mkdir(parents=True, exist_ok=True)
    (folder / "tok" / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tok" / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(folder / "tok" / "vocab.json"),
        str(folder / "tok" / "merges.txt"),
        model_max_length=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=32,
            projection_dim=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=8 if kind == "instruct" else 9,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        norm_num_groups=8,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        norm_num_groups=8,
    )
    pipeline_class = (
        StableDiffusionInstructPix2PixPipeline
        if kind == "instruct"
        else StableDiffusionInpaintPipeline
    )
    pipeline = pipeline_class(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder / kind)
    return folder / kind


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diffusers")
    return {kind: tiny_pipeline(root, kind) for kind in ("instruct", "inpaint")}


def test_attribution_mask_covers_the_evidence() -> None:
    image = red_square_image(96, square=(30, 30, 26))
    mask = attribution_mask(image, RedGuard(), fraction=0.08)
    red = (image[..., 0] > 180) & (image[..., 1] < 90)
    assert 0 < mask.mean() < 0.3
    assert (mask & red).sum() / red.sum() > 0.9


def test_diffusers_inpainting_edits_only_the_mask(pipelines: dict[str, Path]) -> None:
    editor = make_editor("diffusers", model=str(pipelines["inpaint"]), steps=2, size=64)
    assert isinstance(editor, DiffusersEditor) and editor.inpainting and editor.composite
    image = red_square_image(96, square=(30, 30, 26))
    edit = editor.edit(image, RedGuard(), "remove the red square", None)
    assert edit.image.shape == image.shape and edit.image.dtype == np.uint8
    assert edit.details["pipeline"] == "StableDiffusionInpaintPipeline"
    assert edit.details["mask_source"] == "attribution" and edit.mask.any()
    assert np.array_equal(edit.image[~edit.mask], image[~edit.mask])
    assert not np.array_equal(edit.image[edit.mask], image[edit.mask])
    given = np.zeros((96, 96), dtype=bool)
    given[10:20, 10:20] = True
    assert editor.edit(image, RedGuard(), "x", given).details["mask_source"] == "mask file"


def test_diffusers_instruction_editing(pipelines: dict[str, Path]) -> None:
    editor = make_editor("diffusers", model=str(pipelines["instruct"]), steps=2, size=64, seed=3)
    assert isinstance(editor, DiffusersEditor) and not editor.inpainting
    image = red_square_image(80)
    first = editor.edit(image, RedGuard(), "make the square green", None)
    again = editor.edit(image, RedGuard(), "make the square green", None)
    assert first.image.shape == image.shape
    assert first.instruction == "make the square green"
    assert np.array_equal(first.image, again.image)  # seeded
    assert not np.array_equal(first.image, image)  # no composite: the whole image is re-rendered


def test_diffusers_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot load diffusers pipeline"):
        make_editor("diffusers", model=str(tmp_path / "nothing"))


def test_pairs_make_with_the_diffusers_editor_from_the_cli(
    pipelines: dict[str, Path], unsafe_dir: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from safeview.cli import app
    from safeview.guards import register_guard
    from safeview.pairs import read_manifest

    register_guard("red-square", lambda device: RedGuard())
    out = tmp_path / "pairs"
    result = CliRunner().invoke(
        app,
        [
            "pairs",
            "make",
            str(unsafe_dir),
            "--category",
            "red",
            "--guard",
            "red-square",
            "--editor",
            "diffusers",
            "--model",
            str(pipelines["inpaint"]),
            "--steps",
            "2",
            "--size",
            "64",
            "--instruction",
            "replace the red square with grass",
            "-o",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    records = read_manifest(out)
    assert len(records) == 7
    edited = [r for r in records if "details" in r["editor"]]
    assert len(edited) == 6  # the plain image is not flagged, so it is never edited
    for record in edited:
        assert record["editor"]["instruction"] == "replace the red square with grass"
        assert record["editor"]["details"]["pipeline"] == "StableDiffusionInpaintPipeline"
        assert record["verification"]["ssim_outside_mask"] > 0.99  # composited
        # An untrained pipeline paints noise: whatever it did, the verdict says why.
        assert record["status"] == "kept" or record["reasons"]
