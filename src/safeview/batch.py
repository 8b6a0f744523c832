"""Batch safeguarding of files and folders: output layout, the manifest, resuming, engines.

Layout: a file given directly is written as ``OUT/NAME.EXT``; a file found under a folder given as
input keeps its path relative to that folder, ``OUT/sub/dir/NAME.EXT``. Each image gets its report
beside it (``NAME.json``). ``OUT/manifest.jsonl`` has one JSON object per input: ``input`` (the
relative path), ``status`` (``ok`` or ``failed``), ``output``, ``report`` and ``error``.

Resuming: lines are appended to the manifest as inputs finish; a rerun skips inputs whose line says
``ok`` and whose files exist, removes temporary files a killed run left behind, and finally rewrites
the manifest with exactly one line per input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeview.io import IMAGE_EXTENSIONS, ImageInputError

MANIFEST = "manifest.jsonl"
TEMP_PREFIX = ".safeview-"


@dataclass
class Job:
    """One input: where it comes from, its manifest key and where its outputs go."""

    key: str  # relative path, POSIX style: the manifest's "input"
    source: Path | None
    name: str  # as shown in messages
    pixels: Any = None  # for in-memory inputs (--demo)
    error: str | None = None  # set when the input is refused before decoding

    @property
    def stem(self) -> Path:
        return Path(self.key).with_suffix("")


@dataclass
class Outcome:
    """What happened to one job; ``record`` is its manifest line."""

    job: Job
    record: dict[str, Any]
    report: Any = None
    skipped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"


def _walk(root: Path) -> Iterable[tuple[Path, bool]]:
    """(file, is_symlink) for every image-named entry under ``root``; symlinked folders are not
    followed."""
    for folder, directories, files in os.walk(root, followlinks=False):
        directories.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                yield path, path.is_symlink()


def collect(inputs: list[str], demo: bool = False) -> tuple[list[Job], list[str]]:
    """Expand files and folders into jobs with unique keys; return them and one error line per
    input that yields nothing (missing path, folder without images)."""
    jobs: list[Job] = []
    errors: list[str] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = list(_walk(path))
            if not found:
                errors.append(f"{raw}: no images found in directory")
            for item, is_link in found:
                key = item.relative_to(path).as_posix()
                job = Job(key, item, str(item))
                if is_link:
                    job.error = f"{item}: symbolic link refused"
                jobs.append(job)
        elif path.is_symlink():
            jobs.append(Job(path.name, path, raw, error=f"{raw}: symbolic link refused"))
        elif path.exists():
            jobs.append(Job(path.name, path, raw))
        else:
            errors.append(f"{raw}: no such file or directory")
    if demo:
        from skimage import data

        for sample in ("chelsea", "coffee", "astronaut"):
            jobs.append(Job(f"demo-{sample}.png", None, f"demo:{sample}", getattr(data, sample)()))
    _make_unique(jobs)
    return jobs, errors


def _make_unique(jobs: list[Job]) -> None:
    """Outputs are named by stem, so two inputs with the same relative stem (from two roots, or
    photo.jpg beside photo.png) get -2, -3, ... suffixes."""
    seen: set[str] = set()
    for job in jobs:
        stem, suffix = os.path.splitext(job.key)
        candidate, number = stem, 1
        while candidate.lower() in seen:
            number += 1
            candidate = f"{stem}-{number}"
        seen.add(candidate.lower())
        job.key = candidate + suffix


def output_paths(out: Path, job: Job, extension: str) -> tuple[Path, Path, Path]:
    """(image, report, visualisation) paths for ``job``; refuses anything that escapes ``out``."""
    stem = out / job.stem
    root = out.resolve()
    resolved = stem.resolve()
    if root != resolved and root not in resolved.parents:
        raise ImageInputError(f"{job.name}: output path escapes the output folder")
    return (
        stem.with_name(stem.name + extension),
        stem.with_name(stem.name + ".json"),
        stem.with_name(stem.name + ".viz.png"),
    )


class Manifest:
    """``OUT/manifest.jsonl``: appended line by line, rewritten whole at the end."""

    def __init__(self, out: Path) -> None:
        self.path = out / MANIFEST

    def load(self) -> dict[str, dict[str, Any]]:
        """The last complete record per input; a torn last line from a kill is ignored."""
        records: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "input" in record:
                records[str(record["input"])] = record
        return records

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        from safeview.io import atomic_write

        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in records).encode())


def remove_partial_files(out: Path) -> int:
    """Delete temporary files that a killed run left in ``out``; returns how many."""
    removed = 0
    if out.is_dir():
        for path in out.rglob(f"{TEMP_PREFIX}*.tmp"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def already_done(record: dict[str, Any] | None) -> bool:
    if not record or record.get("status") != "ok":
        return False
    return all(
        record.get(key) is None or Path(record[key]).exists() for key in ("output", "report")
    )


def failed_record(job: Job, error: str) -> dict[str, Any]:
    return {"input": job.key, "status": "failed", "output": None, "report": None, "error": error}


def process(
    job: Job, out: Path, options: dict[str, Any], viz: bool, data: bytes | None = None
) -> Outcome:
    """Safeguard one job and write its files; every input error becomes a failed record."""
    from safeview.io import atomic_write, encode_image, load_image, output_format
    from safeview.pipeline import SearchFailedError, safeguard

    if job.error:
        return Outcome(job, failed_record(job, job.error))
    try:
        if data is not None:
            loaded = load_image(data, name=job.name)
        else:
            loaded = load_image(job.pixels if job.source is None else job.source, name=job.name)
        _, extension = output_format(loaded.format)
        image_path, report_path, viz_path = output_paths(out, job, extension)
        if (
            job.source is not None
            and image_path.exists()
            and (image_path.resolve() == job.source.resolve())
        ):
            raise ImageInputError(f"{job.name}: output {image_path} would overwrite the input")
        try:
            report = safeguard(loaded, **options)
        except SearchFailedError as failed:
            report = failed.report
        if report.encoded is not None:
            atomic_write(image_path, report.encoded)
            report.output = str(image_path)
        if viz and report.image is not None:
            from safeview.viz import visualize

            atomic_write(viz_path, encode_image(visualize(report), "PNG"))
            report.visualization = str(viz_path)
        atomic_write(report_path, (report.to_json() + "\n").encode())
    except (ImageInputError, ValueError, OSError) as exc:
        return Outcome(job, failed_record(job, str(exc)))
    error = None
    if report.fallback == "error":
        error = f"{job.name}: {report.error} (no image written)"
    record = {
        "input": job.key,
        "status": "failed" if error else "ok",
        "output": report.output,
        "report": str(report_path),
        "error": error,
    }
    return Outcome(job, record, report)


def run_local(
    jobs: list[Job],
    out: Path,
    options: dict[str, Any],
    viz: bool,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Process ``jobs`` one by one in this process, resuming from ``OUT/manifest.jsonl``."""
    manifest = Manifest(out)
    remove_partial_files(out)
    previous = manifest.load()
    outcomes = []
    for job in jobs:
        if already_done(previous.get(job.key)):
            outcome = Outcome(job, previous[job.key], skipped=True)
        else:
            outcome = process(job, out, options, viz)
            manifest.append(outcome.record)
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    manifest.rewrite([o.record for o in outcomes])
    return outcomes
