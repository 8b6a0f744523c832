"""The default search's time, the code before a change against after it, side by side.

Two persistent worker processes, one importing safeview from ``--before`` (another checkout's
``src``) and one from this checkout's, take turns image by image (which goes first alternates),
so both see the same machine load. Each image is safeguarded with the default options under the
``top1`` and ``target`` flip rules of ``bench_search.py``; the medians, maxima and obfuscated
fractions of both are printed side by side. With ``--repeat N`` each image is timed N times on
each side (the turns still alternate) and its median is taken, so that one slow moment of a
shared machine is not read as a slow image.

    git worktree add ../wt-before <commit>
    .venv/bin/python bench/bench_search_compare.py --before ../wt-before/src --every 2 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def worker() -> None:
    """Reads ``RULE IMAGE TARGET`` lines, answers one JSON line per image."""
    sys.path.insert(0, str(HERE))
    import numpy as np

    import safeview
    from bench_search import TargetGuard
    from safeview.guards import load_guard

    guard = load_guard("imagenet", "cpu")
    # Warm-up, out of the timings (the first scoring builds the guard's onnxruntime copy).
    safeview.classify(np.full((224, 224, 3), 128, np.uint8), guard=guard)
    print("ready", flush=True)
    for line in sys.stdin:
        rule, path, target = line.split()
        judge = guard if rule == "top1" else TargetGuard(guard, int(target))
        start = time.perf_counter()
        report = safeview.safeguard(path, guard=judge)
        seconds = time.perf_counter() - start
        ok = report.success and report.fallback is None
        record = {
            "seconds": seconds,
            "obfuscated": report.obfuscated_fraction if ok else 1.0,
            "success": ok,
            "passes": report.forward_passes.get("total", 0),
        }
        print(json.dumps(record), flush=True)


def main() -> None:
    sys.path.insert(0, str(HERE))
    from bench_search import DEFAULT_DATA

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout's src")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--every", type=int, default=1, help="every N-th (rule, image) job")
    parser.add_argument(
        "--repeat", type=int, default=1, help="time each image N times a side (the median)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeat < 1:
        sys.exit(f"error: --repeat must be >= 1, got {args.repeat}")
    if args.worker:
        worker()
        return
    if not (args.before / "safeview").is_dir():
        sys.exit(f"error: --before: no safeview package in {args.before}")
    import safeview
    from safeview.guards import load_guard

    images = sorted((args.data / "images" / "test").glob("*.jpg"))
    if not images:
        sys.exit(f"error: no BSDS500 test images in {args.data}")
    guard = load_guard("imagenet", "cpu")
    jobs = []
    for path in images:
        scores = safeview.classify(path, guard=guard).scores_before
        top = max(scores, key=lambda name: scores[name])
        target = guard.categories.index(top)
        jobs.append(("top1", path, target))
        if scores[top] >= 0.5:
            jobs.append(("target", path, target))
    jobs = jobs[:: args.every]

    def start(src: Path) -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONPATH=str(src.resolve()))
        process = subprocess.Popen(
            [sys.executable, __file__, "--before", str(args.before), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        return process

    workers = {"before": start(args.before), "after": start(SRC)}
    for process in workers.values():  # a first search, untimed: numba compiles the segmenter
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(f"{jobs[0][0]} {jobs[0][1]} {jobs[0][2]}\n")
        process.stdin.flush()
        process.stdout.readline()
    results: dict[str, list[dict]] = {"before": [], "after": []}
    for index, (rule, path, target) in enumerate(jobs):
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for repeat in range(args.repeat):
            first = (index * args.repeat + repeat) % 2 == 0
            for name in ("before", "after") if first else ("after", "before"):
                process = workers[name]
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write(f"{rule} {path} {target}\n")
                process.stdin.flush()
                runs[name].append(json.loads(process.stdout.readline()))
        for name, records in runs.items():
            seconds = statistics.median(r["seconds"] for r in records)
            results[name].append({"rule": rule, **records[0], "seconds": seconds})
        print(f"\r{index + 1}/{len(jobs)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(
        "| rule | code | images | seconds median | max | images over 2 s | obfuscated "
        "| forward passes median / max |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for rule in ("top1", "target"):
        for name in ("before", "after"):
            rows = [r for r in results[name] if r["rule"] == rule]
            if rows:
                seconds = [r["seconds"] for r in rows]
                passes = [r["passes"] for r in rows]
                print(
                    f"| {rule} | {name} | {len(rows)} | {statistics.median(seconds):.3f} "
                    f"| {max(seconds):.2f} | {sum(s > 2 for s in seconds)} "
                    f"| {100 * statistics.fmean(r['obfuscated'] for r in rows):.1f}% "
                    f"| {statistics.median(passes):.0f} / {max(passes)} |"
                )


if __name__ == "__main__":
    main()
