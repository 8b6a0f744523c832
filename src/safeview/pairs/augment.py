"""The augmentation experiment: does adding SafetyPairs make a lightweight guard more
sample-efficient?

On the data set's seeded 80/10/10 split (the same as ``safeview train --seed``), a linear probe on
frozen embeddings is trained on 10/25/50/100% of the training split, with and without the safe
halves of the pairs whose unsafe source is in that training subset (pairs made from validation or
test images are never used), for several subsampling seeds; test metrics are compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from safeview.guards.base import select_device
from safeview.io import load_image, resize
from safeview.models.backbones import make_backbone
from safeview.models.network import GuardNet
from safeview.pairs.make import read_manifest
from safeview.train.data import Dataset, load_pixels, split, subsample
from safeview.train.trainer import embed, fit_probe, metrics

DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def match_pairs(data: Dataset, records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Dataset index -> kept pair made from that image (by resolved path, else by path suffix)."""
    by_path = {path.resolve(): i for i, path in enumerate(data.paths)}
    keys = data.relative_paths()
    found: dict[int, dict[str, Any]] = {}
    for record in records:
        if record.get("status") != "kept":
            continue
        index = by_path.get(Path(record.get("source_path", "")).resolve())
        if index is None:
            source = record["source"]
            hits = [i for i, key in enumerate(keys) if key == source or key.endswith("/" + source)]
            index = hits[0] if len(hits) == 1 else None
        if index is not None and data.labels[index] == 1:
            found[index] = record
    return found


def run_experiment(
    data: Dataset,
    pairs_dir: str | Path,
    backbone: str = "efficientnet-lite0",
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    seeds: tuple[int, ...] = (0, 1, 2),
    split_seed: int = 0,
    device: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    pairs_dir = Path(pairs_dir)
    matched = match_pairs(data, read_manifest(pairs_dir))
    if not matched:
        raise ValueError(
            f"none of the kept pairs in {pairs_dir} was made from an unsafe image of {data.root}"
        )
    parts = split(data.labels, split_seed)
    train_set = set(parts["train"].tolist())
    usable = {i: r for i, r in matched.items() if i in train_set}
    resolved = select_device(device)
    model = make_backbone(backbone)
    network = GuardNet(model.trunk, model.dim).to(resolved)
    pixels = load_pixels(
        data.paths,
        model.input_size,
        None if progress is None else (lambda n: progress("decode", n, len(data.paths))),
    )
    features = embed(network, pixels, model.normalization, resolved, progress=progress)
    order = sorted(usable)
    edits = (
        np.stack(
            [
                resize(load_image(pairs_dir / usable[i]["files"]["safe"]).pixels, model.input_size)
                for i in order
            ]
        )
        if order
        else np.zeros((0, *model.input_size[::-1], 3), np.uint8)
    )
    edit_features = embed(network, edits, model.normalization, resolved)
    edit_row = {index: row for row, index in enumerate(order)}
    labels = data.labels
    val, test = parts["val"], parts["test"]
    rows = []
    for fraction in fractions:
        for seed in seeds:
            train = subsample(parts["train"], labels, fraction, seed)
            added = [edit_row[i] for i in train.tolist() if i in edit_row]
            base_x, base_y = features[train], labels[train]
            for with_pairs in (False, True):
                if with_pairs:
                    x = np.concatenate([base_x, edit_features[added]])
                    y = np.concatenate([base_y, np.zeros(len(added), dtype=base_y.dtype)])
                else:
                    x, y = base_x, base_y
                weight, bias, c = fit_probe(x, y, features[val], labels[val], seed)
                p = 1.0 / (1.0 + np.exp(-(features[test] @ weight + bias)))
                result = metrics(labels[test], p)
                rows.append(
                    {
                        "fraction": fraction,
                        "seed": seed,
                        "with_pairs": with_pairs,
                        "n_train_images": len(train),
                        "n_pairs_added": len(added) if with_pairs else 0,
                        "C": c,
                        **{k: result[k] for k in ("accuracy", "f1", "auroc")},
                    }
                )
            if progress is not None:
                progress("probes", 1, len(fractions) * len(seeds))
    return {
        "schema_version": "1.0",
        "data": str(data.root),
        "category": data.category,
        "pairs_dir": str(pairs_dir),
        "backbone": backbone,
        "split": {"seed": split_seed, **{k: len(v) for k, v in parts.items()}},
        "pairs": {
            "kept_matched": len(matched),
            "in_training_split": len(usable),
            "excluded_val_or_test": len(matched) - len(usable),
        },
        "seeds": list(seeds),
        "rows": rows,
        "table": summarize(rows),
    }


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per fraction: median test accuracy/F1 without and with pairs over the seeds."""
    table = []
    for fraction in sorted({r["fraction"] for r in rows}):
        without = [r for r in rows if r["fraction"] == fraction and not r["with_pairs"]]
        with_ = [r for r in rows if r["fraction"] == fraction and r["with_pairs"]]
        acc0 = float(np.median([r["accuracy"] for r in without]))
        acc1 = float(np.median([r["accuracy"] for r in with_]))
        table.append(
            {
                "fraction": fraction,
                "n_train_images": int(np.median([r["n_train_images"] for r in without])),
                "n_pairs_added": int(np.median([r["n_pairs_added"] for r in with_])),
                "accuracy_without": round(acc0, 4),
                "accuracy_with": round(acc1, 4),
                "accuracy_gain": round(acc1 - acc0, 4),
                "f1_without": round(float(np.median([r["f1"] for r in without])), 4),
                "f1_with": round(float(np.median([r["f1"] for r in with_])), 4),
            }
        )
    return table


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        "| training data | images | pairs added | accuracy without | accuracy with | gain | "
        "F1 without | F1 with |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["table"]:
        lines.append(
            f"| {100 * row['fraction']:.0f}% | {row['n_train_images']} | {row['n_pairs_added']} | "
            f"{row['accuracy_without']:.3f} | {row['accuracy_with']:.3f} | "
            f"{row['accuracy_gain']:+.3f} | {row['f1_without']:.3f} | {row['f1_with']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], output: str | Path) -> str:
    """Write ``augment.json``, ``augment.md`` (the table) and ``augment.png`` (the plot) to
    ``output``; returns the table."""
    from safeview.io import atomic_write

    folder = Path(output)
    table = markdown_table(result)
    atomic_write(folder / "augment.json", json.dumps(result, indent=2).encode())
    atomic_write(folder / "augment.md", table.encode())
    plot(result, folder / "augment.png")
    return table


def plot(result: dict[str, Any], path: str | Path) -> None:
    """Test accuracy vs training fraction, with and without pairs (median, interquartile band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fractions = sorted({r["fraction"] for r in rows})
    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    for with_pairs, label, colour in (
        (False, "without pairs", "#888888"),
        (True, "with SafetyPairs", "#c0392b"),
    ):
        values = [
            [r["accuracy"] for r in rows if r["fraction"] == f and r["with_pairs"] == with_pairs]
            for f in fractions
        ]
        x = [100 * f for f in fractions]
        axis.plot(x, [np.median(v) for v in values], marker="o", label=label, color=colour)
        axis.fill_between(
            x,
            [np.percentile(v, 25) for v in values],
            [np.percentile(v, 75) for v in values],
            alpha=0.15,
            color=colour,
        )
    axis.set_xlabel("training data used (%)")
    axis.set_ylabel("test accuracy (median, interquartile band)")
    axis.set_title(f"linear probe ({result['backbone']}), category {result['category']}")
    axis.set_ylim(0.4, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    from io import BytesIO

    from safeview.io import atomic_write

    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write(path, buffer.getvalue())
