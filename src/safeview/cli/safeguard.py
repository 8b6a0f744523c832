"""``safeview safeguard`` and ``safeview classify``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safeview.cli.common import (
    DeviceOption,
    error,
    guard_option,
    parse_options,
    policy_option,
    progress_bars,
    registered,
)
from safeview.io import ImageInputError

if TYPE_CHECKING:
    from safeview.batch import Outcome
    from safeview.report import Report


class EngineName(StrEnum):
    local = "local"
    ray = "ray"


class OnFailureName(StrEnum):
    blur_all = "blur-all"
    keep = "keep"
    error = "error"


class AudioName(StrEnum):
    drop = "drop"
    copy = "copy"


def _video_options(audio: AudioName, items: list[str]) -> dict[str, object]:
    """``--audio`` and ``--video-option KEY=VALUE`` as ``SafeguardOptions.video_options``."""
    bad = [item for item in items if "=" not in item or not item.partition("=")[0].strip()]
    if bad:
        raise ValueError(f"video option {bad[0]!r} is not KEY=VALUE")
    options: dict[str, object] = dict(parse_options(items))
    if audio is AudioName.copy:
        options["audio"] = "copy"
    return options


def _summary(report: Report) -> str:
    if report.categories:  # a policy: every flagged category, before -> after
        flagged = [c for c in report.categories if c.flagged]
        if not flagged:
            highest = max(
                (c for c in report.categories if c.covered),
                key=lambda c: c.score_before or 0.0,
            )
            return (
                f"{report.input.name}: not flagged (highest: {highest.id} "
                f"p={highest.score_before:.3f}); nothing obfuscated"
            )
        changes = ", ".join(
            f"{c.id} p={c.score_before:.3f} -> "
            + (f"{c.score_after:.3f}" if c.score_after is not None else "n/a")
            for c in flagged
        )
    else:
        target = report.guard.target
        before = report.scores_before.get(target, 0.0)
        if not report.flagged:
            return f"{report.input.name}: not flagged ({target} p={before:.3f}); nothing obfuscated"
        after = (report.scores_after or {}).get(target)
        changes = f"{target} p={before:.3f} -> " + (f"{after:.3f}" if after is not None else "n/a")
    state = "flipped" if report.success else f"NOT flipped (fallback: {report.fallback})"
    return (
        f"{report.input.name}: {changes}, {state}, "
        f"{len(report.regions)} region(s), {100 * report.obfuscated_fraction:.1f}% obfuscated"
    )


def safeguard(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Image and video files and/or folders (searched recursively for both)."
        ),
    ] = None,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder for obfuscated images, videos and reports."),
    ] = Path("out"),
    guard: Annotated[str | None, guard_option("One classifier whose decision is removed:")] = None,
    policy: Annotated[str | None, policy_option()] = None,
    attribution: Annotated[
        str,
        typer.Option(
            help="Attribution map that ranks the regions (fullgrad, gradcam, gradcam++, "
            "xgradcam, ablationcam, or a registered one).",
            callback=registered("attribution"),
        ),
    ] = "fullgrad",
    segmenter: Annotated[
        str,
        typer.Option(
            help="How the image is cut into fine candidate regions (bass-guided: superpixels "
            "that follow the attribution map as well as colour; bass, slic, felzenszwalb, "
            "watershed, or a registered one).",
            callback=registered("segmenter"),
        ),
    ] = "bass-guided",
    search: Annotated[
        str,
        typer.Option(
            callback=registered("search"),
            help="coarse-to-fine: flip on a coarse region hierarchy, refine, prune (small and "
            "reliable); greedy: the paper's prefix search, at most --max-regions regions; "
            "powerset: every subset of the top --max-regions regions, smallest area first "
            "(up to 2^N forward passes).",
        ),
    ] = "coarse-to-fine",
    style: Annotated[
        str,
        typer.Option(
            help="Obfuscation style, in the search and in the output (blur, pixelate, fill, "
            "inpaint, or a registered one).",
            callback=registered("style"),
        ),
    ] = "blur",
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Flagged while p(unsafe) >= threshold (strictly between 0 and 1).",
        ),
    ] = 0.5,
    max_regions: Annotated[
        int, typer.Option(min=1, help="Region budget of --search greedy (top-N of powerset).")
    ] = 10,
    margin: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.49,
            help="The search needs p(unsafe) < threshold - margin (more decisive flips, larger "
            "areas); the output is always verified with the plain threshold.",
        ),
    ] = 0.0,
    no_prune: Annotated[
        bool, typer.Option("--no-prune", help="Keep every region the search chose; no pruning.")
    ] = False,
    on_failure: Annotated[
        OnFailureName,
        typer.Option(
            help="No flip within the budget: blur-all (fail closed), keep the attempted "
            "regions, or error (write no image, exit 1)."
        ),
    ] = OnFailureName.blur_all,
    viz: Annotated[
        bool, typer.Option("--viz", help="Also write NAME.viz.png: heatmap, regions, choices.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each report as one JSON line on stdout.")
    ] = False,
    demo: Annotated[
        bool, typer.Option("--demo", help="Add three built-in sample photographs as inputs.")
    ] = False,
    segmenter_option: Annotated[
        list[str] | None,
        typer.Option(
            "--segmenter-option",
            help="KEY=VALUE passed to the segmenter, repeatable (e.g. n_segments=40, i_std=0.03).",
        ),
    ] = None,
    search_option: Annotated[
        list[str] | None,
        typer.Option(
            "--search-option",
            help="KEY=VALUE passed to the search, repeatable (coarse-to-fine: e.g. "
            "prune_passes=100 to bound a hard image's cost lower, prune_passes=null for no "
            "bound, fine_budget=10, gradient_steps=4, climb_above=0.1; README, Search).",
        ),
    ] = None,
    device: DeviceOption = "auto",
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Candidate images per forward pass in the search (default: the search's own: "
            "4 coarse-to-fine and greedy, 32 powerset).",
        ),
    ] = None,
    engine: Annotated[
        EngineName,
        typer.Option(help="local: this process. ray: Ray Data actors (models load once each)."),
    ] = EngineName.local,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address (e.g. ray://head:10001); default: a local Ray."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray actors (--engine ray).")] = 2,
    rationale: Annotated[
        str | None,
        typer.Option(
            help="Also explain why (report key 'rationale') with this backend (grounded, "
            "instructblip, openai).",
            callback=registered("rationale"),
        ),
    ] = None,
    audio: Annotated[
        AudioName,
        typer.Option(help="Videos: drop the audio (default) or copy it unchanged."),
    ] = AudioName.drop,
    video_option: Annotated[
        list[str] | None,
        typer.Option(
            "--video-option",
            help="Videos: KEY=VALUE, repeatable: sample_every (5), costly_guards (auto: the "
            "OCR; none; or names), costly_every (1.0 s: the costly guards score a frame this "
            "often, plus cuts and wherever another guard flags, so what only they would flag "
            "and is shown for less than that can be missed), key_every (8), verify_every (1), "
            "cut_threshold (0.25), rekey (2), flow (dis|farneback), crf (18), preset, "
            "batch_size (4), max_duration (s), max_frames, max_frame_pixels.",
        ),
    ] = None,
    protect_faces: Annotated[
        bool,
        typer.Option(
            "--protect-faces",
            help="Keep faces visible where the flip allows: regions over a detected face are "
            "tried last and dropped first (report key 'protected' says whether one had to be "
            "obfuscated).",
        ),
    ] = False,
) -> None:
    """Obfuscate the minimal unsafe regions of each image and video.

    Writes OUTPUT/NAME.EXT (obfuscated, metadata stripped) and OUTPUT/NAME.json (the report) for
    every input; files under a folder keep their path relative to it. A video (clip.mp4) becomes
    OUTPUT/clip.mp4 (H.264, no audio unless --audio copy) and OUTPUT/clip.json (its flagged
    spans, what was hidden and how it was verified). OUTPUT/manifest.jsonl lists
    every input as ok, unsafe-kept (--on-failure keep and still flagged) or failed; a rerun after
    an interruption skips what is done with the same settings and redoes what was done with other
    ones. Exits 1 if any input failed or was kept unsafe; the other inputs are still processed.
    No output ever replaces an input: an input whose output would land on one is refused.
    """
    from safeview.batch import OutputFolderError, collect, run_local
    from safeview.guards import is_checkpoint_path
    from safeview.options import SafeguardOptions

    if guard is not None and is_checkpoint_path(guard):  # Ray workers may not share our cwd
        guard = str(Path(guard).resolve())
    if policy is not None and Path(policy).is_file():
        policy = str(Path(policy).resolve())
    try:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"--threshold must be strictly between 0 and 1, got {threshold}")
        # Every option validated once, before any input is read.
        options = SafeguardOptions(
            guard=guard,
            policy=policy,
            attribution=attribution,
            segmenter=segmenter,
            segmenter_options=parse_options(segmenter_option or []),
            search=search,
            search_options=parse_options(search_option or [], "search"),
            style=style,
            threshold=threshold,
            max_regions=max_regions,
            margin=margin,
            prune=not no_prune,
            on_failure=on_failure.value,
            device=device,
            batch_size=batch_size,
            rationale=rationale,
            video_options=_video_options(audio, video_option or []),
            protect=("faces",) if protect_faces else (),
        )
    except ValueError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    jobs, errors = collect(list(inputs or []), demo, out=output)
    for message in errors:
        error(message)
    if not jobs:
        if not errors:
            error("no inputs given (pass image files or folders, or --demo)")
        raise typer.Exit(2 if not errors else 1)
    failures = len(errors)
    skipped = redone = 0

    def report_outcome(outcome: Outcome) -> None:
        nonlocal failures, skipped, redone
        if outcome.skipped:
            skipped += 1
            return
        redone += bool(outcome.extra.get("settings_changed"))
        if outcome.record["status"] == "unsafe-kept":
            failures += 1
            typer.echo(f"warning: {outcome.record['error']}", err=True)
        elif not outcome.ok:
            failures += 1
            error(outcome.record["error"])
        if outcome.report is not None:
            typer.echo(outcome.report.to_json(indent=None) if as_json else _summary(outcome.report))

    if engine is EngineName.ray:
        from safeview.engines.ray_engine import run_ray

        for outcome in run_ray(jobs, output, options, viz, address=ray_address, workers=workers):
            report_outcome(outcome)
    else:
        from safeview.video import is_video_path

        videos = any(job.source is not None and is_video_path(job.source) for job in jobs)
        with progress_bars(rate=True, transient=True, enabled=len(jobs) >= 2 or videos) as bars:

            def on_done(outcome: Outcome) -> None:
                report_outcome(outcome)
                if len(jobs) >= 2:
                    bars.advance("safeguarding", total=len(jobs))

            def on_progress(stage: str, done: int, total: int) -> None:
                bars.update(stage, done, max(total, done))

            try:
                run_local(jobs, output, options, viz, on_done=on_done, on_progress=on_progress)
            except OutputFolderError as exc:
                error(str(exc))
                raise typer.Exit(1) from None
    if redone:
        typer.echo(
            f"redid {redone} input(s) done earlier with other settings "
            f"(see 'settings' in {output / 'manifest.jsonl'})",
            err=True,
        )
    if skipped:
        typer.echo(
            f"skipped {skipped} input(s) already done in {output / 'manifest.jsonl'}", err=True
        )
    if failures:
        raise typer.Exit(1)


def _score_text(report: Report) -> str:
    """One guard: its scores, highest first. A policy: each category (flagged ones marked, the
    ones no guard covers said so)."""
    if not report.categories:
        ranked = sorted(report.scores_before.items(), key=lambda item: -item[1])
        return ", ".join(f"{name} {value:.3f}" for name, value in ranked)
    parts = []
    for category in report.categories:
        if not category.covered:
            parts.append(f"{category.id} (not covered)")
        else:
            mark = " FLAGGED" if category.flagged else ""
            parts.append(f"{category.id} {category.score_before:.3f}{mark}")
    return ", ".join(parts)


def _segment_rows(report: Report) -> list[tuple[str, str, str]]:
    """A clip's segments as table rows: NAME [start-end s], flagged, scores."""
    assert report.video is not None
    rows = []
    for segment in report.video.segments:
        ranked = sorted(segment.scores.items(), key=lambda item: -item[1])
        rows.append(
            (
                f"{report.input.name} [{segment.start_time:.2f}-{segment.end_time:.2f} s]",
                "yes" if segment.flagged else "no",
                ", ".join(f"{name} {value:.3f}" for name, value in ranked),
            )
        )
    return rows


def classify(
    inputs: Annotated[list[str], typer.Argument(help="Image and video files and/or folders.")],
    guard: Annotated[str | None, guard_option("One classifier to run:")] = None,
    policy: Annotated[str | None, policy_option()] = None,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Flagged while p(unsafe) >= threshold.")
    ] = 0.5,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each report as one JSON line on stdout.")
    ] = False,
    device: DeviceOption = "auto",
) -> None:
    """Print the scores of each image: every category of the policy (default), or one guard's
    (a table, or JSON lines with --json). A category that no guard covers is shown as such.
    A video gets one row per segment (a stretch of sampled frames with the same verdict, within
    a shot) with its highest scores; its JSON report lists them under video.segments."""
    from rich.console import Console
    from rich.table import Table

    from safeview.batch import collect
    from safeview.options import SafeguardOptions
    from safeview.pipeline import Pipeline
    from safeview.video import is_video_path

    try:  # one pipeline: the guard loads once for all the images
        pipeline = Pipeline(
            SafeguardOptions(guard=guard, policy=policy, threshold=threshold, device=device)
        )
    except ValueError as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    jobs, errors = collect(inputs)
    for message in errors:
        error(message)
    failures = len(errors)
    title = f"guard: {guard}" if guard else f"policy: {pipeline.options.policy_name}"
    table = Table("input", "flagged", "scores", title=title)
    for job in jobs:
        if job.error:  # refused before decoding (a symbolic link, a FIFO, a device)
            failures += 1
            error(job.error)
            continue
        try:
            if job.source is not None and is_video_path(job.source):
                from safeview.video import VideoPipeline

                with progress_bars(transient=True) as bars:
                    report = VideoPipeline(pipeline.options).classify(
                        job.source,
                        name=job.name,
                        progress=lambda stage, done, total: bars.update(
                            stage, done, max(total, done)
                        ),
                    )
            else:
                report = pipeline.classify(job.source or job.pixels, name=job.name)
        except (ImageInputError, ValueError, OSError) as exc:
            failures += 1
            error(" ".join(str(exc).split()))
            continue
        except Exception as exc:  # one input must not stop the others
            failures += 1
            error(f"{job.name}: {type(exc).__name__}: {' '.join(str(exc).split())}")
            continue
        if as_json:
            typer.echo(report.to_json(indent=None))
        elif report.video is not None:
            for row in _segment_rows(report):
                table.add_row(*row)
        else:
            table.add_row(report.input.name, "yes" if report.flagged else "no", _score_text(report))
    if not as_json and table.row_count:
        Console().print(table)
    if failures:
        raise typer.Exit(1)
