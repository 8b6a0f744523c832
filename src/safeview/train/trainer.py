"""Train a guard: fine-tune a backbone with a linear head, or fit a linear probe on frozen
embeddings; keep the best validation checkpoint and report test accuracy, F1 and AUROC.

The result is a checkpoint that :class:`safeview.guards.trained.TrainedGuard` loads, so it works
as ``--guard guard.pt`` everywhere. Fine-tuning saves a training state after every epoch
(``OUTPUT.state``) and resumes from it; the state is removed once the checkpoint is written.
"""

from __future__ import annotations

import copy
import io
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeview.io import atomic_write
from safeview.models import select_device
from safeview.models.backbones import Backbone, make_backbone, normalize
from safeview.models.checkpoint import save_checkpoint as write_checkpoint
from safeview.models.network import GuardNet
from safeview.train.data import Dataset, load_pixels, split

#: progress(stage, advance_by, total): called as work is done ("decode", "epoch N", "embed").
Progress = Callable[[str, int, int], None]


@dataclass
class TrainConfig:
    category: str
    backbone: str = "efficientnet-lite0"
    probe: bool = False
    weights: str | None = None
    epochs: int = 5
    batch_size: int = 16
    learning_rate: float = 1e-4
    seed: int = 0
    threshold: float = 0.5
    device: str = "auto"


@dataclass
class TrainResult:
    output: Path
    kind: str
    metrics: dict[str, dict[str, Any]]
    split_sizes: dict[str, int]
    best_epoch: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary (``safeview train --json``)."""
        return {
            "schema_version": "1.0",
            "output": str(self.output),
            "kind": self.kind,
            "metrics": self.metrics,
            "split": self.split_sizes,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "seconds": self.seconds,
        }


def metrics(labels: np.ndarray, p_unsafe: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (unsafe = positive) and AUROC (None with one class)."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    labels = np.asarray(labels, dtype=np.int64)
    predicted = (np.asarray(p_unsafe) >= threshold).astype(np.int64)
    both = len(np.unique(labels)) == 2
    return {
        "n": len(labels),
        "accuracy": round(float((predicted == labels).mean()) if len(labels) else 0.0, 6),
        "precision": round(float(precision_score(labels, predicted, zero_division=0)), 6),
        "recall": round(float(recall_score(labels, predicted, zero_division=0)), 6),
        "f1": round(float(f1_score(labels, predicted, zero_division=0)), 6),
        "auroc": round(float(roc_auc_score(labels, p_unsafe)), 6) if both else None,
        "tp": int(((predicted == 1) & (labels == 1)).sum()),
        "fp": int(((predicted == 1) & (labels == 0)).sum()),
        "tn": int(((predicted == 0) & (labels == 0)).sum()),
        "fn": int(((predicted == 0) & (labels == 1)).sum()),
    }


def embed(
    network: GuardNet,
    pixels: np.ndarray,
    normalization: str,
    device: torch.device,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> np.ndarray:
    """Embeddings (N, dim) of resized uint8 images, without gradients."""
    out = []
    network.eval()
    with torch.inference_mode():
        for start in range(0, len(pixels), batch_size):
            chunk = pixels[start : start + batch_size]
            x = torch.from_numpy(normalize(chunk, normalization)).to(device)
            out.append(network.embed(x).float().cpu().numpy())
            if progress is not None:
                progress("embed", len(chunk), len(pixels))
    return np.concatenate(out) if out else np.zeros((0, network.head.in_features), np.float32)


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    seed: int = 0,
) -> tuple[np.ndarray, float, float]:
    """Logistic regression on standardised embeddings, C chosen on validation; returns the
    weights and bias folded back to raw embeddings (z = w . x + b) and the chosen C."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(train_y)) < 2:
        raise ValueError("the training split needs both safe and unsafe images")
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0) + 1e-6
    a, v = (train_x - mean) / std, (val_x - mean) / std
    best: tuple[tuple[float, float], LogisticRegression, float] | None = None
    for c in (0.001, 0.01, 0.1, 1.0):
        model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=seed)
        model.fit(a, train_y)
        if len(v):
            p = np.clip(model.predict_proba(v)[:, 1], 1e-7, 1 - 1e-7)
            accuracy = float(((p >= 0.5) == val_y).mean())
            loss = float(-np.mean(val_y * np.log(p) + (1 - val_y) * np.log(1 - p)))
            key = (accuracy, -loss)
        else:
            key = (0.0, -c)
        if best is None or key > best[0]:
            best = (key, model, c)
    assert best is not None
    _, model, c = best
    weight = model.coef_[0] / std
    bias = float(model.intercept_[0] - np.sum(model.coef_[0] * mean / std))
    return weight.astype(np.float32), bias, c


def set_probe_head(network: GuardNet, weight: np.ndarray, bias: float) -> None:
    """Two logits (0, w . x + b): softmax gives the logistic regression's probability."""
    with torch.no_grad():
        network.head.weight.zero_()
        network.head.bias.zero_()
        network.head.weight[1] = torch.from_numpy(weight)
        network.head.bias[1] = bias


def save_checkpoint(
    output: Path,
    network: GuardNet,
    backbone: Backbone,
    config: TrainConfig,
    kind: str,
    extra: dict[str, Any],
) -> None:
    """Write the checkpoint (format: :mod:`safeview.models.checkpoint`)."""
    write_checkpoint(
        output,
        network,
        backbone,
        kind=kind,
        category=config.category,
        config=asdict(config),
        extra=extra,
    )


def _augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flips and small shifts (reflect-padded), per image."""
    out = batch.copy()
    height, width = batch.shape[1:3]
    pad = max(1, min(height, width) // 16)
    for i in range(len(out)):
        image = out[i]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        dy, dx = rng.integers(-pad, pad + 1, size=2)
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        out[i] = padded[pad + dy : pad + dy + height, pad + dx : pad + dx + width]
    return out


def _predict(
    network: GuardNet, pixels: np.ndarray, normalization: str, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """p(unsafe) of every image, and the logits."""
    network.eval()
    logits = []
    with torch.inference_mode():
        for start in range(0, len(pixels), 32):
            x = torch.from_numpy(normalize(pixels[start : start + 32], normalization)).to(device)
            logits.append(network(x).float().cpu())
    joined = torch.cat(logits) if logits else torch.zeros((0, 2))
    return torch.softmax(joined, dim=-1)[:, 1].numpy(), joined.numpy()


def _loss(logits: np.ndarray, labels: np.ndarray) -> float:
    if not len(labels):
        return 0.0
    tensor = torch.from_numpy(logits)
    return float(torch.nn.functional.cross_entropy(tensor, torch.from_numpy(labels)).item())


def _set_train_mode(network: GuardNet, pretrained: bool) -> None:
    network.train()
    if pretrained:
        # Small data sets: keep the pretrained batch-norm statistics.
        for module in network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def train_guard(
    data: Dataset,
    output: str | Path,
    config: TrainConfig,
    *,
    resume: bool = True,
    progress: Progress | None = None,
) -> TrainResult:
    """Split ``data`` 80/10/10 with ``config.seed``, train, keep the best validation model, write
    the checkpoint to ``output`` and return the test metrics."""
    start_time = time.perf_counter()
    output = Path(output)
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    backbone = make_backbone(config.backbone, weights=config.weights)
    network = GuardNet(backbone.trunk, backbone.dim).to(device)
    parts = split(data.labels, config.seed)
    sizes = {name: len(index) for name, index in parts.items()}
    if min(int((data.labels == 0).sum()), int((data.labels == 1).sum())) < 3:
        raise ValueError(
            f"too few images to split 80/10/10 ({int((data.labels == 0).sum())} safe, "
            f"{int((data.labels == 1).sum())} unsafe); need at least 3 of each"
        )
    pixels = load_pixels(
        data.paths,
        backbone.input_size,
        None if progress is None else (lambda n: progress("decode", n, len(data.paths))),
    )
    labels = data.labels
    fingerprint = data.fingerprint()
    keys = data.relative_paths()
    record = {
        "data": {
            "root": str(data.root),
            "layout": data.layout,
            "fingerprint": fingerprint,
            "n_safe": int((labels == 0).sum()),
            "n_unsafe": int((labels == 1).sum()),
        },
        "split": {"seed": config.seed, "fractions": [0.8, 0.1, 0.1], **sizes},
        "test_keys": [keys[i] for i in parts["test"]],
    }
    job = _Job(
        network,
        backbone,
        pixels,
        labels,
        parts,
        output,
        config,
        record,
        progress,
        device,
        start_time,
    )
    if config.probe:
        return _train_probe(job)
    return _fine_tune(job, resume, fingerprint)


@dataclass
class _Job:
    """What both ways of training share."""

    network: GuardNet
    backbone: Backbone
    pixels: np.ndarray
    labels: np.ndarray
    parts: dict[str, np.ndarray]
    output: Path
    config: TrainConfig
    record: dict[str, Any]
    progress: Progress | None
    device: torch.device
    start_time: float


def _train_probe(job: _Job) -> TrainResult:
    features = embed(
        job.network, job.pixels, job.backbone.normalization, job.device, progress=job.progress
    )
    train, val, test = job.parts["train"], job.parts["val"], job.parts["test"]
    weight, bias, c = fit_probe(
        features[train], job.labels[train], features[val], job.labels[val], job.config.seed
    )
    set_probe_head(job.network, weight, bias)
    z = features @ weight + bias
    p = 1.0 / (1.0 + np.exp(-z))
    result_metrics = {
        "validation": metrics(job.labels[val], p[val], job.config.threshold),
        "test": metrics(job.labels[test], p[test], job.config.threshold),
    }
    save_checkpoint(
        job.output,
        job.network,
        job.backbone,
        job.config,
        "probe",
        {**job.record, "metrics": result_metrics, "probe": {"C": c, "solver": "lbfgs"}},
    )
    return TrainResult(
        job.output,
        "probe",
        result_metrics,
        {k: len(v) for k, v in job.parts.items()},
        seconds=round(time.perf_counter() - job.start_time, 3),
    )


def _fine_tune(job: _Job, resume: bool, fingerprint: str) -> TrainResult:
    train, val, test = job.parts["train"], job.parts["val"], job.parts["test"]
    for parameter in job.network.parameters():
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(
        [
            {"params": job.network.trunk.parameters(), "lr": job.config.learning_rate},
            {"params": job.network.head.parameters(), "lr": job.config.learning_rate * 10},
        ],
        weight_decay=1e-4,
    )
    counts = np.bincount(job.labels[train], minlength=2).astype(np.float32)
    class_weight = torch.from_numpy(counts.sum() / (2.0 * np.maximum(counts, 1.0))).to(job.device)
    state_path = job.output.with_name(job.output.name + ".state")
    identity = {
        "fingerprint": fingerprint,
        "backbone": job.config.backbone,
        "seed": job.config.seed,
        "batch_size": job.config.batch_size,
        "learning_rate": job.config.learning_rate,
        "weights": job.config.weights,
    }
    start_epoch, history = 0, []
    best_key: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int | None = None
    resumed_from = None
    if resume and state_path.exists():
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception:  # a foreign or damaged file
            raise ValueError(
                f"cannot read the training state {state_path}; pass --no-resume to start over"
            ) from None
        if not isinstance(state, dict) or state.get("identity") != identity:
            raise ValueError(
                f"{state_path} belongs to a different run (data, backbone or settings changed); "
                "pass --no-resume to start over"
            )
        job.network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = resumed_from = int(state["epoch"])
        history = list(state["history"])
        best_key = (float(state["best_key"][0]), float(state["best_key"][1]))
        best_state, best_epoch = state["best_state"], int(state["best_epoch"])
    for epoch in range(start_epoch, job.config.epochs):
        epoch_rng = np.random.default_rng([job.config.seed, epoch])
        torch.manual_seed(job.config.seed * 1000 + epoch)
        _set_train_mode(job.network, job.backbone.pretrained)
        order = train[epoch_rng.permutation(len(train))]
        losses = []
        for begin in range(0, len(order), job.config.batch_size):
            index = order[begin : begin + job.config.batch_size]
            batch = _augment(job.pixels[index], epoch_rng)
            x = torch.from_numpy(normalize(batch, job.backbone.normalization)).to(job.device)
            y = torch.from_numpy(job.labels[index]).to(job.device)
            loss = torch.nn.functional.cross_entropy(job.network(x), y, weight=class_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.item()))
            if job.progress is not None:
                job.progress(f"epoch {epoch + 1}/{job.config.epochs}", len(index), len(order))
        p_val, logits_val = _predict(
            job.network, job.pixels[val], job.backbone.normalization, job.device
        )
        val_metrics = metrics(job.labels[val], p_val, job.config.threshold)
        val_loss = _loss(logits_val, job.labels[val])
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": round(float(np.mean(losses)), 6),
                "val_loss": round(val_loss, 6),
                "val_accuracy": val_metrics["accuracy"],
            }
        )
        key = (val_metrics["accuracy"], -val_loss)
        if best_key is None or key > best_key:
            best_key, best_epoch = key, epoch + 1
            best_state = {k: v.detach().cpu().clone() for k, v in job.network.state_dict().items()}
        buffer = io.BytesIO()
        torch.save(
            {
                "identity": identity,
                "epoch": epoch + 1,
                "model": job.network.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history": history,
                "best_key": list(best_key),
                "best_state": best_state,
                "best_epoch": best_epoch,
            },
            buffer,
        )
        atomic_write(state_path, buffer.getvalue())
    if best_state is None:
        raise ValueError(f"{state_path} has no trained epochs; pass --no-resume")
    job.network.load_state_dict(best_state)
    p_val, _ = _predict(job.network, job.pixels[val], job.backbone.normalization, job.device)
    p_test, _ = _predict(job.network, job.pixels[test], job.backbone.normalization, job.device)
    result_metrics = {
        "validation": metrics(job.labels[val], p_val, job.config.threshold),
        "test": metrics(job.labels[test], p_test, job.config.threshold),
    }
    job.network.eval()
    save_checkpoint(
        job.output,
        job.network,
        job.backbone,
        job.config,
        "finetune",
        {
            **job.record,
            "metrics": result_metrics,
            "training": {"best_epoch": best_epoch, "history": copy.deepcopy(history)},
        },
    )
    if state_path.exists():
        os.unlink(state_path)
    return TrainResult(
        job.output,
        "finetune",
        result_metrics,
        {k: len(v) for k, v in job.parts.items()},
        best_epoch=best_epoch,
        history=history,
        resumed_from=resumed_from,
        seconds=round(time.perf_counter() - job.start_time, 3),
    )
