"""``safeview pairs``: make, eval, augment and synthetic SafetyPairs."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from safeview.cli.common import (
    ApiKeyOption,
    BaseUrlOption,
    CheckpointOption,
    DeviceOption,
    ModelOption,
    error,
    guard_option,
    parse_options,
    policy_option,
    progress_bars,
    registered,
)
from safeview.cli.train import BackboneName
from safeview.io import ImageInputError

pairs_app = typer.Typer(
    help="SafetyPairs: counterfactual image pairs, a pair benchmark, and augmentation.",
    no_args_is_help=True,
)


class EditorName(StrEnum):
    obfuscate = "obfuscate"
    inpaint = "inpaint"
    diffusers = "diffusers"


@pairs_app.command("synthetic")
def pairs_synthetic(
    source: Annotated[Path, typer.Argument(help="Folder of photographs (e.g. BSDS500 images).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Data folder to create.")],
    category: Annotated[str, typer.Option(help="Name of the synthetic category.")] = "symbol",
    seed: Annotated[int, typer.Option()] = 0,
    limit: Annotated[int | None, typer.Option(min=2, help="Use at most this many photos.")] = None,
) -> None:
    """Make a synthetic category from photographs, to try everything without unsafe data.

    A conspicuous symbol is pasted onto half of the photos (OUTPUT/CATEGORY/), the other half stay
    untouched (OUTPUT/safe/); the symbols' masks go to OUTPUT/masks/CATEGORY/.
    """
    from safeview.pairs.synthetic import make_synthetic

    if output.exists() and any(output.iterdir()):
        error(f"{output} exists and is not empty")
        raise typer.Exit(2)
    try:
        with progress_bars() as bars:
            done = [0]

            def advance(n: int) -> None:
                done[0] += n
                bars.update("pasting", done[0], limit or done[0])

            counts = make_synthetic(source, output, category, seed, limit, advance)
    except (ValueError, ImageInputError) as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    typer.echo(
        f"wrote {counts['safe']} safe and {counts[category]} {category} images to {output} "
        f"(train with: safeview train {output} --category {category})"
    )


@pairs_app.command("make")
def pairs_make(
    inputs: Annotated[Path, typer.Argument(metavar="IN_DIR", help="Unsafe images (a folder).")],
    category: Annotated[str, typer.Option(help="Safety category of the images.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PAIRS folder to write.")],
    editor: Annotated[
        EditorName,
        typer.Option(
            help="obfuscate (counterfactual search, offline), inpaint (OpenCV, offline), "
            "diffusers (a diffusion pipeline, --model)."
        ),
    ] = EditorName.obfuscate,
    guard: Annotated[
        str | None,
        guard_option(
            "One guard that verifies the label flip (and that obfuscate searches against):",
            "Without it, the judges of --category in the policy verify (each of its guards, "
            "with its threshold).",
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            help="The category's policy: a text file, JSON {'policy', 'instruction'}, or a "
            "safeview policy JSON ('default': the built-in one), which also names the guards "
            "that judge the category (used without --guard); default: the built-in policy.",
            show_default=False,
        ),
    ] = None,
    instruction: Annotated[
        str | None, typer.Option(help="Editing instruction (default: from the policy).")
    ] = None,
    masks: Annotated[
        Path | None,
        typer.Option(
            help="Folder of edit masks named like the images (white = edit); default: "
            "masks from the guard's attribution."
        ),
    ] = None,
    style: Annotated[
        str,
        typer.Option(help="obfuscate: how regions are obfuscated.", callback=registered("style")),
    ] = "inpaint",
    segmenter: Annotated[
        str,
        typer.Option(
            help="obfuscate: candidate regions (bass-guided: small, tight edits).",
            callback=registered("segmenter"),
        ),
    ] = "bass-guided",
    segmenter_option: Annotated[
        list[str] | None,
        typer.Option("--segmenter-option", help="obfuscate: KEY=VALUE for the segmenter."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="diffusers: pipeline folder or cached hub id.")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="diffusers: denoising steps.")] = 20,
    size: Annotated[
        int, typer.Option(min=64, help="diffusers: longer side of the working image (pixels).")
    ] = 512,
    mask_fraction: Annotated[
        float,
        typer.Option(
            min=0.001,
            max=0.999,
            help="inpaint/diffusers: share of top-attributed "
            "pixels masked when there is no mask file.",
        ),
    ] = 0.08,
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Threshold of --guard (a policy's judges have their own)."
        ),
    ] = 0.5,
    ssim_threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Minimum SSIM outside the edit mask.")
    ] = 0.95,
    device: DeviceOption = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Edit each unsafe image into a safe counterpart and keep the verified pairs.

    A pair is kept when the label flips and the image is unchanged outside the edit mask (SSIM
    >= --ssim-threshold). The label: with --guard, that guard flags the original and not the
    edit; without, the judges of --category in the policy (--policy, or the built-in one): any
    of them flags the original and none flags the edit (each judge's score before and after is
    in pairs.jsonl), and obfuscate searches against all of them at once. Writes
    OUTPUT/pairs.jsonl (every image, kept or rejected with the reason), OUTPUT/images/,
    OUTPUT/masks/, summary.json and sheet.png (kept pairs, the unsafe side pixelated). A rerun
    resumes.
    """
    from safeview.guards import load_guard
    from safeview.pairs import category_judges, make_editor, make_pairs

    options: dict[str, Any] = {}
    if editor is EditorName.obfuscate:
        try:
            extra = parse_options(segmenter_option or [])
        except ValueError as exc:
            error(str(exc))
            raise typer.Exit(2) from None
        options = {
            "style": style,
            "threshold": threshold,
            "segmenter": segmenter,
            "device": device,
            **extra,
        }
    elif editor is EditorName.inpaint:
        options = {"mask_fraction": mask_fraction}
    else:
        if not model:
            error("--editor diffusers needs --model (a pipeline folder or cached hub id)")
            raise typer.Exit(2)
        options = {
            "model": model,
            "steps": steps,
            "size": size,
            "mask_fraction": mask_fraction,
            "device": device,
        }
    if guard is None:
        try:  # the category's judges, before any work
            category_judges(category, policy)
        except ValueError as exc:
            error(str(exc))
            raise typer.Exit(2) from None
    try:
        chosen = make_editor(editor.value, **options)
        loaded = load_guard(guard, device) if guard is not None else None
        with progress_bars() as bars:
            summary = make_pairs(
                inputs,
                output,
                category,
                chosen,
                loaded,
                policy=policy,
                instruction=instruction,
                masks=masks,
                threshold=threshold,
                ssim_threshold=ssim_threshold,
                device=device,
                progress=bars.counter("editing"),
            )
    except (ValueError, OSError) as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        reasons = "; ".join(f"{n}x {r}" for r, n in summary["rejection_reasons"].items())
        verified = summary["verified_by"]
        by = (
            f"guard {verified['guard']}"
            if "guard" in verified
            else f"{verified['category']} of policy {verified['policy']} "
            f"({', '.join(verified['guards'])})"
        )
        typer.echo(
            f"{summary['kept']} pair(s) kept, {summary['rejected']} rejected, "
            f"{summary['failed']} failed of {summary['sources']} in {output / 'pairs.jsonl'}"
            f", verified by {by}" + (f" (rejected: {reasons})" if reasons else "")
        )
    if summary["failed"]:
        raise typer.Exit(1)


@pairs_app.command("eval")
def pairs_eval(
    pairs: Annotated[Path, typer.Argument(metavar="PAIRS", help="A folder from `pairs make`.")],
    guard: Annotated[
        str | None,
        guard_option(
            "One guard to benchmark on every pair:",
            "Without it, each pair is judged by the guards of its own category in --policy.",
        ),
    ] = None,
    policy: Annotated[str | None, policy_option()] = None,
    vlm: Annotated[
        str | None,
        typer.Option(
            help="Benchmark a VLM instead of the guard: openai or instructblip.",
            callback=registered("rationale"),
        ),
    ] = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    instructblip_checkpoint: CheckpointOption = None,
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Threshold of --guard (a policy's judges have their own)."
        ),
    ] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    device: DeviceOption = "auto",
) -> None:
    """Benchmark a guard, a policy or a VLM on pairs: pair accuracy, per category, the misses.

    Pair accuracy: the unsafe image called unsafe and its safe counterpart safe. Also image
    accuracy, unsafe recall and safe specificity, per category, and the pairs it gets wrong.
    Without --guard or --vlm, each pair is judged by the guards of its own category in the
    policy (--policy, default: the built-in one; unsafe when any of them flags); pairs of a
    category the policy does not cover are counted as not covered, not as misses.
    """
    from rich.console import Console
    from rich.table import Table

    from safeview.guards import load_guard
    from safeview.pairs import GuardJudge, PolicyJudge, VLMJudge, evaluate_pairs
    from safeview.rationale import backend_options
    from safeview.rationale.openai_backend import RationaleError

    try:
        if vlm is not None:
            if vlm == "grounded":
                raise ValueError("--vlm must be openai or instructblip (grounded is not a VLM)")
            if policy is not None:
                raise ValueError("--vlm reads each pair's policy text; --policy is for guards")
            judge: Any = VLMJudge(
                vlm,
                **backend_options(
                    vlm,
                    model=model,
                    base_url=base_url,
                    api_key=api_key,
                    checkpoint=instructblip_checkpoint,
                    device=device,
                ),
            )
        elif guard is not None:
            if policy is not None:
                raise ValueError("give --guard or --policy, not both (a policy names its guards)")
            judge = GuardJudge(load_guard(guard, device), threshold)
        else:
            judge = PolicyJudge(policy, device)
        with progress_bars() as bars:
            result = evaluate_pairs(pairs, judge, progress=bars.counter("judging"))
    except (ValueError, OSError, ImageInputError, RationaleError) as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    flags = getattr(getattr(judge, "guard", None), "unsafe_category", None)
    if flags is not None and flags not in result["per_category"]:
        typer.echo(
            f"note: {result['judge']} flags {flags!r}, the pairs are "
            f"{', '.join(map(repr, result['per_category']))}: it is judged on another category",
            err=True,
        )
    uncovered = result["not_covered"]
    if uncovered["pairs"] and not as_json:
        typer.echo(
            f"not covered by {result['judge']}: {uncovered['pairs']} pair(s) ("
            + ", ".join(f"{name}: {n}" for name, n in uncovered["per_category"].items())
            + "); give --guard or a policy with a guard for them",
            err=True,
        )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(
        "category",
        "pairs",
        "pair accuracy",
        "image accuracy",
        "unsafe recall",
        "safe specificity",
        title=f"{result['judge']} on {pairs}",
    )
    rows = [*result["per_category"].items(), ("all", result)]
    for name, values in rows:
        table.add_row(
            name,
            str(values["pairs"]),
            f"{values['pair_accuracy']:.3f}",
            f"{values['image_accuracy']:.3f}",
            f"{values['unsafe_recall']:.3f}",
            f"{values['safe_specificity']:.3f}",
        )
    Console().print(table)
    for item in result["wrong"][:20]:
        typer.echo(
            f"wrong: {item['pair_id']}: unsafe image called {item['unsafe_image_called']}, "
            f"safe image called {item['safe_image_called']}"
        )
    if len(result["wrong"]) > 20:
        typer.echo(f"... and {len(result['wrong']) - 20} more (--json lists them all)")


@pairs_app.command("augment")
def pairs_augment(
    data: Annotated[Path, typer.Argument(help="The training data folder (as `safeview train`).")],
    pairs: Annotated[Path, typer.Argument(metavar="PAIRS", help="Pairs made from DATA's images.")],
    category: Annotated[str, typer.Option(help="The category (as `safeview train`).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for augment.json/.md/.png.")
    ] = Path("augment"),
    backbone: Annotated[BackboneName, typer.Option()] = BackboneName.efficientnet_lite0,
    fractions: Annotated[
        str, typer.Option(help="Training-data fractions, comma-separated.")
    ] = "0.1,0.25,0.5,1.0",
    seeds: Annotated[int, typer.Option(min=1, help="Subsampling seeds per fraction.")] = 3,
    seed: Annotated[int, typer.Option(help="Split seed (as `safeview train --seed`).")] = 0,
    device: DeviceOption = "auto",
) -> None:
    """Measure what the pairs add to a lightweight guard's training data.

    Trains a linear probe with and without the pairs at several fractions of the training split
    (the same split as `safeview train --seed`; only pairs made from training images are added);
    writes the table (augment.md, augment.json) and the plot (augment.png).
    """
    from safeview.pairs.augment import run_experiment, write_outputs
    from safeview.train import find_dataset

    try:
        values = tuple(float(v) for v in fractions.split(","))
        if not values or not all(0.0 < v <= 1.0 for v in values):
            raise ValueError(f"--fractions must be in (0, 1], got {fractions}")
    except ValueError as exc:
        error(f"bad --fractions: {exc}")
        raise typer.Exit(2) from None
    try:
        dataset = find_dataset(data, category)
        with progress_bars() as bars:
            result = run_experiment(
                dataset,
                pairs,
                backbone.value,
                values,
                tuple(range(seeds)),
                seed,
                device,
                bars.advance,
            )
    except (ValueError, OSError, ImageInputError) as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    table = write_outputs(result, output)
    typer.echo(table)
    typer.echo(
        f"{result['pairs']['in_training_split']} pair(s) from training images used, "
        f"{result['pairs']['excluded_val_or_test']} from validation/test left out; "
        f"wrote {output}/augment.{{json,md,png}}"
    )
