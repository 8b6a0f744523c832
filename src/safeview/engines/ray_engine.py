"""``--engine ray``: the batch job on Ray Data.

Originals never enter Ray's object store: the dataset holds only input paths and manifest keys
(``ray.data.from_items``); each worker reads and decodes its file itself with our safe loader (a bad
file becomes a failed manifest line, not a crashed job), writes the outputs straight into the output
folder (on a cluster it must be shared storage) and returns only its manifest record, a small JSON
string. So nothing Ray spills to disk under memory pressure can hold an original's bytes or pixels.
(``read_binary_files`` put every input's bytes in the store, and Ray spilled them, mode 0644, to
``/tmp/ray/session_*/ray_spilled_objects_*``, where a killed driver left them.)

A local Ray (no address given, none in ``RAY_ADDRESS``) runs in a private folder that we create,
mode 0700, under ``$RAY_TMPDIR`` or the system temp dir: Ray's temp dir (session files, logs) and
its spill directory (0700) are inside, and the folder is removed when the job ends.
``map_batches`` runs an actor pool whose actors load the models once each and get
``cores // actors`` compute threads; actors ask for fractional CPUs so that the source tasks are
never starved (a pool of whole-CPU actors on a 2-CPU machine hangs). The driver writes the
manifest. Resuming works as for the local engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from safeview.batch import (
    Job,
    Manifest,
    Outcome,
    already_done,
    failed_record,
    pipeline_of,
    process,
    remove_partial_files,
    settings_of,
    source_stamp,
)

if TYPE_CHECKING:
    from safeview.options import SafeguardOptions
    from safeview.pipeline import Pipeline

#: Prefix of the private folder a local Ray runs in. Keep it short: Ray's sockets live below it
#: and a Unix socket path is limited to about 107 bytes.
TEMP_PREFIX = "sv-ray-"


class SafeguardActor:
    """A Ray actor: models load once in ``__init__``; ``__call__`` safeguards a batch of files.

    A batch holds manifest keys and paths only; the actor reads each file itself and returns
    manifest records only, so neither originals nor pixels pass through Ray's object store.
    """

    def __init__(self, out: str, options: dict[str, Any], viz: bool, threads: int) -> None:
        """``options``: a :class:`~safeview.options.SafeguardOptions` as a mapping
        (``to_dict()``); the actor builds its own :class:`~safeview.pipeline.Pipeline` from it."""
        from safeview.threads import budget_threads

        budget_threads(threads)  # before the models load (and numba is imported)

        from safeview.batch import pipeline_of

        self.out = Path(out)
        self.viz = viz
        self.pipeline = pipeline_of(options)  # built once per actor: every stage, and the guard
        self.pipeline.guard  # noqa: B018 - load the guard now, not on the first file

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        lines = []
        for key, path in zip(batch["key"], batch["path"], strict=True):
            job = Job(str(key), Path(str(path)), str(path))
            try:
                record = process(job, self.out, self.pipeline, self.viz).record
            except Exception as exc:  # a worker must report, never crash the job
                record = failed_record(job, f"{job.name}: {type(exc).__name__}: {exc}")
            lines.append(json.dumps(record))
        return {"record": np.asarray(lines, dtype=object)}


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for one job.

    Already initialised: used as it is. An address (or ``RAY_ADDRESS``): connected to, and
    disconnected at the end. Otherwise a local Ray in a private 0700 folder holding its session
    files, logs and spill directory; shut down and the folder removed at the end.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    common: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "ignore_reinit_error": True,
    }
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        ray.init(address=address, **common)
        try:
            yield
        finally:
            ray.shutdown()
        return
    base = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
    private = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=base))  # mode 0700
    # Ray makes its temp dir world-writable (0777): it goes inside ours, which nobody else may
    # enter. The spill directory keeps the 0700 we give it.
    spill = private / "spill"
    spill.mkdir(mode=0o700)
    try:
        ray.init(
            address="local",
            _temp_dir=str(private / "ray"),
            object_spilling_directory=str(spill),
            **common,
        )
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(private, ignore_errors=True)


def _actor_options(pipeline: Pipeline) -> dict[str, Any]:
    """The options an actor rebuilds its pipeline from: the JSON form, but a guard or attribution
    object (API callers) travels as itself."""
    options = pipeline.options
    values = options.to_dict()
    for name in ("guard", "attribution"):
        if not isinstance(getattr(options, name), str):
            values[name] = getattr(options, name)
    values["device"] = options.device
    return values


def run_ray(
    jobs: list[Job],
    out: Path,
    options: Pipeline | SafeguardOptions | Mapping[str, Any],
    viz: bool,
    *,
    address: str | None = None,
    workers: int = 2,
) -> list[Outcome]:
    """Run ``jobs`` on Ray Data (a local Ray when no address is given) and write the manifest."""
    manifest = Manifest(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_partial_files(out)
    previous = manifest.load()
    pipeline = pipeline_of(options)  # validated here, before any actor starts
    settings = settings_of(pipeline, viz)  # recorded per input; a rerun redoes what differs
    outcomes: dict[str, Outcome] = {}
    todo: list[Job] = []
    for job in jobs:
        if already_done(previous.get(job.key), settings, job):
            outcomes[job.key] = Outcome(job, previous[job.key], skipped=True)
        elif job.error or job.source is None:
            outcome = process(job, out, pipeline, viz)  # refused inputs and in-memory samples
            outcome.record["settings"] = settings
            outcome.record["source"] = source_stamp(job)
            manifest.append(outcome.record)
            outcomes[job.key] = outcome
        else:
            todo.append(job)
    if todo:
        with ray_session(address):
            _run_actors(todo, out, pipeline, viz, workers, manifest, outcomes, settings)
    ordered = [outcomes[job.key] for job in jobs]
    manifest.rewrite([o.record for o in ordered])
    return ordered


def _run_actors(
    todo: list[Job],
    out: Path,
    pipeline: Pipeline,
    viz: bool,
    workers: int,
    manifest: Manifest,
    outcomes: dict[str, Outcome],
    settings: dict[str, Any],
) -> None:
    import ray

    cpus = float(ray.available_resources().get("CPU", 1.0))
    per_actor = max(0.25, min(1.0, (cpus - 0.5) / workers))
    threads = max(1, int(float(ray.cluster_resources().get("CPU", 1.0)) // workers))
    # Paths and keys only: each actor reads its files itself.
    items = [{"key": job.key, "path": os.path.abspath(str(job.source))} for job in todo]
    dataset = ray.data.from_items(items)
    results = dataset.map_batches(
        SafeguardActor,
        fn_constructor_kwargs={
            "out": str(out),
            "options": _actor_options(pipeline),
            "viz": viz,
            "threads": threads,
        },
        batch_size=1,
        concurrency=workers,
        num_cpus=per_actor,
    )
    by_key = {job.key: job for job in todo}
    stamps = {job.key: source_stamp(job) for job in todo}  # taken before the actors read them
    for row in results.iter_rows():
        record = json.loads(row["record"])
        record["settings"] = settings
        record["source"] = stamps.get(record["input"])
        manifest.append(record)
        job = by_key.get(record["input"], Job(record["input"], None, record["input"]))
        outcomes[record["input"]] = Outcome(job, record)
    for job in todo:  # an input no actor reported on still gets its line
        if job.key not in outcomes:
            outcomes[job.key] = Outcome(job, failed_record(job, f"{job.name}: not processed"))
