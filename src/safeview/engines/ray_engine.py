"""``--engine ray``: the batch job on Ray Data.

Files are read as bytes by Ray (``read_binary_files``) so that our own safe decoder runs inside the
workers: a bad file becomes a failed manifest line, not a crashed job. ``map_batches`` runs an actor
pool whose actors load the models once each; actors ask for fractional CPUs so that read tasks are
never starved (a pool of whole-CPU actors on a 2-CPU machine hangs). Workers write the outputs
straight into the output folder (on a cluster it must be shared storage); the driver writes the
manifest. Resuming works as for the local engine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from safeview.batch import (
    Job,
    Manifest,
    Outcome,
    already_done,
    failed_record,
    process,
    remove_partial_files,
)


class SafeguardActor:
    """A Ray actor: models load once in ``__init__``; ``__call__`` safeguards a batch of files."""

    def __init__(
        self, out: str, options: dict[str, Any], viz: bool, keys: dict[str, str], threads: int
    ) -> None:
        import torch

        from safeview.guards import load_guard

        torch.set_num_threads(threads)
        self.out = Path(out)
        self.options = dict(options)
        self.viz = viz
        self.keys = keys
        self.options["guard"] = load_guard(options["guard"], options.get("device"))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import json

        lines = []
        for data, path in zip(batch["bytes"], batch["path"], strict=True):
            key = self.keys.get(str(path)) or self.keys.get(os.path.abspath(str(path)), str(path))
            job = Job(key, Path(str(path)), str(path))
            try:
                record = process(job, self.out, self.options, self.viz, data=bytes(data)).record
            except Exception as exc:  # a worker must report, never crash the job
                record = failed_record(job, f"{job.name}: {type(exc).__name__}: {exc}")
            lines.append(json.dumps(record))
        return {"record": np.asarray(lines, dtype=object)}


def run_ray(
    jobs: list[Job],
    out: Path,
    options: dict[str, Any],
    viz: bool,
    *,
    address: str | None = None,
    workers: int = 2,
) -> list[Outcome]:
    """Run ``jobs`` on Ray Data (a local Ray when ``address`` is None) and write the manifest."""
    import json

    import ray

    manifest = Manifest(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_partial_files(out)
    previous = manifest.load()
    outcomes: dict[str, Outcome] = {}
    todo: list[Job] = []
    for job in jobs:
        if already_done(previous.get(job.key)):
            outcomes[job.key] = Outcome(job, previous[job.key], skipped=True)
        elif job.error or job.source is None:
            outcome = process(job, out, options, viz)  # refused inputs and in-memory samples
            manifest.append(outcome.record)
            outcomes[job.key] = outcome
        else:
            todo.append(job)
    if todo:
        if not ray.is_initialized():
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
        keys = {os.path.abspath(str(job.source)): job.key for job in todo}
        cpus = float(ray.available_resources().get("CPU", 1.0))
        per_actor = max(0.25, min(1.0, (cpus - 0.5) / workers))
        dataset = ray.data.read_binary_files(
            [str(job.source) for job in todo],
            include_paths=True,
            ray_remote_args={"num_cpus": 0.25},
        )
        results = dataset.map_batches(
            SafeguardActor,
            fn_constructor_kwargs={
                "out": str(out),
                "options": options,
                "viz": viz,
                "keys": keys,
                "threads": max(1, int(per_actor)),
            },
            batch_size=1,
            concurrency=workers,
            num_cpus=per_actor,
        )
        by_key = {job.key: job for job in todo}
        for row in results.iter_rows():
            record = json.loads(row["record"])
            manifest.append(record)
            job = by_key.get(record["input"], Job(record["input"], None, record["input"]))
            outcomes[record["input"]] = Outcome(job, record)
        for job in todo:  # a file Ray could not even read still gets its line
            if job.key not in outcomes:
                outcomes[job.key] = Outcome(job, failed_record(job, f"{job.name}: not read"))
    ordered = [outcomes[job.key] for job in jobs]
    manifest.rewrite([o.record for o in ordered])
    return ordered
