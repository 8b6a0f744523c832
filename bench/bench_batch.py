"""Batch throughput: ``safeview safeguard DIR`` with the local engine and with Ray (1 and 2 actors).

Each configuration runs the real command as a subprocess on a fresh output folder, on the first
``--limit`` BSDS500 test photographs, with the ImageNet guard (every photo is flagged, so every
stage runs). Images per second = images / wall time of the whole command, start-up included (Ray's
start and each actor's model loading are part of the cost a user pays).

    .venv/bin/python bench/bench_batch.py --limit 40
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_IMAGES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500" / "images" / "test"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--guard", default="imagenet")
    args = parser.parse_args()

    photos = sorted(args.images.glob("*.jpg"))[: args.limit]
    if not photos:
        sys.exit(f"error: no images in {args.images}")
    configs = [
        ("local", []),
        ("ray, 1 actor", ["--engine", "ray", "--workers", "1"]),
        ("ray, 2 actors", ["--engine", "ray", "--workers", "2"]),
    ]
    print(f"{len(photos)} BSDS500 photographs, guard {args.guard}, start-up included\n")
    print("| engine | wall s | images/s | exit |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "in"
        source.mkdir()
        for photo in photos:
            shutil.copy(photo, source / photo.name)
        for label, extra in configs:
            out = Path(scratch) / "out"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "safeview.cli",
                    "safeguard",
                    str(source),
                    "--guard",
                    args.guard,
                    "-o",
                    str(out),
                    *extra,
                ],
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - start
            print(
                f"| {label} | {wall:.1f} | {len(photos) / wall:.2f} | {result.returncode} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
