"""The models package: guards and training share it, and guards never import training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from safeview.models import GuardNet, load_checkpoint, make_backbone, save_checkpoint
from safeview.models.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION

ROOT = Path(__file__).resolve().parents[2]


def _imported_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return set(done.stdout.split())


def test_importing_guards_or_models_does_not_import_train() -> None:
    for statement in ("import safeview.guards.trained", "import safeview.models"):
        modules = _imported_after(statement)
        assert not {m for m in modules if m == "safeview.train" or m.startswith("safeview.train.")}


def test_loading_a_trained_guard_does_not_import_train(tmp_path: Path) -> None:
    backbone = make_backbone("efficientnet-lite0", pretrained=False)
    out = tmp_path / "g.pt"
    save_checkpoint(
        out,
        GuardNet(backbone.trunk, backbone.dim),
        backbone,
        kind="probe",
        category="red",
        config={},
        extra={},
    )
    modules = _imported_after(
        f"from safeview.guards.trained import TrainedGuard\nTrainedGuard({str(out)!r}, 'cpu')"
    )
    assert "safeview.guards.trained" in modules
    assert not {m for m in modules if m == "safeview.train" or m.startswith("safeview.train.")}


def test_train_backbones_names_are_the_models_ones() -> None:
    from safeview.models import backbones
    from safeview.train import backbones as old

    assert old.make_backbone is backbones.make_backbone
    assert old.register_backbone is backbones.register_backbone
    assert old.Backbone is backbones.Backbone
    assert old.normalize is backbones.normalize


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    from tests.train.conftest import tiny_backbone  # registers "tiny-test"

    backbone = tiny_backbone(False, None)
    network = GuardNet(backbone.trunk, backbone.dim)
    out = tmp_path / "g.pt"
    save_checkpoint(
        out, network, backbone, kind="probe", category="red", config={"a": 1}, extra={"x": 2}
    )
    data = load_checkpoint(out)
    assert data["format"] == CHECKPOINT_FORMAT
    assert data["format_version"] == CHECKPOINT_VERSION
    assert data["categories"] == ["safe", "red"]
    assert data["backbone"] == "tiny-test" and data["x"] == 2 and data["config"] == {"a": 1}
    rebuilt = make_backbone("tiny-test", pretrained=False)
    assert rebuilt.dim == data["feature_dim"]
    for key, value in network.state_dict().items():
        assert torch.equal(data["state_dict"][key], value)
