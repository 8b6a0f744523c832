"""Concurrency: ``safeview safeguard DIR`` in one local process against Ray with 1 and 2 actors.

Each configuration runs the real command as a user would, as a subprocess on a fresh output folder,
on the first ``--limit`` BSDS500 test photographs with the ImageNet guard (every photo is flagged,
so every stage runs). Images per second = images / wall time of the whole command, start-up
included. Per-image latency = each report's ``timings.total`` (the pipeline's time for that image
inside its process or actor), p50 and p99. Ray actors run with a thread budget of
``cores // actors`` threads each (``safeview.threads.budget_threads``).

    .venv/bin/python bench/bench_concurrency.py --limit 16
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500"


def _latencies(out: Path) -> list[float]:
    times = []
    for line in (out / "manifest.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("report"):
            report = json.loads(Path(record["report"]).read_text())
            times.append(float(report["timings"]["total"]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--guard", default="imagenet")
    args = parser.parse_args()

    photos = sorted((args.data / "images" / "test").glob("*.jpg"))[: args.limit]
    if not photos:
        sys.exit(f"error: no images in {args.data / 'images' / 'test'}")
    configs = [
        ("local, 1 process", []),
        ("ray, 1 actor", ["--engine", "ray", "--workers", "1"]),
        ("ray, 2 actors", ["--engine", "ray", "--workers", "2"]),
    ]
    print(f"{len(photos)} BSDS500 photographs, guard {args.guard}\n")
    print("| engine | images ok | wall s | images/s | p50 s/image | p99 s/image | exit |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for label, extra in configs:
            out = Path(scratch) / "out"
            shutil.rmtree(out, ignore_errors=True)
            command = [sys.executable, "-m", "safeview.cli", "safeguard", *map(str, photos)]
            command += ["--guard", args.guard, "-o", str(out), *extra]
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - start
            times = _latencies(out) if (out / "manifest.jsonl").exists() else []
            p50, p99 = np.percentile(times, [50, 99]) if times else (float("nan"),) * 2
            print(
                f"| {label} | {len(times)} | {wall:.1f} | {len(photos) / wall:.2f} "
                f"| {p50:.3f} | {p99:.3f} | {result.returncode} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
