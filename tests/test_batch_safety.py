"""Batch safety (issue 11): no output replaces an input, one bad file or guard fails alone, no
orphan image beside a failed line, outputs are never re-ingested, settings changes are redone."""

from __future__ import annotations

import errno
import io
import json
import os
import random
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import safeview.io
from safeview.batch import Job, Outcome, collect, process, run_local
from safeview.cli import app
from tests.conftest import RedGuard, red_square_image


def _save(path: Path, fmt: str, pixels: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(red_square_image() if pixels is None else pixels)
    if fmt == "GIF":
        image = image.convert("P")
    image.save(path, format=fmt)
    return path


def _options(guard: Any, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "guard": guard,
        "style": "fill",
        "working_size": 64,
        "max_regions": 3,
        "segmenter": "slic",
        "segmenter_options": {"compactness": 10, "n_segments": 20},
    }
    options.update(extra)
    return options


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _run(inputs: list[str], out: Path, options: dict[str, Any], viz: bool = False) -> list[Outcome]:
    jobs, errors = collect(inputs, out=out)
    assert errors == []
    return run_local(jobs, out, options, viz)


def test_output_folder_equal_to_the_input_folder_never_replaces_an_input(
    tmp_path: Path, red_guard: RedGuard
) -> None:
    folder = tmp_path / "in"
    for name, fmt in (("p.jpeg", "JPEG"), ("p.jpg", "JPEG"), ("x.gif", "GIF"), ("x.png", "PNG")):
        _save(folder / name, fmt)
    originals = _files(folder)
    outcomes = _run([str(folder)], folder, _options(red_guard), viz=True)
    after = _files(folder)
    for name, data in originals.items():
        assert after[name] == data, f"{name} was changed"
    by_input = {Path(o.job.source).name: o.record for o in outcomes if o.job.source}
    # p.jpeg's output would be p.jpg, x.gif's would be x.png: both refused, by name.
    for name in ("p.jpeg", "x.gif", "p.jpg", "x.png"):
        record = by_input[name]
        if record["status"] == "failed":
            assert name in record["error"] and "would overwrite" in record["error"]
    assert "p.jpg" in by_input["p.jpeg"]["error"] and "x.png" in by_input["x.gif"]["error"]
    outputs = [o.record["output"] for o in outcomes if o.record["output"]]
    assert len(outputs) == len(set(outputs))
    inputs = {str((folder / n).resolve()) for n in originals}
    for outcome in outcomes:
        for key in ("output", "report"):
            if outcome.record[key]:
                assert str(Path(outcome.record[key]).resolve()) not in inputs


def test_two_inputs_never_share_an_output_name(tmp_path: Path, red_guard: RedGuard) -> None:
    folder = tmp_path / "in"
    # a.jpeg and a.jpg both become a .jpg; a.viz.png is what a.jpg's --viz picture is called.
    for name, fmt in (("a.jpeg", "JPEG"), ("a.jpg", "JPEG"), ("a.viz.png", "PNG")):
        _save(folder / name, fmt)
    out = tmp_path / "out"
    outcomes = _run([str(folder)], out, _options(red_guard), viz=True)
    assert all(o.record["status"] == "ok" for o in outcomes), [o.record for o in outcomes]
    written = [o.record["output"] for o in outcomes] + [o.record["report"] for o in outcomes]
    written += [o.report.visualization for o in outcomes]
    assert len({p.lower() for p in written}) == len(written) == 9
    for outcome in outcomes:  # each report describes its own input
        report = json.loads(Path(outcome.record["report"]).read_text())
        assert report["input"]["sha256"] == safeview.io.load_image(outcome.job.source).sha256


def test_output_folder_inside_the_input_is_not_ingested(
    tmp_path: Path, red_guard: RedGuard
) -> None:
    for name, nested in (("nested", True), ("same", False)):
        folder = tmp_path / name
        _save(folder / "a.png", "PNG")
        _save(folder / "b.jpeg", "JPEG")
        out = folder / "out" if nested else folder
        for _ in range(2):
            jobs, _ = collect([str(folder)], out=out)
            assert sorted(j.key for j in jobs) == ["a.png", "b.jpeg"]
            if not nested:  # a.png's output would be a.png itself: refused
                assert [j.error is None for j in jobs] == [False, True]
            run_local(jobs, out, _options(red_guard), viz=False)
        assert not (folder / "out" / "out").exists()
    assert (tmp_path / "nested" / "out" / "b.jpg").exists()
    assert (tmp_path / "same" / "b.jpg").exists()  # b.jpeg's output, never taken as an input


def _malformed_tiff() -> bytes:
    """A mutated two-page TIFF on which Pillow raises something other than OSError."""
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    good = bytearray(buffer.getvalue())
    rng = random.Random(3)
    for _ in range(5000):
        sample = bytearray(good)
        at = rng.randrange(len(sample))
        sample[at] = rng.randrange(256)
        try:  # Pillow itself, not our decoder: the sample must make Pillow raise oddly
            with Image.open(io.BytesIO(bytes(sample))) as image:
                image.load()
                _ = image.n_frames
        except (KeyError, TypeError, SyntaxError, struct.error):
            return bytes(sample)
        except Exception:
            continue
    raise AssertionError("no malformed sample found")


class _RaisesMidSearch(RedGuard):
    """Raises once, on its second forward pass (inside the first input's search)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def preprocess(self, images: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("device lost")
        return super().preprocess(images)


def test_a_malformed_file_or_a_raising_guard_fails_that_input_alone(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _save(folder / "a.png", "PNG")
    (folder / "b.tif").write_bytes(_malformed_tiff())
    _save(folder / "c.png", "PNG")
    out = tmp_path / "out"
    outcomes = _run([str(folder)], out, _options(_RaisesMidSearch()))
    status = {o.job.key: o.record for o in outcomes}
    assert status["a.png"]["status"] == "failed"
    assert status["a.png"]["error"].startswith(f"{folder / 'a.png'}: RuntimeError: device lost")
    assert status["b.tif"]["status"] == "failed" and "b.tif" in status["b.tif"]["error"]
    assert "\n" not in status["b.tif"]["error"]
    assert status["c.png"]["status"] == "ok"
    # Closed: the failed inputs wrote nothing; the manifest has a line for each input.
    assert sorted(p.name for p in out.iterdir()) == ["c.json", "c.png", "manifest.jsonl"]
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["input"] for line in lines) == ["a.png", "b.tif", "c.png"]


@pytest.mark.parametrize("failing", [".png", ".json"])
def test_a_failed_write_names_the_input_and_leaves_no_image(
    tmp_path: Path, red_guard: RedGuard, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    _save(tmp_path / "in" / "a.png", "PNG")
    real = safeview.io.atomic_write

    def full_disk(path: Any, data: bytes) -> None:
        if str(path).endswith(failing) and not str(path).endswith("manifest.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path) + ".tmp")
        real(path, data)

    monkeypatch.setattr(safeview.io, "atomic_write", full_disk)
    out = tmp_path / "out"
    (outcome,) = _run([str(tmp_path / "in" / "a.png")], out, _options(red_guard))
    assert outcome.record["status"] == "failed"
    assert outcome.record["error"].startswith(str(tmp_path / "in" / "a.png") + ": cannot write")
    assert "No space left on device" in outcome.record["error"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl"]


def test_an_unwritable_output_folder_is_one_clear_error(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", "PNG")
    (tmp_path / "file").write_text("not a folder")
    result = CliRunner().invoke(
        app, ["safeguard", str(tmp_path / "a.png"), "-o", str(tmp_path / "file" / "out")]
    )
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error: cannot write to the output folder" in result.stderr


def test_on_failure_keep_is_recorded_as_unsafe_not_ok(tmp_path: Path, red_guard: RedGuard) -> None:
    _save(tmp_path / "a.png", "PNG")
    hopeless = {"threshold": 1e-9, "max_regions": 1}
    (kept,) = _run(
        [str(tmp_path / "a.png")],
        tmp_path / "k",
        _options(red_guard, on_failure="keep", **hopeless),
    )
    assert kept.record["status"] == "unsafe-kept" and not kept.ok
    assert "still flagged" in kept.record["error"] and "a.png" in kept.record["error"]
    assert kept.record["fallback"] == "keep" and Path(kept.record["output"]).exists()
    (blurred,) = _run([str(tmp_path / "a.png")], tmp_path / "b", _options(red_guard, **hopeless))
    assert blurred.record["status"] == "ok" and blurred.record["fallback"] == "blur-all"


def test_a_rerun_with_other_settings_redoes_and_removes_stale_images(
    tmp_path: Path, red_guard: RedGuard
) -> None:
    source = str(_save(tmp_path / "a.png", "PNG"))
    out = tmp_path / "out"
    hopeless = {"threshold": 1e-9, "max_regions": 1}
    (first,) = _run([source], out, _options(red_guard, **hopeless))
    assert first.ok and (out / "a.png").exists()
    assert first.record["settings"]["threshold"] == 1e-9
    (same,) = _run([source], out, _options(red_guard, **hopeless))
    assert same.skipped
    (other,) = _run([source], out, _options(red_guard, on_failure="error", **hopeless))
    assert not other.skipped and other.extra.get("settings_changed")
    assert other.record["status"] == "failed" and other.record["settings"]["on_failure"] == "error"
    assert not (out / "a.png").exists()  # no image left beside a failed line
    assert json.loads((out / "a.json").read_text())["fallback"] == "error"


def test_fifo_inputs_are_refused_in_batch_and_classify(tmp_path: Path, red_guard: RedGuard) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "pipe.jpg")
    jobs, _ = collect([str(folder)])
    assert jobs[0].error and "not a regular file" in jobs[0].error
    assert process(jobs[0], tmp_path / "out", _options(red_guard), False).record["status"] == (
        "failed"
    )
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(
            CliRunner().invoke(app, ["classify", str(folder / "pipe.jpg")])
        ),
        daemon=True,
    )
    thread.start()
    thread.join(60)
    if thread.is_alive():
        with open(folder / "pipe.jpg", "wb"):
            pass
        thread.join(60)
        pytest.fail("classify blocked on a FIFO")
    assert results[0].exit_code == 1 and "not a regular file" in results[0].stderr


def test_job_for_dev_zero_is_refused() -> None:
    jobs, _ = collect(["/dev/zero"])
    assert isinstance(jobs[0], Job) and jobs[0].error and "not a regular file" in jobs[0].error


def test_an_input_replaced_since_the_last_run_is_done_again(
    tmp_path: Path, red_guard: RedGuard
) -> None:
    source = _save(tmp_path / "in" / "a.png", "PNG")
    out = tmp_path / "out"
    first = _run([str(source.parent)], out, _options(red_guard))
    assert first[0].ok
    sha_first = json.loads(Path(first[0].record["report"]).read_text())["input"]["sha256"]
    # Same name, another image (and a later modification time).
    other = red_square_image(square=(70, 70, 40))
    _save(source, "PNG", other)
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    second = _run([str(source.parent)], out, _options(red_guard))
    assert not second[0].skipped
    sha_second = json.loads(Path(second[0].record["report"]).read_text())["input"]["sha256"]
    assert sha_second != sha_first
    # Unchanged now: skipped.
    third = _run([str(source.parent)], out, _options(red_guard))
    assert third[0].skipped
