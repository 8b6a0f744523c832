"""Fine-tuning and linear probes on a tiny backbone: metrics, checkpoints that load as guards,
best-validation selection, resuming."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from safeview.guards import load_guard, scores
from safeview.guards.trained import TrainedGuard, read_checkpoint
from safeview.io import load_image
from safeview.pipeline import safeguard
from safeview.train import TrainConfig, find_dataset, metrics, train_guard
from safeview.train.backbones import make_backbone


def test_metrics_known_values() -> None:
    labels = np.asarray([0, 0, 1, 1])
    result = metrics(labels, np.asarray([0.1, 0.6, 0.4, 0.9]))
    assert result["accuracy"] == 0.5 and result["f1"] == 0.5 and result["auroc"] == 0.75
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (1, 1, 1, 1)
    assert metrics(np.asarray([1, 1]), np.asarray([0.9, 0.2]))["auroc"] is None


def test_fine_tune_learns_and_checkpoint_is_a_guard(dataset_dir: Path, tmp_path: Path) -> None:
    data = find_dataset(dataset_dir, "red")
    out = tmp_path / "guard.pt"
    config = TrainConfig("red", backbone="tiny-test", epochs=8, batch_size=8, learning_rate=1e-2)
    result = train_guard(data, out, config)
    assert result.kind == "finetune" and len(result.history) == 8
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.metrics["test"]["accuracy"] >= 0.75
    assert result.best_epoch is not None
    assert not (tmp_path / "guard.pt.state").exists()
    checkpoint = read_checkpoint(out)
    assert checkpoint["categories"] == ["safe", "red"] and checkpoint["kind"] == "finetune"
    assert checkpoint["split"]["test"] == 4 and len(checkpoint["test_keys"]) == 4
    # The best epoch's model is the one saved: its validation accuracy is the best seen.
    best = max(row["val_accuracy"] for row in result.history)
    assert result.metrics["validation"]["accuracy"] == best
    guard = load_guard(str(out))
    assert isinstance(guard, TrainedGuard) and guard.unsafe_category == "red"
    assert load_guard(str(out)) is guard  # cached per file version
    unsafe = load_image(dataset_dir / "unsafe" / "000.png").pixels
    safe = load_image(dataset_dir / "safe" / "000.png").pixels
    p = scores(guard, [unsafe, safe])[:, 1]
    assert p[0] > p[1]


def test_probe_head_reproduces_the_logistic_regression(dataset_dir: Path, tmp_path: Path) -> None:
    data = find_dataset(dataset_dir, "red")
    out = tmp_path / "probe.pt"
    result = train_guard(data, out, TrainConfig("red", backbone="tiny-test", probe=True))
    assert result.kind == "probe" and result.metrics["test"]["accuracy"] >= 0.75
    guard = TrainedGuard(out)
    trunk = make_backbone("tiny-test").trunk  # same seed: the untouched starting weights
    for key, value in trunk.state_dict().items():
        assert torch.equal(guard.module.trunk.state_dict()[key], value), key
    head = guard.module.head
    assert torch.count_nonzero(head.weight[0]) == 0 and head.bias[0] == 0
    pixels = load_image(dataset_dir / "unsafe" / "001.png").pixels
    with torch.no_grad():
        z = guard.module(guard.preprocess([pixels]))
    p = scores(guard, [pixels])[0, 1]
    assert p == pytest.approx(float(torch.sigmoid(z[0, 1] - z[0, 0])), abs=1e-6)


def test_resume_after_interruption(dataset_dir: Path, tmp_path: Path) -> None:
    data = find_dataset(dataset_dir, "red")
    out = tmp_path / "guard.pt"
    config = TrainConfig("red", backbone="tiny-test", epochs=3, batch_size=8, learning_rate=3e-3)

    def interrupt(stage: str, n: int, total: int) -> None:
        if stage.startswith("epoch 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_guard(data, out, config, progress=interrupt)
    state = tmp_path / "guard.pt.state"
    assert state.exists() and not out.exists()
    resumed = train_guard(data, out, config)
    assert resumed.resumed_from == 1 and [r["epoch"] for r in resumed.history] == [1, 2, 3]
    fresh = train_guard(data, tmp_path / "fresh.pt", config)
    # Same seeds: resuming gives the same training curve as an uninterrupted run.
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(
        [r["train_loss"] for r in fresh.history], rel=1e-4
    )
    assert not state.exists()


def test_resume_refuses_a_state_from_another_run(dataset_dir: Path, tmp_path: Path) -> None:
    data = find_dataset(dataset_dir, "red")
    out = tmp_path / "guard.pt"
    config = TrainConfig("red", backbone="tiny-test", epochs=2, batch_size=8)

    def interrupt(stage: str, n: int, total: int) -> None:
        if stage.startswith("epoch 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_guard(data, out, config, progress=interrupt)
    other = TrainConfig("red", backbone="tiny-test", epochs=2, batch_size=8, seed=5)
    with pytest.raises(ValueError, match="different run"):
        train_guard(data, out, other)
    assert train_guard(data, out, other, resume=False).resumed_from is None


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    from tests.train.conftest import write_dataset

    data = find_dataset(write_dataset(tmp_path / "d", n=2), "red")
    with pytest.raises(ValueError, match="too few images"):
        train_guard(data, tmp_path / "g.pt", TrainConfig("red", backbone="tiny-test"))


def test_trained_guard_drives_the_counterfactual_search(dataset_dir: Path, tmp_path: Path) -> None:
    data = find_dataset(dataset_dir, "red")
    out = tmp_path / "guard.pt"
    train_guard(
        data,
        out,
        TrainConfig("red", backbone="tiny-test", epochs=8, batch_size=8, learning_rate=1e-2),
    )
    guard = load_guard(str(out))
    flagged = [
        path
        for path in sorted((dataset_dir / "unsafe").iterdir())
        if scores(guard, [load_image(path).pixels])[0, 1] >= 0.5
    ]
    assert flagged
    report = safeguard(flagged[0], guard=str(out), style="fill", segmenter="slic")
    assert report.flagged and report.guard.name == "guard.pt"
    assert report.success and report.scores_after is not None
    assert report.scores_after["red"] < 0.5 and report.obfuscated_fraction < 0.6


def test_bad_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable guard checkpoint"):
        read_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a safeview guard checkpoint"):
        read_checkpoint(other)
    newer = tmp_path / "newer.pt"
    buffer = io.BytesIO()
    torch.save({"format": "safeview-guard", "format_version": 99}, buffer)
    newer.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="version 99"):
        read_checkpoint(newer)
    with pytest.raises(ValueError, match="does not exist"):
        load_guard(str(tmp_path / "nothing.pt"))


def test_damaged_training_state_is_a_clear_error(dataset_dir: Path, tmp_path: Path) -> None:
    data = find_dataset(dataset_dir, "red")
    (tmp_path / "guard.pt.state").write_bytes(b"half a file")
    config = TrainConfig("red", backbone="tiny-test", epochs=1)
    with pytest.raises(ValueError, match="--no-resume"):
        train_guard(data, tmp_path / "guard.pt", config)
    assert train_guard(data, tmp_path / "guard.pt", config, resume=False).kind == "finetune"


def test_result_summary_is_json() -> None:
    import json

    from safeview.train import TrainResult

    result = TrainResult(
        output=Path("g.pt"),
        kind="probe",
        metrics={"test": {"accuracy": 1.0}},
        split_sizes={"train": 8, "val": 1, "test": 1},
        history=[{"epoch": 1, "train_loss": 0.5}],
        seconds=1.5,
    )
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary == {
        "schema_version": "1.0",
        "output": "g.pt",
        "kind": "probe",
        "metrics": {"test": {"accuracy": 1.0}},
        "split": {"train": 8, "val": 1, "test": 1},
        "best_epoch": None,
        "history": [{"epoch": 1, "train_loss": 0.5}],
        "seconds": 1.5,
    }
