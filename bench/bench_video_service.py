"""Video through the service (issue 15): upload -> response time of one clip, against the API.

The mixed 640x360 clip of ``bench_video.py`` (10 s, 25 fps, 6 shots, the red symbol in every
other shot) with its tiny symbol guard, three ways, each run ``--runs`` times in turn after one
warm-up run of each (median reported, every run listed):

- ``api file``: ``safeguard_video(path, out.mp4)``, file to file (what the CLI does);
- ``api memory``: ``VideoPipeline(...).safeguard(bytes, BytesIO())``, memory to memory (what the
  service runs);
- ``service``: ``POST /v1/safeguard/video`` to ``safeview``'s app under uvicorn on 127.0.0.1 (a
  separate process, default settings: 2 worker slots), from the first byte sent to the JSON
  response received and its base64 clip decoded.

Both processes compute with one thread (the service gives each of its 2 slots half of the 2 cores
here: ``budget_threads``; this process is set to the same), so the difference is the service's own
cost: the upload, the probe before the work, base64 and JSON. The service's output is decoded and
every frame checked with the guard.

    nice -n 19 env OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        .venv/bin/python bench/bench_video_service.py --runs 3
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GUARD = "bench-red-symbol"


def serve(port: int) -> None:
    import uvicorn

    from safeview.guards import register_guard
    from safeview.service.app import Settings, create_app
    from symbol_guard import SymbolGuard

    register_guard(GUARD, lambda device: SymbolGuard(GUARD))
    settings = Settings(guard=GUARD, guards=(GUARD,), preload=(GUARD,), device="cpu")
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    import httpx
    import numpy as np

    from bench_video import make_clip, photographs
    from safeview.guards.base import scores
    from safeview.threads import budget_threads
    from safeview.video import VideoPipeline, safeguard_video
    from safeview.video.codec import probe_video, read_frames
    from symbol_guard import SymbolGuard

    threads = budget_threads(1)
    guard = SymbolGuard(GUARD)
    width, height = (int(v) for v in args.size.split("x"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        env={**os.environ, "SAFEVIEW_WORKERS": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-video-service-") as tmp:
            folder = Path(tmp)
            path, _present = make_clip(
                "mixed", photographs(guard, 12), (width, height), args.seconds, folder
            )
            data = path.read_bytes()
            for _ in range(600):
                try:
                    if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            outputs: list[bytes] = []

            def api_file() -> None:
                safeguard_video(path, folder / "out.mp4", guard=guard)

            def api_memory() -> None:
                VideoPipeline(guard=guard).safeguard(path.read_bytes(), io.BytesIO())

            def service() -> None:
                response = httpx.post(base + "/v1/safeguard/video", content=data, timeout=900)
                response.raise_for_status()
                outputs.append(base64.b64decode(response.json()["video"]))

            ways = {"api file": api_file, "api memory": api_memory, "service": service}
            times: dict[str, list[float]] = {name: [] for name in ways}
            for run in range(args.runs + 1):  # run 0 warms up (JIT, guards, first requests)
                for name, way in ways.items():
                    started = time.perf_counter()
                    way()
                    elapsed = time.perf_counter() - started
                    if run:
                        times[name].append(elapsed)
                    print(f"run {run} {name}: {elapsed:.2f} s", file=sys.stderr, flush=True)
            frames = [f.pixels for f in read_frames(probe_video(outputs[-1]))]
            still = int((scores(guard, frames)[:, 1] >= 0.5).sum())
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"\n{args.size}, {args.seconds:g} s clip ({len(data)} bytes, {len(frames)} frames), "
        f"{threads} compute thread per process, load {os.getloadavg()[0]:.2f}; "
        f"service output frames still flagged: {still}\n"
    )
    print("| way | median s | runs (s) | fps (median) |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {median:.2f} | {runs} | {len(frames) / median:.1f} |")
    assert still == 0 and np.isfinite(list(times.values())).all()


if __name__ == "__main__":
    main()
