"""Backbones: embedding sizes, normalisations, starting weights from a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from safeview.train.backbones import make_backbone, normalize


def test_normalisations() -> None:
    batch = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    batch[..., 0] = 255
    assert normalize(batch, "efficientnet")[0, :, 0, 0].tolist() == [1.0, -1.0, -1.0]
    assert normalize(batch, "unit").shape == (1, 3, 2, 2)
    bgr = normalize(batch, "open-nsfw")[0, :, 0, 0].tolist()
    assert bgr == [-104.0, -117.0, 255.0 - 123.0]
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize(batch, "nope")


def test_resnet50_starts_from_given_weights(tmp_path: Path) -> None:
    from torchvision.models import resnet50

    torch.manual_seed(7)
    source = resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(source.state_dict(), path)
    backbone = make_backbone("resnet50", weights=path)
    assert backbone.dim == 2048 and backbone.pretrained and backbone.weights == str(path)
    assert torch.equal(backbone.trunk.conv1.weight, source.conv1.weight)
    with torch.no_grad():
        out = backbone.trunk(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 2048)
    random_init = make_backbone("resnet50")
    assert not random_init.pretrained and "random init" in random_init.weights


def test_mismatched_or_unreadable_weights_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.pth"
    torch.save({"layer.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(ValueError, match="do not match"):
        make_backbone("resnet50", weights=other)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read backbone weights"):
        make_backbone("resnet50", weights=junk)
    with pytest.raises(ValueError, match="unknown backbone"):
        make_backbone("vgg")


@pytest.mark.slow
def test_real_backbones_embed() -> None:
    lite = make_backbone("efficientnet-lite0")
    nsfw = make_backbone("open-nsfw")
    assert (lite.dim, nsfw.dim) == (1280, 1024)
    image = np.random.default_rng(0).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    with torch.no_grad():
        for backbone in (lite, nsfw):
            x = torch.from_numpy(normalize(image, backbone.normalization))
            assert backbone.trunk(x).flatten(1).shape == (2, backbone.dim)
    # Architecture only (what loading a checkpoint builds) has the same parameter names.
    bare = make_backbone("efficientnet-lite0", pretrained=False)
    assert bare.trunk.state_dict().keys() == lite.trunk.state_dict().keys()
