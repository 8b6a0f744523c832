"""The augmentation experiment on a tiny backbone: rows, leakage rules, table and plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from safeview.pairs import make_editor, make_pairs
from safeview.pairs.augment import (
    markdown_table,
    match_pairs,
    plot,
    run_experiment,
    write_outputs,
)
from safeview.pairs.make import read_manifest
from safeview.train import find_dataset, split
from tests.conftest import RedGuard
from tests.train.conftest import write_dataset


def test_augmentation_experiment(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "data", n=20)
    data = find_dataset(root, "red")
    pairs = tmp_path / "pairs"
    make_pairs(root / "unsafe", pairs, "red", make_editor("obfuscate", style="fill"), RedGuard())
    matched = match_pairs(data, read_manifest(pairs))
    assert matched and all(data.labels[i] == 1 for i in matched)
    result = run_experiment(data, pairs, "tiny-test", fractions=(0.25, 1.0), seeds=(0, 1))
    assert len(result["rows"]) == 2 * 2 * 2
    counts = result["pairs"]
    assert counts["kept_matched"] == len(matched)
    assert counts["in_training_split"] + counts["excluded_val_or_test"] == len(matched)
    held_out = set(np.concatenate([split(data.labels, 0)["val"], split(data.labels, 0)["test"]]))
    assert counts["excluded_val_or_test"] == len(set(matched) & held_out)
    for row in result["rows"]:
        assert 0.0 <= row["accuracy"] <= 1.0
        if not row["with_pairs"]:
            assert row["n_pairs_added"] == 0
    full = [r for r in result["rows"] if r["fraction"] == 1.0 and r["with_pairs"]]
    assert all(r["n_pairs_added"] == counts["in_training_split"] for r in full)
    assert [row["fraction"] for row in result["table"]] == [0.25, 1.0]
    table = markdown_table(result)
    assert table.count("\n") == 4 and "| 25% |" in table
    plot(result, tmp_path / "augment.png")
    assert (tmp_path / "augment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = tmp_path / "written"
    assert write_outputs(result, written) == table
    assert (written / "augment.md").read_text() == table
    assert json.loads((written / "augment.json").read_text()) == result
    assert (written / "augment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
