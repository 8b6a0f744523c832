"""Batch safeguarding of files and folders: output layout, the manifest, resuming, engines.

Layout: a file given directly is written as ``OUT/NAME.EXT``; a file found under a folder given as
input keeps its path relative to that folder, ``OUT/sub/dir/NAME.EXT``. Each image gets its report
beside it (``NAME.json``). ``OUT/manifest.jsonl`` has one JSON object per input: ``input`` (the
relative path), ``status``, ``output``, ``report``, ``error``, ``fallback`` and ``settings`` (the
options that produced it). ``status`` is ``ok`` (not flagged, or flipped; or the whole image blurred
by the fail-closed ``blur-all`` fallback), ``unsafe-kept`` (``--on-failure keep``: the output was
written as asked but the guard still flags it; ``error`` says so) or ``failed`` (no image).

Inputs and outputs never meet: no output path (image, ``.json``, ``.viz.png``, with any of the
image extensions) may be an input's path; such an input is refused with a one-line error (choose
another ``-o``), and two inputs never share an output name (``-2``, ``-3``, ... suffixes). A folder
walk never descends into the output folder and skips the files our manifest lists as outputs, so a
rerun does not ingest its own results.

Resuming: lines are appended to the manifest as inputs finish; a rerun skips inputs whose line says
``ok``, whose files exist and whose recorded ``settings`` equal this run's, removes temporary files
a killed run left behind, and finally rewrites the manifest with exactly one line per input. A
rerun with other settings (guard, threshold, style, ``--viz``, ...) redoes the inputs that were done
with different settings, replacing their outputs: what is in the folder always matches the options
of the last run, as its manifest says.

Videos (by extension in a folder walk; by extension or container signature for a file given
directly) are safeguarded by :class:`safeview.video.VideoPipeline` with the same options:
``OUT/NAME.mp4`` (``.mkv`` for Matroska sources) and ``OUT/NAME.json``, written atomically, in
the same manifest, resumed the same way.

Failures are per input: an unreadable file, a decoder error, a guard or search that raises, or an
output that cannot be written (read-only or full folder) fails that input alone with a line naming
it; nothing it wrote stays behind (the image is written last and removed again on failure). Only
an output folder whose manifest cannot be written stops the batch (:class:`OutputFolderError`).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeview.files import walk_images
from safeview.io import OUTPUT_EXTENSIONS, ImageInputError
from safeview.video.formats import VIDEO_OUTPUT_EXTENSIONS, is_video_path, output_extension

if TYPE_CHECKING:
    from safeview.options import SafeguardOptions
    from safeview.pipeline import Pipeline

MANIFEST = "manifest.jsonl"
TEMP_PREFIX = ".safeview-"
#: Everything a job may write beside its stem: the image (any output extension), report, picture.
OUTPUT_SUFFIXES = (
    *sorted(OUTPUT_EXTENSIONS | VIDEO_OUTPUT_EXTENSIONS), ".json", ".viz.png",
)  # fmt: skip
#: ``progress(stage, done, total)`` while a long input (a video) is worked on.
Progress = Callable[[str, int, int], None]
#: Options that do not change what is written (so a rerun with other values redoes nothing).
_NEUTRAL_OPTIONS = frozenset({"device", "batch_size"})


class OutputFolderError(RuntimeError):
    """The output folder cannot be written at all (its manifest): the batch cannot go on."""


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


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _own_outputs(out: Path) -> set[Path]:
    """The files that ``OUT/manifest.jsonl`` lists as written by an earlier run."""
    own: set[Path] = set()
    for record in Manifest(out).load().values():
        for key in ("output", "report"):
            if isinstance(record.get(key), str):
                own.add(_resolved(Path(record[key])))
        if isinstance(record.get("report"), str) and record["report"].endswith(".json"):
            own.add(_resolved(Path(record["report"][: -len(".json")] + ".viz.png")))
    return own


def _not_regular(path: Path) -> str | None:
    """Why ``path`` cannot be read as an image file without touching its contents, or None."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    return "not a regular file (a FIFO, device or socket)"


def collect(
    inputs: list[str], demo: bool = False, out: str | os.PathLike[str] | None = None
) -> tuple[list[Job], list[str]]:
    """Expand files and folders into jobs with unique keys; return them and one error line per
    input that yields nothing (missing path, folder without images).

    With ``out`` (the output folder), a folder walk skips ``out`` itself and the outputs that its
    manifest lists, and any input whose outputs could land on an input's path is refused
    (``job.error``)."""
    jobs: list[Job] = []
    errors: list[str] = []
    skip: frozenset[Path] = frozenset()
    if out is not None:
        skip = frozenset({_resolved(Path(out))} | _own_outputs(Path(out)))
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = [
                (entry.path, entry.is_symlink)
                for entry in walk_images(path, skip=skip, videos=True)
            ]
            if not found:
                errors.append(f"{raw}: no images found in directory (nor videos)")
            for item, is_link in found:
                key = item.relative_to(path).as_posix()
                job = Job(key, item, str(item))
                if is_link:
                    job.error = f"{item}: symbolic link refused"
                elif (why := _not_regular(item)) is not None:
                    job.error = f"{item}: {why}"
                jobs.append(job)
        elif path.is_symlink():
            jobs.append(Job(path.name, path, raw, error=f"{raw}: symbolic link refused"))
        elif path.exists():
            why = _not_regular(path)
            jobs.append(Job(path.name, path, raw, error=f"{raw}: {why}" if why else None))
        else:
            errors.append(f"{raw}: no such file or directory")
    if demo:
        from skimage import data

        for sample in ("chelsea", "coffee", "astronaut"):
            jobs.append(Job(f"demo-{sample}.png", None, f"demo:{sample}", getattr(data, sample)()))
    _make_unique(jobs)
    if out is not None:
        _refuse_outputs_on_inputs(jobs, Path(out))
    return jobs, errors


def _make_unique(jobs: list[Job]) -> None:
    """Outputs are named by stem, so two inputs whose outputs could share a name (the same relative
    stem from two roots, photo.jpg beside photo.png, or photo.viz.png beside photo.jpg, whose
    visualisation is photo.viz.png) get -2, -3, ... suffixes. Compared without case, so that a
    case-insensitive file system cannot merge two outputs either."""
    taken: set[str] = set()
    for job in jobs:
        stem, suffix = os.path.splitext(job.key)
        candidate, number = stem, 1
        while any((candidate + end).lower() in taken for end in OUTPUT_SUFFIXES):
            number += 1
            candidate = f"{stem}-{number}"
        taken.update((candidate + end).lower() for end in OUTPUT_SUFFIXES)
        job.key = candidate + suffix


def _refuse_outputs_on_inputs(jobs: list[Job], out: Path) -> None:
    """Refuse every job one of whose possible outputs is an input's path (itself or another's)."""
    inputs = {
        str(_resolved(job.source)).lower(): job.source for job in jobs if job.source is not None
    }
    for job in jobs:
        if job.error:
            continue
        try:
            image, _, _ = output_paths(out, job, "")
        except ImageInputError as exc:
            job.error = str(exc)
            continue
        for end in OUTPUT_SUFFIXES:
            candidate = image.with_name(image.name + end)
            hit = inputs.get(str(_resolved(candidate)).lower())
            if hit is not None:
                which = "the input" if hit == job.source else f"the input {hit}"
                job.error = (
                    f"{job.name}: its output {candidate} would overwrite {which}; "
                    "choose an output folder (-o) that holds no inputs"
                )
                break


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


def pipeline_of(options: Pipeline | SafeguardOptions | Mapping[str, Any]) -> Pipeline:
    """One :class:`Pipeline` for a whole batch (built once: guard, segmenter, search, renderer)."""
    from safeview.options import SafeguardOptions
    from safeview.pipeline import Pipeline

    if isinstance(options, Pipeline):
        return options
    if isinstance(options, SafeguardOptions):
        return Pipeline(options)
    return Pipeline(SafeguardOptions.from_mapping(options))


def settings_of(
    options: Pipeline | SafeguardOptions | Mapping[str, Any], viz: bool
) -> dict[str, Any]:
    """What of ``options`` (and ``--viz``) decides the outputs, as JSON values: recorded in the
    manifest, and compared on a rerun."""
    every = pipeline_of(options).options.to_dict()
    kept: dict[str, Any] = {k: v for k, v in every.items() if k not in _NEUTRAL_OPTIONS}
    if not kept.get("protect"):  # as manifests written before the option existed record it
        kept.pop("protect", None)
    kept["viz"] = bool(viz)
    normalised: dict[str, Any] = json.loads(json.dumps(kept, sort_keys=True, default=str))
    return normalised


def source_stamp(job: Job) -> dict[str, Any] | None:
    """What identifies the input file's content cheaply (its path, size and modification time),
    recorded in the manifest: a file replaced or edited since is done again, not skipped."""
    if job.source is None:
        return None
    try:
        info = os.stat(job.source, follow_symlinks=False)
    except OSError:
        return None
    return {"path": str(job.source), "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def already_done(
    record: dict[str, Any] | None,
    settings: dict[str, Any] | None = None,
    job: Job | None = None,
) -> bool:
    """Whether ``record`` is a finished ``ok`` input whose files exist (and, given ``settings``,
    that was made with these settings; given ``job``, from the same unchanged input file)."""
    if not record or record.get("status") != "ok":
        return False
    if settings is not None and record.get("settings") != settings:
        return False
    if job is not None and job.source is not None:
        stamp = source_stamp(job)
        if stamp is None or record.get("source") != stamp:
            return False
    return all(
        record.get(key) is None or Path(record[key]).exists() for key in ("output", "report")
    )


def failed_record(job: Job, error: str) -> dict[str, Any]:
    return {"input": job.key, "status": "failed", "output": None, "report": None, "error": error}


class _WriteError(Exception):
    """An output of a job could not be written; the message names the input."""


def _write(job: Job, path: Path, data: bytes, written: list[Path]) -> None:
    from safeview.io import atomic_write

    try:
        atomic_write(path, data)
    except OSError as exc:
        raise _WriteError(f"{job.name}: cannot write {path} ({exc.strerror or exc})") from None
    written.append(path)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def process(
    job: Job,
    out: Path,
    options: Pipeline | SafeguardOptions | Mapping[str, Any],
    viz: bool,
    data: bytes | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Safeguard one job and write its files; every failure becomes a failed record.

    Nothing raised while decoding, searching or writing escapes (but ``KeyboardInterrupt`` and
    other ``BaseException``): the job fails alone, closed, and whatever it wrote is removed again.
    The visualisation and report are written first and the image last.
    """
    from safeview.io import encode_image, load_image, output_format
    from safeview.pipeline import SearchFailedError

    if job.error:
        return Outcome(job, failed_record(job, job.error))
    pipeline = pipeline_of(options)
    if data is None and job.source is not None and is_video_path(job.source):
        return _process_video(job, out, pipeline, viz, progress)
    written: list[Path] = []
    image_path: Path | None = None
    try:
        if data is not None:
            loaded = load_image(data, name=job.name)
        else:
            loaded = load_image(job.pixels if job.source is None else job.source, name=job.name)
        _, extension = output_format(loaded.format)
        image_path, report_path, viz_path = output_paths(out, job, extension)
        if job.source is not None:
            for target in (image_path, report_path, viz_path):
                if target.exists() and os.path.samefile(target, job.source):
                    raise ImageInputError(f"{job.name}: output {target} would overwrite the input")
        try:
            report = pipeline.safeguard(loaded)
        except SearchFailedError as failed:
            report = failed.report
        report.output = str(image_path) if report.encoded is not None else None
        if viz and report.image is not None:
            from safeview.viz import visualize

            picture = encode_image(visualize(report), "PNG")
            _write(job, viz_path, picture, written)
            report.visualization = str(viz_path)
        _write(job, report_path, (report.to_json() + "\n").encode(), written)
        if report.encoded is not None:
            _write(job, image_path, report.encoded, written)
        elif image_path.is_file() and not os.path.islink(image_path):
            image_path.unlink()  # an earlier run's image must not sit beside this "failed" line
    except Exception as exc:  # one input must never take the batch down
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        named = isinstance(exc, (ImageInputError, _WriteError)) or (
            isinstance(exc, (ValueError, OSError)) and job.name in str(exc)
        )
        message = str(exc) if named else f"{job.name}: {type(exc).__name__}: {exc}"
        return Outcome(job, failed_record(job, _one_line(message)))
    return Outcome(job, _record(job, report, report_path), report)


def _process_video(
    job: Job, out: Path, pipeline: Pipeline, viz: bool, progress: Progress | None
) -> Outcome:
    """Safeguard one video: ``OUT/NAME.mp4`` (written atomically by the video pipeline) and its
    report; on any failure nothing of it stays (the video is written through a temporary file
    that is removed, the report is removed again)."""
    from safeview.io import encode_image
    from safeview.video.pipeline import VideoPipeline, VideoSearchFailedError
    from safeview.video.viz import StripFrames, strip

    assert job.source is not None
    written: list[Path] = []
    video_path: Path | None = None
    try:
        video_path, report_path, viz_path = output_paths(out, job, output_extension(job.source))
        for target in (video_path, report_path):
            if target.exists() and os.path.samefile(target, job.source):
                raise ImageInputError(f"{job.name}: output {target} would overwrite the input")
        frames = StripFrames() if viz else None
        try:
            report = VideoPipeline(pipeline.options).safeguard(
                job.source, video_path, name=job.name, progress=progress, on_frame=frames
            )
        except VideoSearchFailedError as failed:
            if video_path.is_file() and not os.path.islink(video_path):
                video_path.unlink()  # an earlier run's output must not sit beside "failed"
            return Outcome(job, failed_record(job, _one_line(f"{failed} (nothing written)")))
        written.append(video_path)
        if frames is not None:
            picture = encode_image(strip(report, frames), "PNG")
            _write(job, viz_path, picture, written)
            report.visualization = str(viz_path)
        _write(job, report_path, (report.to_json() + "\n").encode(), written)
    except Exception as exc:  # one input must never take the batch down
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        named = isinstance(exc, (ImageInputError, _WriteError)) or (
            isinstance(exc, (ValueError, OSError)) and job.name in str(exc)
        )
        message = str(exc) if named else f"{job.name}: {type(exc).__name__}: {exc}"
        return Outcome(job, failed_record(job, _one_line(message)))
    return Outcome(job, _record(job, report, report_path), report)


def _record(job: Job, report: Any, report_path: Path) -> dict[str, Any]:
    status, error = "ok", None
    if report.fallback == "error":
        status, error = "failed", f"{job.name}: {report.error} (no image written)"
    elif report.flagged and not report.success and report.fallback == "keep":
        status = "unsafe-kept"
        error = (
            f"{job.name}: still flagged ({report.error}); the attempted regions were kept as "
            "asked (--on-failure keep): the output may be unsafe"
        )
    return {
        "input": job.key,
        "status": status,
        "output": report.output,
        "report": str(report_path),
        "error": error,
        "fallback": report.fallback,
    }


def _discard_stale(
    previous: dict[str, Any] | None, record: dict[str, Any], out: Path, inputs: set[Path]
) -> None:
    """Remove the image an earlier run wrote for this input when this run wrote none (or another):
    no image may sit in the folder that the manifest does not vouch for."""
    old = (previous or {}).get("output")
    if not isinstance(old, str) or old == record.get("output"):
        return
    path = Path(old)
    resolved = _resolved(path)
    root = _resolved(out)
    if root not in resolved.parents or resolved in inputs or path.is_symlink():
        return
    with contextlib.suppress(OSError):
        path.unlink()


def run_local(
    jobs: list[Job],
    out: Path,
    options: Pipeline | SafeguardOptions | Mapping[str, Any],
    viz: bool,
    on_done: Callable[[Outcome], None] | None = None,
    on_progress: Progress | None = None,
) -> list[Outcome]:
    """Process ``jobs`` one by one in this process, resuming from ``OUT/manifest.jsonl``.
    ``on_progress`` follows the frames of each video.

    Raises :class:`OutputFolderError` when the manifest cannot be written (a read-only output
    folder, a full disk): with nowhere to record results, going on would only waste work.
    """
    manifest = Manifest(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(manifest.path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise OutputFolderError(
            f"cannot write to the output folder {out} ({exc.strerror or exc})"
        ) from None
    remove_partial_files(out)
    previous = manifest.load()
    pipeline = pipeline_of(options)
    settings = settings_of(pipeline, viz)
    inputs = {_resolved(job.source) for job in jobs if job.source is not None}
    outcomes = []
    for job in jobs:
        before = previous.get(job.key)
        if already_done(before, settings, job):
            outcome = Outcome(job, previous[job.key], skipped=True)
        else:
            changed = already_done(before)  # done, but with other settings or another file
            stamp = source_stamp(job)  # before processing: an edit meanwhile redoes it next time
            outcome = process(job, out, pipeline, viz, progress=on_progress)
            outcome.record["settings"] = settings
            outcome.record["source"] = stamp
            if changed:
                outcome.extra["settings_changed"] = True
            _discard_stale(before, outcome.record, out, inputs)
            try:
                manifest.append(outcome.record)
            except OSError as exc:
                raise OutputFolderError(
                    f"cannot write the manifest {manifest.path} ({exc.strerror or exc}); "
                    f"stopped after {job.name}"
                ) from None
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    try:
        manifest.rewrite([o.record for o in outcomes])
    except OSError as exc:
        raise OutputFolderError(
            f"cannot rewrite the manifest {manifest.path} ({exc.strerror or exc})"
        ) from None
    return outcomes
