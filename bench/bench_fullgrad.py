"""Our FullGrad against the ``grad-cam`` package's FullGrad: time per image and agreement.

Both run on the same guard module, the same preprocessed 224x224 input and the same target (the
guard's top-1 class), one image at a time, side by side in one process; times are medians.

    .venv/bin/python bench/bench_fullgrad.py --limit 10 --guard imagenet
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--guard", default="imagenet")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from pytorch_grad_cam import FullGrad as PackageFullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from safeview.attribution.fullgrad import FullGrad
    from safeview.guards import load_guard, scores
    from safeview.io import load_image

    images = sorted((args.data / "images" / "test").glob("*.jpg"))[: args.limit]
    if not images:
        sys.exit(f"error: no images under {args.data}")
    guard = load_guard(args.guard, args.device)
    ours = FullGrad(guard.module)
    ours_times, theirs_times, agreement = [], [], []
    for path in images:
        pixels = load_image(path).pixels
        target = int(np.argmax(scores(guard, [pixels])[0]))
        x = guard.preprocess([pixels])
        start = time.perf_counter()
        a = ours.attribute(x, target)[0]
        ours_times.append(time.perf_counter() - start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            with PackageFullGrad(model=guard.module, target_layers=[]) as cam:
                b = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
            theirs_times.append(time.perf_counter() - start)
        agreement.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
        print(f"\r{path.name}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    ours_s = statistics.median(ours_times)
    theirs_s = statistics.median(theirs_times)
    print(
        "| guard | images | ours s (median) | grad-cam s (median) | speed-up "
        "| Pearson r min / median |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.guard} | {len(images)} | {ours_s:.3f} | {theirs_s:.3f} | "
        f"{theirs_s / ours_s:.1f}x | {min(agreement):.4f} / {statistics.median(agreement):.4f} |"
    )


if __name__ == "__main__":
    main()
