"""Search benchmark (issue "Minimal by default"): search x segmenter x style x flip rule.

The ImageNet guard (EfficientNet-Lite0) on the BSDS500 test photographs. Two flip rules:

- ``top1``: the decision is "the top-1 class"; it flips when that class is no longer top-1;
- ``target``: the decision is "p(top-1 class) >= 0.5" (a threshold guard on that class); only the
  images where the top-1 probability is >= 0.5 (the confident subset) are flagged under it.

Every success is verified on the encoded full-resolution output and counts only without a fallback;
"expected" is the mean obfuscated fraction counting a fallback (the whole image blurred) as 100%.
Forward passes are the images the guard scored per input (classify + attribution + search +
verification). The oracle is the minimum-area flipping subset of the top-k regions of the same
segmentation (exhaustive, on a subsample).

    .venv/bin/python bench/bench_search.py                       # everything (about 40 minutes)
    .venv/bin/python bench/bench_search.py --limit 20 --configs coarse-to-fine/bass-guided/blur
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500"
DEFAULT_CONFIGS = [
    "coarse-to-fine/bass-guided/blur",
    "coarse-to-fine/bass-guided/fill",
    "greedy/bass-guided/blur",
    "greedy/bass-guided/fill",
    "greedy/slic/blur",
    "coarse-to-fine/slic/blur",
    "powerset/bass-guided/blur",
]


class TargetGuard:
    """A guard's module seen as a threshold guard on one class (the ``target`` flip rule)."""

    decision = "threshold"

    def __init__(self, guard: Any, target: int) -> None:
        self._guard = guard
        self.name, self.version = guard.name, guard.version
        self.categories, self.input_size = guard.categories, guard.input_size
        self.module, self.device = guard.module, guard.device
        self.unsafe_category = guard.categories[target]

    def preprocess(self, images: Any) -> Any:
        return self._guard.preprocess(images)

    def probabilities(self, logits: Any) -> Any:
        return self._guard.probabilities(logits)


def run_one(path: Path, guard: Any, search: str, segmenter: str, style: str, **extra: Any) -> dict:
    import safeview

    start = time.perf_counter()
    report = safeview.safeguard(
        path, guard=guard, search=search, segmenter=segmenter, style=style, **extra
    )
    elapsed = time.perf_counter() - start
    ok = report.success and report.fallback is None
    return {
        "flagged": report.flagged,
        "success": ok,
        "fallback": report.fallback,
        "depth": report.depth,
        "n_regions": report.n_regions,
        "obfuscated": report.obfuscated_fraction if ok else 1.0,
        "passes": report.forward_passes.get("total", 0),
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument(
        "--configs", default=",".join(DEFAULT_CONFIGS), help="search/segmenter/style,..."
    )
    parser.add_argument("--rules", default="top1,target")
    parser.add_argument(
        "--powerset-every", type=int, default=4, help="powerset on every N-th image"
    )
    parser.add_argument("--oracle-every", type=int, default=20, help="oracle on every N-th image")
    parser.add_argument("--oracle-k", type=int, default=12)
    parser.add_argument(
        "--segmenter-options",
        type=json.loads,
        default={},
        help="JSON options for every segmenter, e.g. '{\"n_segments\": 40}'",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/search.json"))
    parser.add_argument(
        "--device", default="cpu", help="the guard's device: cpu (the tables), cuda, or auto"
    )
    args = parser.parse_args()

    import numpy as np

    import safeview
    from safeview.guards import load_guard

    images = sorted((args.data / "images" / "test").glob("*.jpg"))[: args.limit]
    if not images:
        sys.exit(f"error: no BSDS500 test images in {args.data}")
    guard = load_guard("imagenet", None if args.device == "auto" else args.device)
    print(f"guard device: {guard.device}", file=sys.stderr)
    safeview.safeguard(images[0], guard=guard)  # warm-up
    top1 = {}
    for path in images:
        probs = safeview.classify(path, guard=guard).scores_before
        target = max(probs, key=lambda k: probs[k])
        top1[path.name] = (guard.categories.index(target), probs[target])
    configs = [c.split("/") for c in args.configs.split(",") if c]
    rules = args.rules.split(",")
    records: list[dict] = []
    for search, segmenter, style in configs:
        for rule in rules:
            chosen = images
            if search == "powerset":
                chosen = images[:: args.powerset_every]
            if rule == "target":
                chosen = [p for p in chosen if top1[p.name][1] >= 0.5]
            for index, path in enumerate(chosen):
                g = guard if rule == "top1" else TargetGuard(guard, top1[path.name][0])
                record = run_one(
                    path, g, search, segmenter, style, segmenter_options=args.segmenter_options
                )
                record.update(
                    config=f"{search}/{segmenter}/{style}",
                    rule=rule,
                    image=path.name,
                    p_top1=top1[path.name][1],
                )
                records.append(record)
                print(
                    f"\r{search}/{segmenter}/{style} {rule} {index + 1}/{len(chosen)}",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            print(file=sys.stderr)
    # Oracle: minimum-area flipping subset of the top-k regions (exhaustive), on a subsample.
    oracle = []
    for path in images[:: args.oracle_every]:
        for rule in rules:
            if rule == "target" and top1[path.name][1] < 0.5:
                continue
            g = guard if rule == "top1" else TargetGuard(guard, top1[path.name][0])
            record = run_one(
                path,
                g,
                "powerset",
                "bass-guided",
                "blur",
                max_regions=args.oracle_k,
                search_options={"batch_size": 64},
                segmenter_options=args.segmenter_options,
            )
            default = run_one(
                path,
                g,
                "coarse-to-fine",
                "bass-guided",
                "blur",
                segmenter_options=args.segmenter_options,
            )
            oracle.append({"image": path.name, "rule": rule, "oracle": record, "default": default})
            print(f"\roracle {len(oracle)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"records": records, "oracle": oracle}, indent=1))
    print(table(records))
    print()
    print(oracle_table(oracle))
    print(f"\nnumpy {np.__version__}; per-image records in {args.out}")


def _summary(rows: list[dict]) -> dict:
    flagged = [r for r in rows if r["flagged"]]
    wins = [r for r in flagged if r["success"]]
    return {
        "images": len(flagged),
        "success": len(wins) / max(len(flagged), 1),
        "depth": statistics.fmean(r["depth"] for r in wins) if wins else float("nan"),
        "regions": statistics.fmean(r["n_regions"] for r in flagged) if flagged else float("nan"),
        "obfuscated": statistics.fmean(r["obfuscated"] for r in wins) if wins else float("nan"),
        "expected": statistics.fmean(r["obfuscated"] for r in flagged) if flagged else float("nan"),
        "passes_median": statistics.median(r["passes"] for r in flagged) if flagged else 0,
        "passes_max": max((r["passes"] for r in flagged), default=0),
        "seconds_median": statistics.median(r["seconds"] for r in flagged) if flagged else 0,
        "seconds_max": max((r["seconds"] for r in flagged), default=0),
    }


def table(records: list[dict]) -> str:
    lines = [
        "| search/segmenter/style | rule | subset | images | success | mean depth | regions | "
        "obfuscated (successes) | expected (fallback = 100%) | forward passes median / max | "
        "seconds median / max |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["config"], r["rule"]) for r in records}, key=lambda k: (k[1], k[0]))
    for config, rule in keys:
        rows = [r for r in records if r["config"] == config and r["rule"] == rule]
        subsets = [("all", rows)]
        if rule == "top1":
            subsets.append(("confident", [r for r in rows if r["p_top1"] >= 0.5]))
        for name, chosen in subsets:
            s = _summary(chosen)
            lines.append(
                f"| {config} | {rule} | {name} | {s['images']} | {100 * s['success']:.1f}% "
                f"| {s['depth']:.2f} | {s['regions']:.1f} | {100 * s['obfuscated']:.1f}% "
                f"| {100 * s['expected']:.1f}% | {s['passes_median']:.0f} / {s['passes_max']} "
                f"| {s['seconds_median']:.2f} / {s['seconds_max']:.2f} |"
            )
    return "\n".join(lines)


def oracle_table(oracle: list[dict]) -> str:
    lines = [
        "| rule | images | oracle flipped | default flipped | oracle obfuscated | default "
        "obfuscated | default / oracle (mean area, both flipped) | oracle passes median / max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rule in sorted({o["rule"] for o in oracle}):
        rows = [o for o in oracle if o["rule"] == rule and o["oracle"]["flagged"]]
        both = [o for o in rows if o["oracle"]["success"] and o["default"]["success"]]
        mean_o = statistics.fmean(o["oracle"]["obfuscated"] for o in both) if both else float("nan")
        mean_d = (
            statistics.fmean(o["default"]["obfuscated"] for o in both) if both else float("nan")
        )
        passes = [o["oracle"]["passes"] for o in rows] or [0]
        lines.append(
            f"| {rule} | {len(rows)} | {sum(o['oracle']['success'] for o in rows)} "
            f"| {sum(o['default']['success'] for o in rows)} | {100 * mean_o:.1f}% "
            f"| {100 * mean_d:.1f}% | {mean_d / mean_o:.2f}x | {statistics.median(passes):.0f} / "
            f"{max(passes)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
