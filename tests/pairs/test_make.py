"""`pairs make` with the offline editors and the red-square guard: kept, rejected and failed
records, files, resuming, masks from files, and the policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from safeview.io import encode_image, load_image
from safeview.pairs import category_policy, make_editor, make_pairs, read_manifest
from tests.conftest import RedGuard


@pytest.mark.parametrize(
    ("editor", "options"), [("obfuscate", {"style": "fill"}), ("inpaint", {"mask_fraction": 0.15})]
)
def test_make_pairs_offline_editors(
    unsafe_dir: Path, tmp_path: Path, editor: str, options: dict[str, object]
) -> None:
    out = tmp_path / "pairs"
    summary = make_pairs(unsafe_dir, out, "red", make_editor(editor, **options), RedGuard())
    records = {r["source"]: r for r in read_manifest(out)}
    assert set(records) == {f"img{i}.png" for i in range(6)} | {"plain.png"}
    plain = records["plain.png"]
    assert plain["status"] == "rejected" and "does not flag" in plain["reasons"][0]
    assert "files" not in plain
    kept = [r for r in records.values() if r["status"] == "kept"]
    assert summary["kept"] == len(kept) >= 4
    for record in kept:
        assert record["scores"]["before"] >= 0.5 > record["scores"]["after"]
        assert record["verification"]["ssim_outside_mask"] >= 0.95
        assert record["editor"]["name"] == editor and record["policy"]
        assert record["guard"]["target"] == "unsafe"
        unsafe = load_image(out / record["files"]["unsafe"]).pixels
        safe = load_image(out / record["files"]["safe"]).pixels
        mask = load_image(out / record["files"]["mask"]).pixels[..., 0] > 127
        source = load_image(unsafe_dir / record["source"]).pixels
        assert np.array_equal(unsafe, source)  # lossless copy of the original
        assert np.array_equal(safe[~mask], source[~mask]) or editor == "inpaint"
        assert not np.array_equal(safe, source)
    stored = {p.name for p in (out / "images").iterdir()}
    assert len(stored) == 2 * len(kept)  # rejected candidates leave no images
    assert (out / "sheet.png").exists()
    assert json.loads((out / "summary.json").read_text())["kept"] == len(kept)


def test_rerun_resumes_and_corrupt_input_fails(unsafe_dir: Path, tmp_path: Path) -> None:
    (unsafe_dir / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "pairs"
    editor = make_editor("obfuscate", style="fill")
    first = make_pairs(unsafe_dir, out, "red", editor, RedGuard())
    assert first["failed"] == 1 and first["sources"] == 8
    broken = next(r for r in read_manifest(out) if r["source"] == "broken.png")
    assert broken["status"] == "failed" and broken["reasons"]
    (unsafe_dir / "new.png").write_bytes((unsafe_dir / "img0.png").read_bytes())
    second = make_pairs(unsafe_dir, out, "red", editor, RedGuard())
    assert second["skipped_already_done"] == 8 and second["sources"] == 9
    assert len(read_manifest(out)) == 9


def test_mask_files_drive_the_inpaint_editor(unsafe_dir: Path, tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    source = load_image(unsafe_dir / "img0.png").pixels
    red = (source[..., 0] > 180) & (source[..., 1] < 90)
    grown = np.zeros_like(red)
    rows, cols = np.nonzero(red)
    grown[rows.min() - 3 : rows.max() + 4, cols.min() - 3 : cols.max() + 4] = True
    (masks / "img0.png").write_bytes(
        encode_image(np.repeat(grown[..., None], 3, axis=2).astype(np.uint8) * 255, "PNG")
    )
    out = tmp_path / "pairs"
    make_pairs(unsafe_dir, out, "red", make_editor("inpaint"), RedGuard(), masks=masks)
    record = next(r for r in read_manifest(out) if r["source"] == "img0.png")
    assert record["editor"]["details"]["mask_source"] == "mask file"
    assert record["verification"]["mask_fraction"] == pytest.approx(grown.mean(), abs=1e-6)
    assert record["status"] == "kept"


def test_bad_arguments(unsafe_dir: Path, tmp_path: Path) -> None:
    editor = make_editor("inpaint")
    with pytest.raises(ValueError, match="must not be inside"):
        make_pairs(unsafe_dir, unsafe_dir / "pairs", "red", editor, RedGuard())
    with pytest.raises(ValueError, match="does not exist"):
        make_pairs(tmp_path / "nope", tmp_path / "p", "red", editor, RedGuard())
    with pytest.raises(ValueError, match="mask folder"):
        make_pairs(unsafe_dir, tmp_path / "p", "red", editor, RedGuard(), masks=tmp_path / "m")
    with pytest.raises(ValueError, match="unknown editor"):
        make_editor("photoshop")
    with pytest.raises(ValueError, match="needs a model"):
        make_editor("diffusers")
    with pytest.raises(ValueError, match=r"has no pairs\.jsonl"):
        read_manifest(tmp_path)


def test_category_policy_sources(tmp_path: Path) -> None:
    text, instruction = category_policy("self-harm")
    assert "self-injury" in text and instruction.startswith("Remove the ")
    text, instruction = category_policy("symbol")
    assert "symbol" in text and "symbol" in instruction
    plain = tmp_path / "p.txt"
    plain.write_text("No red squares.")
    assert category_policy("red", plain)[0] == "No red squares."
    custom = tmp_path / "p.json"
    custom.write_text(json.dumps({"policy": "P", "instruction": "Paint it green."}))
    assert category_policy("red", custom) == ("P", "Paint it green.")
    with pytest.raises(ValueError, match="does not exist"):
        category_policy("red", tmp_path / "none.txt")


def test_rerun_after_a_kill_mid_write(unsafe_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs"
    editor = make_editor("obfuscate", style="fill")
    make_pairs(unsafe_dir, out, "red", editor, RedGuard())
    manifest = out / "pairs.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    # As if killed while writing the last line and an image: half a line, a temporary file.
    manifest.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    (out / "images" / ".safeview-abc.tmp").write_bytes(b"partial")
    summary = make_pairs(unsafe_dir, out, "red", editor, RedGuard())
    assert summary["sources"] == 7 and summary["skipped_already_done"] == 6
    assert len(read_manifest(out)) == 7
    assert not list(out.rglob(".safeview-*.tmp"))


def test_a_guard_trained_for_another_category_is_refused(unsafe_dir: Path, tmp_path: Path) -> None:
    from safeview.pairs import check_guard_category

    class TrainedForBlue(RedGuard):
        category = "blue"

    check_guard_category(RedGuard(), "red")  # a guard without a category verifies any
    check_guard_category(TrainedForBlue(), "blue")
    out = tmp_path / "pairs"
    with pytest.raises(ValueError, match="trained for 'blue', not 'red'"):
        make_pairs(unsafe_dir, out, "red", make_editor("inpaint"), TrainedForBlue())
    assert not out.exists()  # refused before anything is written
