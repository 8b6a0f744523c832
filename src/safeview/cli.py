"""The ``safeview`` command line."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from safeview.io import IMAGE_EXTENSIONS, ImageInputError

if TYPE_CHECKING:
    from safeview.report import Report

app = typer.Typer(
    name="safeview",
    help=(
        "Image safeguarding: classify an image with a guard, obfuscate only the regions that make "
        "it unsafe (a counterfactual explanation), and report why."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class GuardName(StrEnum):
    open_nsfw = "open-nsfw"
    imagenet = "imagenet"


class AttributionName(StrEnum):
    fullgrad = "fullgrad"
    gradcam = "gradcam"
    gradcam_pp = "gradcam++"
    xgradcam = "xgradcam"
    ablationcam = "ablationcam"


class SegmenterName(StrEnum):
    slic = "slic"
    felzenszwalb = "felzenszwalb"
    watershed = "watershed"


class StyleName(StrEnum):
    blur = "blur"
    pixelate = "pixelate"
    fill = "fill"
    inpaint = "inpaint"


class OnFailureName(StrEnum):
    blur_all = "blur-all"
    keep = "keep"
    error = "error"


@dataclass
class Job:
    """One input and where its outputs go (``stem`` is relative to the output folder)."""

    source: Path | None
    name: str
    stem: Path
    pixels: Any = None  # for --demo images


def _error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def _collect(inputs: list[str], demo: bool) -> tuple[list[Job], list[str]]:
    """Expand files and folders into jobs; return them with one error line per bad input."""
    jobs: list[Job] = []
    errors: list[str] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.is_symlink()
            )
            if not found:
                errors.append(f"{raw}: no images found in directory")
            for item in found:
                relative = item.relative_to(path)
                jobs.append(Job(item, str(item), Path(path.name) / relative.with_suffix("")))
        elif path.exists():
            jobs.append(Job(path, str(path), Path(path.stem)))
        else:
            errors.append(f"{raw}: no such file or directory")
    if demo:
        from skimage import data

        for key in ("chelsea", "coffee", "astronaut"):
            jobs.append(Job(None, f"demo:{key}", Path(f"demo-{key}"), getattr(data, key)()))
    # Two inputs with the same stem must not overwrite each other's outputs.
    seen: dict[str, int] = {}
    for job in jobs:
        key = str(job.stem).lower()
        if key in seen:
            seen[key] += 1
            job.stem = job.stem.with_name(f"{job.stem.name}-{seen[key]}")
        else:
            seen[key] = 1
    return jobs, errors


def _summary(report: Report) -> str:
    target = report.guard.target
    before = report.scores_before.get(target, 0.0)
    if not report.flagged:
        return f"{report.input.name}: not flagged ({target} p={before:.3f}); nothing obfuscated"
    after = (report.scores_after or {}).get(target)
    after_text = f"{after:.3f}" if after is not None else "n/a"
    state = "flipped" if report.success else f"NOT flipped (fallback: {report.fallback})"
    return (
        f"{report.input.name}: {target} p={before:.3f} -> {after_text}, {state}, "
        f"{len(report.regions)} region(s), {100 * report.obfuscated_fraction:.1f}% obfuscated"
    )


def _check_not_overwriting(job: Job, target: Path) -> None:
    if job.source is not None and target.exists() and target.resolve() == job.source.resolve():
        raise ImageInputError(f"{job.name}: output {target} would overwrite the input")


@app.command()
def safeguard(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Image files and/or folders (searched recursively for images)."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for obfuscated images and reports.")
    ] = Path("out"),
    guard: Annotated[
        GuardName, typer.Option(help="Classifier whose decision is removed.")
    ] = GuardName.open_nsfw,
    attribution: Annotated[
        AttributionName, typer.Option(help="Attribution map that ranks the regions.")
    ] = AttributionName.fullgrad,
    segmenter: Annotated[
        SegmenterName, typer.Option(help="How the image is cut into candidate regions.")
    ] = SegmenterName.slic,
    style: Annotated[
        StyleName, typer.Option(help="Obfuscation style, in the search and in the output.")
    ] = StyleName.blur,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Flagged while p(unsafe) >= threshold.")
    ] = 0.5,
    max_regions: Annotated[int, typer.Option(min=1, help="Region budget of the search.")] = 10,
    no_prune: Annotated[
        bool, typer.Option("--no-prune", help="Keep every region of the flipping prefix.")
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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[
        int, typer.Option(min=1, help="Candidate images per forward pass in the search.")
    ] = 4,
) -> None:
    """Obfuscate the minimal unsafe regions of each image.

    Writes OUTPUT/NAME.EXT (obfuscated, metadata stripped) and OUTPUT/NAME.json (the report) for
    every input. Exits 1 if any input failed; the other inputs are still processed.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    jobs, errors = _collect(list(inputs or []), demo)
    for message in errors:
        _error(message)
    if not jobs and not errors:
        _error("no inputs given (pass image files or folders, or --demo)")
        raise typer.Exit(2)

    failures = len(errors)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=len(jobs) < 2 or not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task("safeguarding", total=len(jobs))
        for job in jobs:
            try:
                report = _safeguard_one(
                    job,
                    output,
                    guard=guard.value,
                    attribution=attribution.value,
                    segmenter=segmenter.value,
                    style=style.value,
                    threshold=threshold,
                    max_regions=max_regions,
                    prune=not no_prune,
                    on_failure=on_failure.value,
                    viz=viz,
                    device=device,
                    batch_size=batch_size,
                )
            except (ImageInputError, ValueError, OSError) as exc:
                failures += 1
                _error(str(exc))
            else:
                if report.error and report.fallback == "error":
                    failures += 1
                    _error(f"{job.name}: {report.error} (no image written)")
                if as_json:
                    typer.echo(report.to_json(indent=None))
                else:
                    typer.echo(_summary(report))
            progress.advance(task)
    if failures:
        raise typer.Exit(1)


def _safeguard_one(job: Job, output: Path, *, viz: bool, **options: Any) -> Report:
    from safeview.io import atomic_write, encode_image, load_image, output_format
    from safeview.pipeline import SearchFailedError
    from safeview.pipeline import safeguard as run

    loaded = load_image(job.pixels if job.source is None else job.source, name=job.name)
    _, extension = output_format(loaded.format)
    image_path = output / job.stem.with_suffix(extension)
    report_path = output / job.stem.with_suffix(".json")
    _check_not_overwriting(job, image_path)
    try:
        report = run(loaded, **options)
    except SearchFailedError as failed:
        report = failed.report
    if report.encoded is not None:
        atomic_write(image_path, report.encoded)
        report.output = str(image_path)
    if viz and report.image is not None:
        from safeview.viz import visualize

        viz_path = output / job.stem.with_name(job.stem.name + ".viz.png")
        atomic_write(viz_path, encode_image(visualize(report), "PNG"))
        report.visualization = str(viz_path)
    atomic_write(report_path, (report.to_json() + "\n").encode())
    return report


@app.command()
def classify(
    inputs: Annotated[list[str], typer.Argument(help="Image files and/or folders.")],
    guard: Annotated[GuardName, typer.Option(help="Classifier to run.")] = GuardName.open_nsfw,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Flagged while p(unsafe) >= threshold.")
    ] = 0.5,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each report as one JSON line on stdout.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Print the guard's scores for each image (a table, or JSON lines with --json)."""
    from rich.console import Console
    from rich.table import Table

    from safeview.pipeline import classify as run

    jobs, errors = _collect(inputs, demo=False)
    for message in errors:
        _error(message)
    failures = len(errors)
    table = Table("input", "flagged", "scores", title=f"guard: {guard.value}")
    for job in jobs:
        try:
            report = run(
                job.source or job.pixels,
                guard.value,
                threshold=threshold,
                device=device,
                name=job.name,
            )
        except (ImageInputError, ValueError, OSError) as exc:
            failures += 1
            _error(str(exc))
            continue
        if as_json:
            typer.echo(report.to_json(indent=None))
        else:
            ranked = sorted(report.scores_before.items(), key=lambda item: -item[1])
            table.add_row(
                report.input.name,
                "yes" if report.flagged else "no",
                ", ".join(f"{name} {value:.3f}" for name, value in ranked),
            )
    if not as_json and table.row_count:
        Console().print(table)
    if failures:
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the report."""
    from safeview.report import JSON_SCHEMA

    typer.echo(json.dumps(JSON_SCHEMA, indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
