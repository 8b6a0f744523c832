"""Joint counterfactual benchmark (issue "Real guards ... one safeguarding pass"): images that
two guards of a policy flag at once.

Category A is a real guard: ``weapons`` (the EfficientNet-Lite0 weapon classes; the photographs
it flags at p >= 0.5) or ``imagenet`` (a threshold judge on each confident BSDS500 photograph's
top-1 class, p >= 0.5). Category B is synthetic: a saturated red square (20% of the shorter
side, in a corner) pasted on the photograph, and a tiny guard that fires when more than 1.5% of
the image is that red. A photograph B flags before the paste, or A no longer flags after it, is
skipped. Three runs per image, each at the library's defaults, verified on the encoded output:
A alone, B alone, and the policy {A, B} (the joint search). Reported: success, obfuscated area,
the joint area against the union of the two single-guard masks, forward passes and time.

    .venv/bin/python bench/bench_policy.py --guard-a weapons
    .venv/bin/python bench/bench_policy.py --guard-a imagenet --limit 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from safeview.guards import register_guard
from symbol_guard import SymbolGuard

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500"


def photographs(limit: int | None) -> list[tuple[str, np.ndarray]]:
    """BSDS500 test photographs, foolbox's 20 ImageNet photographs (when installed) and
    scikit-image's colour photographs, as (name, RGB)."""
    from PIL import Image

    found = []
    for path in sorted((DATA / "images" / "test").glob("*.jpg")):
        found.append((f"bsds500/{path.name}", np.asarray(Image.open(path).convert("RGB"))))
    try:
        import importlib.util

        spec = importlib.util.find_spec("foolbox")
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations))) / "data"
            for path in sorted(folder.glob("imagenet_*.jpg")):
                found.append((f"foolbox/{path.name}", np.asarray(Image.open(path).convert("RGB"))))
    except (ImportError, ValueError):
        pass
    import skimage.data

    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        found.append((f"skimage/{name}", getattr(skimage.data, name)()))
    return found[:limit] if limit else found


def paste_symbol(image: np.ndarray, corner: int) -> np.ndarray:
    """A red square, 20% of the shorter side, 5% in from one of the four corners."""
    out = image.copy()
    height, width = image.shape[:2]
    side, inset = int(0.2 * min(height, width)), int(0.05 * min(height, width))
    row = inset if corner in (0, 1) else height - inset - side
    col = inset if corner in (0, 2) else width - inset - side
    out[row : row + side, col : col + side] = (230, 20, 20)
    return out


def write_policy(folder: Path, guard: str, category: str) -> str:
    data = json.loads(
        resources.files("safeview.rationale").joinpath("policy.json").read_text("utf-8")
    )
    for entry in data["categories"].values():
        entry["guards"] = []
    data["categories"]["weapons"]["guards"] = [{"guard": guard, "category": category}]
    data["categories"]["cyberbullying"]["guards"] = [
        {"guard": "bench-symbol", "category": "symbol"}
    ]
    path = folder / f"policy-{guard}-{abs(hash(category))}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def run(image: np.ndarray, **options: Any) -> dict[str, Any]:
    from safeview.pipeline import Pipeline

    start = time.perf_counter()
    report = Pipeline(**options).safeguard(image)
    seconds = time.perf_counter() - start
    return {
        "flagged": report.flagged,
        "success": report.success and report.fallback is None,
        "area": report.obfuscated_fraction,
        "passes": report.forward_passes.get("total", 0),
        "seconds": seconds,
        "mask": report.mask,
        "categories": {c.id: (c.flagged, c.flagged_after) for c in report.categories if c.covered},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guard-a", default="weapons", choices=["weapons", "imagenet"])
    parser.add_argument("--limit", type=int, default=None, help="images considered")
    parser.add_argument("--out", type=Path, default=None, help="JSON of every record")
    args = parser.parse_args()

    from safeview.guards import load_guard, scores

    register_guard("bench-symbol", lambda device: SymbolGuard())
    guard_a, symbol = load_guard(args.guard_a), load_guard("bench-symbol")
    records, skipped = [], {"A not flagged": 0, "B flags the photograph": 0, "A lost": 0}
    folder = Path(tempfile.mkdtemp(prefix="safeview-bench-policy-"))
    images = photographs(args.limit)
    for index, (name, image) in enumerate(images):
        probs = scores(guard_a, [image])[0]
        if args.guard_a == "weapons":
            target = guard_a.categories.index("weapon")
        else:
            target = int(np.argmax(probs))
        if probs[target] < 0.5:
            skipped["A not flagged"] += 1
            continue
        if scores(symbol, [image])[0][1] >= 0.5:
            skipped["B flags the photograph"] += 1
            continue
        pasted = paste_symbol(image, index % 4)
        if scores(guard_a, [pasted])[0][target] < 0.5:
            skipped["A lost"] += 1
            continue
        category = guard_a.categories[target]
        policy_a = write_policy(folder, args.guard_a, category)
        a_only = json.loads(Path(policy_a).read_text("utf-8"))
        a_only["categories"]["cyberbullying"]["guards"] = []
        path_a = folder / "a-only.json"
        path_a.write_text(json.dumps(a_only), encoding="utf-8")
        single_a = run(pasted, policy=str(path_a))
        single_b = run(pasted, guard="bench-symbol")
        joint = run(pasted, policy=policy_a)
        union = None
        if single_a["mask"] is not None and single_b["mask"] is not None:
            union = float((single_a["mask"] | single_b["mask"]).mean())
        records.append(
            {
                "image": name,
                "category_a": category,
                "a": {k: v for k, v in single_a.items() if k != "mask"},
                "b": {k: v for k, v in single_b.items() if k != "mask"},
                "joint": {k: v for k, v in joint.items() if k != "mask"},
                "union": union,
            }
        )
        print(
            f"\r{index + 1}/{len(images)} kept {len(records)}", end="", file=sys.stderr, flush=True
        )
    print(file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(records, indent=1), encoding="utf-8")
    print(table(records, skipped, args.guard_a))


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(records: list[dict], skipped: dict[str, int], guard_a: str) -> str:
    lines = [
        f"guard A: {guard_a}; images flagged by both after the paste: {len(records)}; "
        f"skipped: {', '.join(f'{k} {v}' for k, v in skipped.items())}",
        "",
        "| run | success | mean obfuscated (successes) | forward passes median / max "
        "| seconds median / max |",
        "|---|---|---|---|---|",
    ]
    for key, label in (
        ("a", f"A alone ({guard_a})"),
        ("b", "B alone (symbol)"),
        ("joint", "joint policy {A, B}"),
    ):
        rows = [r[key] for r in records]
        wins = [r for r in rows if r["success"]]
        passes = [r["passes"] for r in rows]
        seconds = [r["seconds"] for r in rows]
        lines.append(
            f"| {label} | {len(wins)}/{len(rows)} | "
            f"{100 * statistics.mean(r['area'] for r in wins) if wins else float('nan'):.1f}% | "
            f"{_median(passes):.0f} / {max(passes, default=0)} | "
            f"{_median(seconds):.2f} / {max(seconds, default=0):.2f} |"
        )
    both = [
        r
        for r in records
        if r["a"]["success"] and r["b"]["success"] and r["joint"]["success"] and r["union"]
    ]
    both_flipped = [
        r for r in records if all(after is False for _, after in r["joint"]["categories"].values())
    ]
    ratios = [r["joint"]["area"] / r["union"] for r in both if r["union"]]
    lines += [
        "",
        f"joint output clears both categories: {len(both_flipped)}/{len(records)}; "
        f"joint area / union of the single-guard masks: median "
        f"{_median(ratios):.2f}x, mean {statistics.mean(ratios) if ratios else float('nan'):.2f}x "
        f"(over {len(ratios)} images where all three succeeded)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
