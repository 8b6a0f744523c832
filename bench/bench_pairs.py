"""SafetyPairs end to end on a synthetic category built from the 200 BSDS500 test photographs.

1. ``pairs synthetic``: a symbol pasted onto 100 photos ("symbol"), 100 others untouched ("safe").
2. Guards: EfficientNet-Lite0 fine-tuned (5 epochs) and linear probes on EfficientNet-Lite0,
   open_nsfw's trunk and a random-init ResNet-50; test accuracy/F1/AUROC on the 20-image test split.
3. Pairs from the 100 symbol images with each editor, verified by the fine-tuned guard: kept rate,
   why the rest were rejected, SSIM outside the mask, mask area, and against the known symbol
   masks: coverage (share of the symbol inside the edit mask) and spill (share of the edit mask
   outside it).
4. Pair benchmark: every guard on the pairs (the verifying guard is right on all by construction).
5. Augmentation: the EfficientNet-Lite0 probe with and without the pairs at 10/25/50/100% of the
   training split, over 5 split seeds x 3 subsamples; plot to bench/pairs_augment.png.

    .venv/bin/python bench/bench_pairs.py            # about 15 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from safeview.guards import load_guard
from safeview.io import load_image
from safeview.pairs import GuardJudge, evaluate_pairs, make_editor, make_pairs, read_manifest
from safeview.pairs.augment import markdown_table, plot, run_experiment, summarize
from safeview.pairs.synthetic import make_synthetic
from safeview.train import TrainConfig, find_dataset, train_guard

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "bsds500" / "images" / "test"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def edit_vs_truth(pairs: Path, masks: Path) -> tuple[float, float]:
    """Median coverage of the true symbol by the edit mask, and median spill outside it."""
    coverage, spill = [], []
    for record in read_manifest(pairs):
        if record["status"] != "kept":
            continue
        truth = load_image(masks / Path(record["source"]).with_suffix(".png")).pixels[..., 0] > 127
        edit = load_image(pairs / record["files"]["mask"]).pixels[..., 0] > 127
        coverage.append((edit & truth).sum() / max(truth.sum(), 1))
        spill.append((edit & ~truth).sum() / max(edit.sum(), 1))
    return float(np.median(coverage)), float(np.median(spill))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "pairs")
    parser.add_argument("--seeds", type=int, default=3, help="subsamples per split")
    parser.add_argument("--splits", type=int, default=5, help="80/10/10 split seeds")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    data_dir = args.work / "data"
    counts = make_synthetic(args.images, data_dir, "symbol")
    data = find_dataset(data_dir, "symbol")
    print(
        f"Synthetic category: {counts['symbol']} symbol + {counts['safe']} safe BSDS500 photos; "
        "split 80/10/10 (seed 0).\n"
    )

    guards = {
        "efficientnet-lite0 fine-tuned": TrainConfig("symbol", epochs=5),
        "efficientnet-lite0 probe": TrainConfig("symbol", probe=True),
        "open-nsfw trunk probe": TrainConfig("symbol", backbone="open-nsfw", probe=True),
        "resnet50 (random init) probe": TrainConfig("symbol", backbone="resnet50", probe=True),
    }
    paths = {}
    print("| guard | test accuracy | F1 | AUROC | train s |")
    print("|---|---|---|---|---|")
    for label, config in guards.items():
        log(f"training {label}")
        path = args.work / (label.split()[0] + ("-ft" if not config.probe else "-probe") + ".pt")
        result = train_guard(data, path, config)
        paths[label] = path
        test = result.metrics["test"]
        print(
            f"| {label} | {test['accuracy']:.3f} | {test['f1']:.3f} | {test['auroc']:.3f} | "
            f"{result.seconds:.0f} |"
        )
    verifier = load_guard(str(paths["efficientnet-lite0 fine-tuned"]))

    editors = {
        "obfuscate (inpaint, slic)": ("obfuscate", {"style": "inpaint", "segmenter": "slic"}, None),
        "obfuscate (blur, slic)": ("obfuscate", {"style": "blur", "segmenter": "slic"}, None),
        "obfuscate (inpaint, bass-guided), the default": (
            "obfuscate",
            {"style": "inpaint", "segmenter": "bass-guided"},
            None,
        ),
        "inpaint (attribution mask)": ("inpaint", {}, None),
        "inpaint (true symbol mask)": ("inpaint", {}, data_dir / "masks" / "symbol"),
    }
    print(
        "\nPairs from the 100 symbol photos, verified by the fine-tuned guard (SSIM >= 0.95 "
        "outside the mask):\n"
    )
    print(
        "| editor | kept | rejected (why) | median SSIM outside | "
        "median mask area | symbol coverage | spill | s/image |"
    )
    print("|---|---|---|---|---|---|---|---|", flush=True)
    pair_dirs = {}
    for label, (name, options, masks) in editors.items():
        log(f"pairs: {label}")
        out = args.work / ("pairs-" + label.split()[0] + "-" + str(len(pair_dirs)))
        start = time.perf_counter()
        summary = make_pairs(
            data_dir / "symbol", out, "symbol", make_editor(name, **options), verifier, masks=masks
        )
        seconds = (time.perf_counter() - start) / summary["sources"]
        pair_dirs[label] = out
        reasons = summary["rejection_reasons"]
        coverage, spill = edit_vs_truth(out, data_dir / "masks" / "symbol")
        print(
            f"| {label} | {summary['kept']}/{summary['sources']} | "
            f"{'; '.join(f'{n}: {r}' for r, n in reasons.items()) or '-'} | "
            f"{summary['median_ssim_outside_mask']:.4f} | "
            f"{100 * summary['median_mask_fraction']:.1f}% | {100 * coverage:.0f}% | "
            f"{100 * spill:.0f}% | {seconds:.2f} |",
            flush=True,
        )

    print("\nPair benchmark (pair accuracy = both images of a pair right; image accuracy):\n")
    header = " | ".join(pair_dirs)
    print(f"| guard | {header} |")
    print("|---|" + "---|" * len(pair_dirs))
    judges = {**{k: str(v) for k, v in paths.items()}, "open-nsfw (NSFW guard)": "open-nsfw"}
    for label, guard in judges.items():
        cells = []
        for out in pair_dirs.values():
            result = evaluate_pairs(out, GuardJudge(load_guard(guard)))
            cells.append(f"{result['pair_accuracy']:.3f} / {result['image_accuracy']:.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")

    for label in ("obfuscate (inpaint, bass-guided), the default", "inpaint (true symbol mask)"):
        log(f"augmentation with {label}")
        # A 20-image test split moves in steps of 0.05: pool several splits (each with its own
        # training-only pairs) and several subsamples per split; medians over all of them.
        results = [
            run_experiment(
                data, pair_dirs[label], seeds=tuple(range(args.seeds)), split_seed=split_seed
            )
            for split_seed in range(args.splits)
        ]
        pooled = dict(results[0])
        pooled["rows"] = [row for result in results for row in result["rows"]]
        pooled["table"] = summarize(pooled["rows"])
        used = [r["pairs"]["in_training_split"] for r in results]
        print(
            f"\nAugmentation, EfficientNet-Lite0 probe, pairs from {label} "
            f"({min(used)}-{max(used)} pairs from training images per split, the rest left out); "
            f"median test accuracy over {args.splits} splits x {args.seeds} subsamples:\n"
        )
        print(markdown_table(pooled), end="", flush=True)
        if label.startswith("obfuscate"):
            plot(pooled, ROOT / "bench" / "pairs_augment.png")
            (args.work / "augment.json").write_text(json.dumps(pooled, indent=2))


if __name__ == "__main__":
    main()
