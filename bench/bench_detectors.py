"""Evidence detectors (issue 14): time per image and detections on the BSDS500 test photographs,
and OCR + lexicon recall on text drawn on them.

Every detector runs with one thread (``threads=1``, OMP_NUM_THREADS=1), as a process given a
one-thread budget runs it. On the photographs: hands found and middle-finger rule firings (the
photographs show no such gesture, so every firing is a false positive), faces found, text lines
read and lexicon matches among them (false positives too), NudeNet's detections and its unsafe
ones. On the drawn-text set: abusive and neutral phrases drawn on the photographs with Debian's
fonts at several sizes, positions and styles; recall is the share of abusive renders on which a
line the lexicon flags is read, the false-positive rate the share of neutral renders flagged.

    .venv/bin/python bench/bench_detectors.py                     # 200 photographs
    .venv/bin/python bench/bench_detectors.py --limit 50 --ocr-every 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from safeview.detectors import Detection, make_detector
from safeview.detectors.lexicon import words

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500"
FONTS = Path("/usr/share/fonts/truetype")
FONT_FILES = (
    "dejavu/DejaVuSans-Bold.ttf",
    "dejavu/DejaVuSerif.ttf",
    "liberation/LiberationSans-Regular.ttf",
    "dejavu/DejaVuSansMono.ttf",
)
ABUSIVE = (
    "YOU ARE A LOSER",
    "KILL YOURSELF",
    "SHUT UP IDIOT",
    "NOBODY LIKES YOU",
    "I WILL HURT YOU",
    "YOU ARE UGLY",
    "GO DIE",
    "YOU SUCK",
    "WHAT A JERK",
    "YOU STUPID MORON",
    "I KNOW WHERE YOU LIVE",
    "YOU ARE PATHETIC",
)
#: Neutral phrases, most of them hiding a lexicon entry inside innocent words.
NEUTRAL = (
    "HAVE A NICE DAY",
    "FIRST CLASS SEATS",
    "CLOSER TO NATURE",
    "BASS GUITAR LESSONS",
    "A SYMPATHETIC EAR",
    "THE SKILL YOU NEED",
    "SEE YOU SOON",
    "GRASS IS GREENER",
    "WELCOME HOME",
    "CLASSIC DUMBBELL SET",
    "PASS THE SALT",
    "SMUGLY AMASSED",
)
SIZES = (18, 26, 36, 48)
#: Where the text's top-left corner goes, in fractions of the width and height.
PLACES = ((0.05, 0.06), (0.2, 0.45), (0.08, 0.85))


def draw_text(
    pixels: np.ndarray, text: str, *, font: Path, size: int, at: tuple[float, float], outline: bool
) -> np.ndarray:
    """``pixels`` with ``text`` in white (a black outline, or none), shrunk to fit 90% of the
    width (as tests/detectors/drawn_text.py draws it)."""
    return draw_text_box(pixels, text, font=font, size=size, at=at, outline=outline)[0]


def draw_text_box(
    pixels: np.ndarray, text: str, *, font: Path, size: int, at: tuple[float, float], outline: bool
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """:func:`draw_text`, and the drawn text's box [x0, y0, x1, y1) (outline included)."""
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    while True:
        face = ImageFont.truetype(str(font), size)
        stroke = max(1, size // 14) if outline else 0
        left, top, right, bottom = draw.textbbox((0, 0), text, font=face, stroke_width=stroke)
        if right - left <= 0.9 * image.width or size <= 8:
            break
        size -= 2
    x = max(0, min(int(at[0] * image.width), image.width - right - 2))
    y = max(0, min(int(at[1] * image.height), image.height - bottom - 2))
    draw.text(
        (x, y),
        text,
        font=face,
        fill=(255, 255, 255),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0) if outline else None,
    )
    return np.asarray(image), (x + left, y + top, x + right, y + bottom)


def timed(detector: Any, pixels: np.ndarray) -> tuple[list[Detection], float]:
    start = time.perf_counter()
    found = detector.detect(pixels)
    return found, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def photographs_table(paths: list[Path], ocr_every: int) -> tuple[str, dict[str, Any]]:
    detectors = {name: make_detector(name, threads=1) for name in ("hands", "faces", "nudenet")}
    detectors["text"] = make_detector("text", threads=1)
    times: dict[str, list[float]] = {name: [] for name in detectors}
    stats: dict[str, Any] = {
        "hands": {"images": 0, "hands": 0, "gesture": [], "with_hands": []},
        "faces": {"images": 0, "faces": 0},
        "text": {"images": 0, "lines": 0, "flagged": [], "read": 0},
        "nudenet": {"images": 0, "detections": 0, "unsafe": []},
    }
    for n, path in enumerate(paths):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        for name, detector in detectors.items():
            if name == "text" and n % ocr_every:
                continue
            found, seconds = timed(detector, pixels)
            times[name].append(seconds)
            entry = stats[name]
            entry["images"] += 1 if name == "text" else 0
            if name == "hands":
                hands = [d for d in found if d.label == "hand"]
                entry["hands"] += len(hands)
                if hands:
                    entry["with_hands"].append(path.stem)
                entry["gesture"] += [path.stem for d in found if d.label == "middle_finger"]
            elif name == "faces":
                entry["faces"] += len(found)
                entry["images"] += bool(found)
            elif name == "text":
                entry["lines"] += len(found)
                entry["read"] += bool(found)
                entry["flagged"] += [(path.stem, d.text, d.details) for d in found if d.unsafe]
            else:
                entry["detections"] += len(found)
                entry["images"] += bool(found)
                entry["unsafe"] += [
                    (path.stem, d.label, round(d.score, 2)) for d in found if d.unsafe
                ]
        print(f"\r{n + 1}/{len(paths)} photographs", end="", file=sys.stderr)
    print(file=sys.stderr)
    total = len(paths)
    hands, faces, text, nude = stats["hands"], stats["faces"], stats["text"], stats["nudenet"]
    rows = [
        (
            "hands",
            times["hands"],
            f"{len(hands['with_hands'])}/{total} photographs with hands, {hands['hands']} hands",
            f"middle-finger rule fired {len(hands['gesture'])} times",
        ),
        (
            "faces",
            times["faces"],
            f"{faces['images']}/{total} photographs with faces, {faces['faces']} faces",
            "(context, never unsafe)",
        ),
        (
            "text",
            times["text"],
            f"{text['read']}/{text['images']} photographs with text read, {text['lines']} lines",
            f"lexicon matched {len(text['flagged'])} lines",
        ),
        (
            "nudenet",
            times["nudenet"],
            f"{nude['images']}/{total} photographs with detections, {nude['detections']} boxes",
            f"{len(nude['unsafe'])} unsafe",
        ),
    ]
    lines = [
        "| detector | images | median s/image | p90 s/image | found | false positives |",
        "|---|---|---|---|---|---|",
    ]
    for name, seconds, found, wrong in rows:
        lines.append(
            f"| {name} | {len(seconds)} | {statistics.median(seconds):.3f} | "
            f"{percentile(seconds, 90):.3f} | {found} | {wrong} |"
        )
    return "\n".join(lines), stats


def drawn_text_table(paths: list[Path], fonts: list[Path]) -> tuple[str, dict[str, Any]]:
    detector = make_detector("text", threads=1)
    records = []
    k = 0
    for phrase in ABUSIVE + NEUTRAL:
        for size in SIZES:
            for outline in (True, False):
                path = paths[(37 * k + 11) % len(paths)]
                font = fonts[k % len(fonts)]
                at = PLACES[k % len(PLACES)]
                k += 1
                pixels = draw_text(
                    np.asarray(Image.open(path).convert("RGB")),
                    phrase,
                    font=font,
                    size=size,
                    at=at,
                    outline=outline,
                )
                found, seconds = timed(detector, pixels)
                target = "".join(words(phrase))
                records.append(
                    {
                        "phrase": phrase,
                        "abusive": phrase in ABUSIVE,
                        "size": size,
                        "outline": outline,
                        "font": font.stem,
                        "photograph": path.stem,
                        "flagged": any(d.unsafe for d in found),
                        "exact": any("".join(words(d.text or "")) == target for d in found),
                        "read": [d.text for d in found],
                        "seconds": seconds,
                    }
                )
                print(f"\r{k} drawn-text images", end="", file=sys.stderr)
    print(file=sys.stderr)
    lines = [
        "| text size (px) | abusive renders | recall (flagged) | read exactly | "
        "neutral renders | false positives |",
        "|---|---|---|---|---|---|",
    ]
    for size in (*SIZES, None):
        chosen = [r for r in records if size is None or r["size"] == size]
        bad = [r for r in chosen if r["abusive"]]
        good = [r for r in chosen if not r["abusive"]]
        label = "all" if size is None else str(size)
        lines.append(
            f"| {label} | {len(bad)} | {sum(r['flagged'] for r in bad) / len(bad):.1%} | "
            f"{sum(r['exact'] for r in bad) / len(bad):.1%} | {len(good)} | "
            f"{sum(r['flagged'] for r in good) / len(good):.1%} |"
        )
    for outline in (True, False):
        bad = [r for r in records if r["abusive"] and r["outline"] == outline]
        good = [r for r in records if not r["abusive"] and r["outline"] == outline]
        lines.append(
            f"| all, {'outlined' if outline else 'plain white'} | {len(bad)} | "
            f"{sum(r['flagged'] for r in bad) / len(bad):.1%} | "
            f"{sum(r['exact'] for r in bad) / len(bad):.1%} | {len(good)} | "
            f"{sum(r['flagged'] for r in good) / len(good):.1%} |"
        )
    seconds = [r["seconds"] for r in records]
    lines.append("")
    lines.append(
        f"OCR time on the drawn-text images: median {statistics.median(seconds):.3f} s, "
        f"p90 {percentile(seconds, 90):.3f} s ({len(records)} images)."
    )
    return "\n".join(lines), {"records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=200, help="photographs (of the 200)")
    parser.add_argument("--ocr-every", type=int, default=1, help="OCR every n-th photograph")
    parser.add_argument("--json", type=Path, help="write every record here")
    args = parser.parse_args()
    paths = sorted((args.data / "images" / "test").glob("*.jpg"))[: args.limit]
    if not paths:
        sys.exit(f"no BSDS500 photographs in {args.data / 'images' / 'test'}")
    fonts = [FONTS / name for name in FONT_FILES if (FONTS / name).is_file()]
    if not fonts:
        sys.exit("no DejaVu or Liberation fonts (apt-get install fonts-dejavu-core)")
    photo_table, photo_stats = photographs_table(paths, args.ocr_every)
    text_table, text_stats = drawn_text_table(paths, fonts)
    print(f"### Detections on {len(paths)} BSDS500 test photographs (1 thread)\n")
    print(photo_table)
    hands = photo_stats["hands"]
    print(f"\nPhotographs with hands: {', '.join(hands['with_hands'])}.")
    if hands["gesture"]:
        print(f"Middle-finger rule fired on: {', '.join(hands['gesture'])}.")
    flagged = photo_stats["text"]["flagged"]
    if flagged:
        print(
            "Lexicon matches on the photographs: "
            + "; ".join(f"{s} {t!r} {d}" for s, t, d in flagged)
        )
    if photo_stats["nudenet"]["unsafe"]:
        print(f"NudeNet unsafe: {photo_stats['nudenet']['unsafe']}")
    print(
        f"\n### OCR + lexicon on drawn text ({len(ABUSIVE)} abusive and {len(NEUTRAL)} neutral "
        f"phrases x {len(SIZES)} sizes x 2 styles; fonts {', '.join(f.stem for f in fonts)})\n"
    )
    print(text_table)
    missed = [r for r in text_stats["records"] if r["abusive"] and not r["flagged"]]
    wrong = [r for r in text_stats["records"] if not r["abusive"] and r["flagged"]]
    for title, chosen in (("Missed", missed), ("Flagged neutral", wrong)):
        if chosen:
            print(
                f"\n{title}: "
                + "; ".join(
                    f"{r['phrase']!r} {r['size']} px {r['font']} -> {r['read']}" for r in chosen
                )
            )
    if args.json:
        args.json.write_text(
            json.dumps({"photographs": photo_stats, "drawn_text": text_stats}, indent=1)
        )


if __name__ == "__main__":
    main()
