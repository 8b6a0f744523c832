"""Load test of ``safeview serve`` on 127.0.0.1: N concurrent clients for a bounded time.

Starts the server as a subprocess (``safeview serve --workers W``), waits until /readyz, then runs
``--clients`` threads that POST BSDS500 photographs for ``--seconds`` to one route. Reports p50/p99
latency, throughput, errors by status, and the server's peak resident memory (all its processes).

    .venv/bin/python bench/bench_service.py --route moderations --clients 4 --seconds 20
    .venv/bin/python bench/bench_service.py --route safeguard --clients 2 --seconds 30
"""

from __future__ import annotations

import argparse
import base64
import collections
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

DEFAULT_IMAGES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500" / "images" / "test"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--route", choices=["moderations", "safeguard"], default="moderations")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--guard", default="open-nsfw")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    args = parser.parse_args()

    import httpx
    import psutil

    photos = [p.read_bytes() for p in sorted(args.images.glob("*.jpg"))[:20]]
    if not photos:
        sys.exit(f"error: no images in {args.images}")
    port = free_port()
    env = {
        **os.environ,
        "SAFEVIEW_PRELOAD": args.guard,
        "SAFEVIEW_GUARD": args.guard,
        "SAFEVIEW_MAX_QUEUE": "64",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "safeview.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    peak = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            sys.exit("error: server did not become ready")
        latencies: list[float] = []
        statuses: collections.Counter[int] = collections.Counter()
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds

        def client(index: int) -> None:
            with httpx.Client(base_url=base, timeout=120) as http:
                n = index
                while time.monotonic() < stop:
                    photo = photos[n % len(photos)]
                    n += args.clients
                    start = time.perf_counter()
                    if args.route == "moderations":
                        url = "data:image/jpeg;base64," + base64.b64encode(photo).decode()
                        response = http.post(
                            "/v1/moderations",
                            json={"input": [{"type": "image_url", "image_url": {"url": url}}]},
                        )
                    else:
                        response = http.post(
                            f"/v1/safeguard?guard={args.guard}",
                            content=photo,
                            headers={"accept": "image/jpeg"},
                        )
                    elapsed = time.perf_counter() - start
                    with lock:
                        statuses[response.status_code] += 1
                        if response.status_code == 200:
                            latencies.append(elapsed)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        root = psutil.Process(server.pid)
        while any(thread.is_alive() for thread in threads):
            try:
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.1)
        wall = time.monotonic() - began
    finally:
        server.terminate()
        server.wait(timeout=30)
    ok = len(latencies)
    errors = {code: count for code, count in statuses.items() if code != 200}
    quantiles = statistics.quantiles(latencies, n=100) if ok >= 2 else [float("nan")] * 99
    print(
        "| route | guard | workers | clients | seconds | requests ok | throughput req/s | "
        "p50 s | p99 s | errors | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| /v1/{args.route} | {args.guard} | {args.workers} | {args.clients} | {wall:.1f} | {ok} "
        f"| {ok / wall:.2f} | {statistics.median(latencies) if ok else float('nan'):.3f} "
        f"| {quantiles[98]:.3f} | {errors or 'none'} | {peak / 2**20:.0f} |"
    )


if __name__ == "__main__":
    main()
