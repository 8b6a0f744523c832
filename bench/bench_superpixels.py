"""Superpixel quality on the BSDS500 test set, against every human annotation.

Metrics (definitions of davidstutz/superpixel-benchmark, lib_eval/evaluation.cpp):
boundary recall (tolerance r = round(0.0025 x image diagonal)), Neubert-Protzel undersegmentation
error, achievable segmentation accuracy, compactness and explained variation; plus time per image.
Every method runs at matched mean superpixel counts (about 25, 100, 400): its count parameter is
calibrated on the first images so that the mean final count lands near the target.

    .venv/bin/python bench/bench_superpixels.py                    # 200 images, all methods
    .venv/bin/python bench/bench_superpixels.py --limit 20 --methods bass,slic --counts 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500"


def boundaries(labels: np.ndarray) -> np.ndarray:
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def boundary_recall(labels: np.ndarray, gt_boundary: np.ndarray, r: int) -> float:
    from scipy.ndimage import binary_dilation

    near = binary_dilation(boundaries(labels), structure=np.ones((2 * r + 1, 2 * r + 1), bool))
    total = gt_boundary.sum()
    return float((near & gt_boundary).sum() / total) if total else 1.0


def overlap(labels: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Contingency table |S_i intersect G_j|."""
    s = labels.ravel().astype(np.int64)
    g = gt.ravel().astype(np.int64)
    g = np.unique(g, return_inverse=True)[1]
    table = np.bincount(s * (g.max() + 1) + g, minlength=(s.max() + 1) * (g.max() + 1))
    return table.reshape(s.max() + 1, g.max() + 1)


def undersegmentation_error(table: np.ndarray) -> float:
    """Neubert-Protzel: sum over G_j and S_i touching it of min(|S_i & G_j|, |S_i - G_j|) / N."""
    sizes = table.sum(axis=1, keepdims=True)
    inside = table
    outside = sizes - table
    contribution = np.where(table > 0, np.minimum(inside, outside), 0)
    return float(contribution.sum() / table.sum())


def achievable_accuracy(table: np.ndarray) -> float:
    return float(table.max(axis=1).sum() / table.sum())


def compactness(labels: np.ndarray) -> float:
    """Sum over superpixels of |S| / N x 4 pi A / P^2 (P = number of boundary pixels)."""
    padded = np.pad(labels, 1, constant_values=-1)
    centre = padded[1:-1, 1:-1]
    on_edge = (
        (centre != padded[:-2, 1:-1])
        | (centre != padded[2:, 1:-1])
        | (centre != padded[1:-1, :-2])
        | (centre != padded[1:-1, 2:])
    )
    area = np.bincount(labels.ravel())
    perimeter = np.bincount(labels.ravel(), weights=on_edge.ravel().astype(float))
    quotient = 4 * np.pi * area / np.maximum(perimeter, 1) ** 2
    return float((area / labels.size * np.minimum(quotient, 1.0)).sum())


def explained_variation(labels: np.ndarray, image: np.ndarray) -> float:
    pixels = image.reshape(-1, 3).astype(np.float64)
    flat = labels.ravel()
    count = np.bincount(flat)
    means = np.stack([np.bincount(flat, weights=pixels[:, c]) for c in range(3)], 1)
    means /= count[:, None]
    overall = pixels.mean(axis=0)
    between = (count[:, None] * (means - overall) ** 2).sum()
    total = ((pixels - overall) ** 2).sum()
    return float(between / total) if total else 1.0


def load_ground_truth(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    from scipy.io import loadmat

    entries = loadmat(path)["groundTruth"][0]
    return [(e["Segmentation"][0][0], e["Boundaries"][0][0].astype(bool)) for e in entries]


def method(name: str) -> tuple[Callable[[np.ndarray, float], np.ndarray], float, float]:
    """(segment(image, parameter), initial parameter per target superpixel, exponent) for ``name``.

    The parameter is ``target * scale`` initially and is then calibrated.
    """
    import safeview

    if name == "slic":
        return (
            (lambda im, p: safeview.segment(im, "slic", n_segments=int(p), compactness=10.0)),
            1.0,
            1.0,
        )
    if name == "bass":
        return (lambda im, p: safeview.segment(im, "bass", n_segments=max(1, int(p)))), 1.0, 1.0
    if name == "watershed":
        return (lambda im, p: safeview.segment(im, "watershed", markers=int(p))), 1.0, 1.0
    if name == "felzenszwalb":
        # count falls as scale grows: the parameter is 1 / scale-ish
        return (
            (
                lambda im, p: safeview.segment(
                    im,
                    "felzenszwalb",
                    scale=float(50000.0 / p),
                    sigma=0.5,
                    min_size=max(10, int(im.shape[0] * im.shape[1] / p / 8)),
                )
            ),
            1.0,
            1.0,
        )
    raise ValueError(name)


def calibrate(
    run: Callable[[np.ndarray, float], np.ndarray], images: list[np.ndarray], target: int
) -> tuple[float, float]:
    parameter = float(target)
    mean_count = 0.0
    for _ in range(4):
        counts = [int(run(image, parameter).max()) + 1 for image in images]
        mean_count = statistics.fmean(counts)
        if abs(mean_count - target) / target < 0.08:
            break
        parameter *= target / mean_count
    return parameter, mean_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--methods", default="bass,slic,felzenszwalb,watershed")
    parser.add_argument("--counts", default="25,100,400")
    parser.add_argument("--calibration-images", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench/results/superpixels.json"))
    parser.add_argument("--plots", type=Path, default=Path("bench"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from --out")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(args.out.read_text()), args.plots)
        return

    from safeview.io import load_image

    paths = sorted((args.data / "images" / "test").glob("*.jpg"))[: args.limit]
    if not paths:
        sys.exit(f"error: no BSDS500 images under {args.data}")
    images = [load_image(p).pixels for p in paths]
    truths = [
        load_ground_truth(args.data / "groundTruth" / "test" / f"{p.stem}.mat") for p in paths
    ]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    targets = [int(c) for c in args.counts.split(",")]
    rows: list[dict[str, Any]] = []
    for name in methods:
        run, _, _ = method(name)
        run(images[0], 50)  # warm-up (numba compilation for bass)
        for target in targets:
            parameter, _ = calibrate(run, images[: args.calibration_images], target)
            metrics: dict[str, list[float]] = {
                k: [] for k in ("br", "ue", "asa", "co", "ev", "time", "count")
            }
            for index, (image, truth) in enumerate(zip(images, truths, strict=True)):
                start = time.perf_counter()
                labels = run(image, parameter)
                metrics["time"].append(time.perf_counter() - start)
                r = round(0.0025 * float(np.hypot(*image.shape[:2])))
                br, ue, asa = [], [], []
                for segmentation, boundary in truth:
                    table = overlap(labels, segmentation)
                    br.append(boundary_recall(labels, boundary, r))
                    ue.append(undersegmentation_error(table))
                    asa.append(achievable_accuracy(table))
                metrics["br"].append(statistics.fmean(br))
                metrics["ue"].append(statistics.fmean(ue))
                metrics["asa"].append(statistics.fmean(asa))
                metrics["co"].append(compactness(labels))
                metrics["ev"].append(explained_variation(labels, image))
                metrics["count"].append(int(labels.max()) + 1)
                print(
                    f"\r{name} ~{target}: {index + 1}/{len(images)}",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            print(file=sys.stderr)
            row = {"method": name, "target": target, "parameter": parameter}
            for key, values in metrics.items():
                row[key] = statistics.fmean(values)
            row["median_time"] = statistics.median(metrics["time"])
            rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(
        f"BSDS500 test, {len(images)} images, means over images (each averaged over its "
        "annotations)\n"
    )
    print(
        "| method | target | mean count | boundary recall | undersegmentation error | ASA | "
        "compactness | explained variation | median s/image |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['method']} | {row['target']} | {row['count']:.1f} | {row['br']:.4f} | "
            f"{row['ue']:.4f} | {row['asa']:.4f} | {row['co']:.4f} | {row['ev']:.4f} | "
            f"{row['median_time']:.3f} |"
        )
    plot(rows, args.plots)


def plot(rows: list[dict[str, Any]], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {
        "br": "boundary recall",
        "ue": "undersegmentation error (NP)",
        "asa": "achievable segmentation accuracy",
        "co": "compactness",
        "ev": "explained variation",
        "median_time": "median seconds per image",
    }
    figure, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for axis, (key, title) in zip(axes.ravel(), names.items(), strict=True):
        for name in dict.fromkeys(r["method"] for r in rows):
            points = sorted((r["count"], r[key]) for r in rows if r["method"] == name)
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        axis.set_xscale("log")
        axis.set_xticks([25, 100, 400], labels=["25", "100", "400"])
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("mean number of superpixels")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0, 0].legend()
    figure.suptitle("Superpixels on the BSDS500 test set (200 images)")
    figure.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    figure.savefig(folder / "superpixels.png", dpi=90)


if __name__ == "__main__":
    main()
