"""Counterfactual benchmark: the ImageNet guard on the BSDS500 test photographs.

For each configuration (attribution x segmenter) and each image: the guard's top-1 class is the
target, the decision flips when it is no longer top-1 (verified on the encoded full-size output).
Reports success at <= max_regions regions, mean depth (successes), mean obfuscated fraction after
and before pruning, and the median time of each stage and end to end; over all images and over the
confident subset (top-1 probability >= 0.5).

    .venv/bin/python bench/bench_counterfactual.py                 # all 200 images, default configs
    .venv/bin/python bench/bench_counterfactual.py --limit 20 --configs fullgrad:slic
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500"
DEFAULT_CONFIGS = [
    "fullgrad:slic",
    "fullgrad:felzenszwalb",
    "fullgrad:watershed",
    "gradcam:slic",
    "fullgrad:slic[compactness=10]",
    "fullgrad:bass",
    "fullgrad:bass-guided",
]
STAGES = ("decode", "classify", "attribution", "segmentation", "search", "render", "rescore")


def parse_config(config: str) -> tuple[str, str, dict[str, float]]:
    """``attribution:segmenter[key=value;key=value]`` -> (attribution, segmenter, options)."""
    attribution, _, rest = config.partition(":")
    segmenter, _, tail = rest.partition("[")
    options = {}
    for item in filter(None, tail.rstrip("]").split(";")):
        key, _, value = item.partition("=")
        options[key] = float(value) if "." in value else int(value)
    return attribution, segmenter, options


def run(images: list[Path], configs: list[str], device: str, batch_size: int) -> list[dict]:
    import safeview
    from safeview.guards import load_guard

    guard = load_guard("imagenet", device)
    safeview.safeguard(images[0], guard=guard, segmenter="slic")  # warm-up: first-call costs
    records = []
    for config in configs:
        attribution, segmenter, options = parse_config(config)
        for index, path in enumerate(images):
            start = time.perf_counter()
            report = safeview.safeguard(
                path,
                guard=guard,
                attribution=attribution,
                segmenter=segmenter,
                segmenter_options=options,
                batch_size=batch_size,
            )
            elapsed = time.perf_counter() - start
            records.append(
                {
                    "config": config,
                    "image": path.name,
                    "p_top1": report.scores_before[report.guard.target],
                    "success": report.success,
                    "search_flipped": report.search_flipped,
                    "depth": report.depth,
                    "n_regions": report.n_regions,
                    "obfuscated_fraction": report.obfuscated_fraction,
                    "obfuscated_fraction_unpruned": report.obfuscated_fraction_unpruned,
                    "timings": report.timings,
                    "end_to_end": elapsed,
                }
            )
            print(f"\r{config} {index + 1}/{len(images)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    return records


def summarise(records: list[dict], configs: list[str], confident_only: bool) -> list[dict]:
    rows = []
    for config in configs:
        chosen = [r for r in records if r["config"] == config]
        if confident_only:
            chosen = [r for r in chosen if r["p_top1"] >= 0.5]
        if not chosen:
            continue
        wins = [r for r in chosen if r["success"]]
        row = {
            "config": config,
            "images": len(chosen),
            "success": len(wins) / len(chosen),
            "mean_depth": statistics.fmean(r["depth"] for r in wins) if wins else float("nan"),
            "mean_regions": statistics.fmean(r["n_regions"] for r in chosen),
            "obfuscated": statistics.fmean(r["obfuscated_fraction"] for r in wins)
            if wins
            else float("nan"),
            "obfuscated_unpruned": statistics.fmean(r["obfuscated_fraction_unpruned"] for r in wins)
            if wins
            else float("nan"),
            "median_end_to_end": statistics.median(r["end_to_end"] for r in chosen),
        }
        for stage in STAGES:
            row[f"median_{stage}"] = statistics.median(r["timings"].get(stage, 0.0) for r in chosen)
        rows.append(row)
    return rows


def markdown(rows: list[dict], title: str) -> str:
    lines = [
        f"**{title}**",
        "",
        "| attribution:segmenter | images | success | mean depth | mean regions | obfuscated "
        "(pruned) | obfuscated (unpruned) | attribution s | segmentation s | search s | "
        "render+rescore s | end to end s (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['images']} | {100 * r['success']:.1f}% | {r['mean_depth']:.2f} "
            f"| {r['mean_regions']:.1f} | {100 * r['obfuscated']:.1f}% "
            f"| {100 * r['obfuscated_unpruned']:.1f}% | {r['median_attribution']:.3f} "
            f"| {r['median_segmentation']:.3f} | {r['median_search']:.3f} "
            f"| {r['median_render'] + r['median_rescore']:.3f} | {r['median_end_to_end']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help="comma-separated attribution:segmenter pairs",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench/results/counterfactual.json"))
    args = parser.parse_args()

    folder = args.data / "images" / "test"
    images = sorted(folder.glob("*.jpg"))[: args.limit]
    if not images:
        sys.exit(f"error: no BSDS500 test images in {folder}")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    records = run(images, configs, args.device, args.batch_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=1))
    everything = summarise(records, configs, confident_only=False)
    confident = summarise(records, configs, confident_only=True)
    print(markdown(everything, f"All {len(images)} BSDS500 test images"))
    print()
    print(markdown(confident, "Confident subset (top-1 probability >= 0.5)"))
    print(f"\nnumpy {np.__version__}; per-image records in {args.out}")


if __name__ == "__main__":
    main()
