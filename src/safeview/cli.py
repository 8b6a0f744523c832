"""The ``safeview`` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from safeview.io import ImageInputError

if TYPE_CHECKING:
    from safeview.batch import Outcome
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


def _check_guard(value: Any) -> Any:
    """A registered guard name or an existing checkpoint file (validated before any work)."""
    from safeview.guards import available_guards, is_checkpoint_path

    values = value if isinstance(value, list) else [value]
    for item in values:
        if item is None:
            continue
        if is_checkpoint_path(item):
            if not Path(item).is_file():
                raise typer.BadParameter(f"guard checkpoint {item} does not exist")
        elif item not in available_guards():
            raise typer.BadParameter(
                f"unknown guard {item!r}: use one of {', '.join(available_guards())} "
                "or a checkpoint file from `safeview train`"
            )
    return value


def _guard_option(help_text: str) -> Any:
    return typer.Option(
        help=f"{help_text} open-nsfw, imagenet, or a guard.pt from `safeview train`.",
        callback=_check_guard,
    )


#: The stage registries the CLI's choices come from (a registered plug-in is accepted too).
_REGISTRIES = {
    "attribution": ("safeview.attribution", "ATTRIBUTIONS"),
    "segmenter": ("safeview.segmentation", "SEGMENTERS"),
    "search": ("safeview.counterfactual", "SEARCHES"),
    "style": ("safeview.render", "RENDERERS"),
    "rationale": ("safeview.rationale", "RATIONALES"),
}


def _registry(stage: str) -> Any:
    import importlib

    module, name = _REGISTRIES[stage]
    return getattr(importlib.import_module(module), name)


def _registered(stage: str) -> Callable[[Any], Any]:
    """A callback accepting only names registered for ``stage`` (a usage error, exit 2)."""

    def check(value: Any) -> Any:
        registry = _registry(stage)
        for item in value if isinstance(value, list) else [value]:
            if item is not None and item not in registry:
                raise typer.BadParameter(
                    f"unknown {registry.kind} {item!r} (available: {', '.join(registry.names())})"
                )
        return value

    return check


class EngineName(StrEnum):
    local = "local"
    ray = "ray"


class OnFailureName(StrEnum):
    blur_all = "blur-all"
    keep = "keep"
    error = "error"


def _error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def _parse_options(items: list[str]) -> dict[str, Any]:
    """``["n_segments=40", "i_std=0.03"]`` -> ``{"n_segments": 40, "i_std": 0.03}``."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"segmenter option {item!r} is not KEY=VALUE")
        value: Any = raw.strip()
        for convert in (int, float):
            try:
                value = convert(raw)
                break
            except ValueError:
                continue
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        options[key.strip()] = value
    return options


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


@app.command()
def safeguard(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Image files and/or folders (searched recursively for images)."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for obfuscated images and reports.")
    ] = Path("out"),
    guard: Annotated[str, _guard_option("Classifier whose decision is removed:")] = "open-nsfw",
    attribution: Annotated[
        str,
        typer.Option(
            help="Attribution map that ranks the regions (fullgrad, gradcam, gradcam++, "
            "xgradcam, ablationcam, or a registered one).",
            callback=_registered("attribution"),
        ),
    ] = "fullgrad",
    segmenter: Annotated[
        str,
        typer.Option(
            help="How the image is cut into fine candidate regions (bass-guided: superpixels "
            "that follow the attribution map as well as colour; bass, slic, felzenszwalb, "
            "watershed, or a registered one).",
            callback=_registered("segmenter"),
        ),
    ] = "bass-guided",
    search: Annotated[
        str,
        typer.Option(
            callback=_registered("search"),
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
            callback=_registered("style"),
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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
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
            callback=_registered("rationale"),
        ),
    ] = None,
) -> None:
    """Obfuscate the minimal unsafe regions of each image.

    Writes OUTPUT/NAME.EXT (obfuscated, metadata stripped) and OUTPUT/NAME.json (the report) for
    every input; files under a folder keep their path relative to it. OUTPUT/manifest.jsonl lists
    every input as ok, unsafe-kept (--on-failure keep and still flagged) or failed; a rerun after
    an interruption skips what is done with the same settings and redoes what was done with other
    ones. Exits 1 if any input failed or was kept unsafe; the other inputs are still processed.
    No output ever replaces an input: an input whose output would land on one is refused.
    """
    from safeview.batch import OutputFolderError, collect, run_local
    from safeview.guards import is_checkpoint_path
    from safeview.options import SafeguardOptions

    if is_checkpoint_path(guard):  # Ray workers may not share our working directory
        guard = str(Path(guard).resolve())
    try:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"--threshold must be strictly between 0 and 1, got {threshold}")
        # Every option validated once, before any input is read.
        options = SafeguardOptions(
            guard=guard,
            attribution=attribution,
            segmenter=segmenter,
            segmenter_options=_parse_options(segmenter_option or []),
            search=search,
            style=style,
            threshold=threshold,
            max_regions=max_regions,
            margin=margin,
            prune=not no_prune,
            on_failure=on_failure.value,
            device=device,
            batch_size=batch_size,
            rationale=rationale,
        )
    except ValueError as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    jobs, errors = collect(list(inputs or []), demo, out=output)
    for message in errors:
        _error(message)
    if not jobs:
        if not errors:
            _error("no inputs given (pass image files or folders, or --demo)")
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
            _error(outcome.record["error"])
        if outcome.report is not None:
            typer.echo(outcome.report.to_json(indent=None) if as_json else _summary(outcome.report))

    if engine is EngineName.ray:
        from safeview.engines.ray_engine import run_ray

        for outcome in run_ray(jobs, output, options, viz, address=ray_address, workers=workers):
            report_outcome(outcome)
    else:
        with _progress(len(jobs)) as advance:

            def on_done(outcome: Outcome) -> None:
                report_outcome(outcome)
                advance()

            try:
                run_local(jobs, output, options, viz, on_done=on_done)
            except OutputFolderError as exc:
                _error(str(exc))
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


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A progress bar with rate and ETA on stderr (only for several inputs on a terminal)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class RateColumn(TaskProgressColumn):
        def render(self, task: Any) -> Any:
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} img/s" if speed else "-- img/s")

    progress = Progress(
        TextColumn("safeguarding"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=total < 2 or not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task("safeguarding", total=total)
        yield lambda: progress.advance(task)


@app.command()
def classify(
    inputs: Annotated[list[str], typer.Argument(help="Image files and/or folders.")],
    guard: Annotated[str, _guard_option("Classifier to run:")] = "open-nsfw",
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

    from safeview.batch import collect
    from safeview.pipeline import classify as run

    jobs, errors = collect(inputs)
    for message in errors:
        _error(message)
    failures = len(errors)
    table = Table("input", "flagged", "scores", title=f"guard: {guard}")
    for job in jobs:
        if job.error:  # refused before decoding (a symbolic link, a FIFO, a device)
            failures += 1
            _error(job.error)
            continue
        try:
            report = run(
                job.source or job.pixels,
                guard,
                threshold=threshold,
                device=device,
                name=job.name,
            )
        except (ImageInputError, ValueError, OSError) as exc:
            failures += 1
            _error(" ".join(str(exc).split()))
            continue
        except Exception as exc:  # one input must not stop the others
            failures += 1
            _error(f"{job.name}: {type(exc).__name__}: {' '.join(str(exc).split())}")
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


def _backend_options(
    backend: str,
    model: str | None,
    base_url: str | None,
    api_key: str | None,
    checkpoint: str | None,
    device: str | None,
) -> dict[str, Any]:
    if backend == "openai":
        return {"base_url": base_url, "model": model, "api_key": api_key}
    if backend == "instructblip":
        return {"model": model, "checkpoint": checkpoint}
    return {}


ModelOption = Annotated[
    str | None,
    typer.Option("--model", help="instructblip: hub id or folder; openai: the served model name."),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        help="openai: server base URL, e.g. http://127.0.0.1:8000/v1 (or SAFEVIEW_OPENAI_BASE_URL)."
    ),
]
ApiKeyOption = Annotated[
    str | None, typer.Option(help="openai: API key (or SAFEVIEW_OPENAI_API_KEY).")
]
CheckpointOption = Annotated[
    str | None,
    typer.Option(
        "--instructblip-checkpoint",
        help="instructblip: a folder written by 'safeview vlm finetune'.",
    ),
]


@app.command()
def explain(
    input_path: Annotated[str, typer.Argument(metavar="INPUT", help="The image to explain.")],
    backend: Annotated[
        str,
        typer.Option(
            help="grounded (offline evidence), instructblip, or openai (a server).",
            callback=_registered("rationale"),
        ),
    ] = "grounded",
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    instructblip_checkpoint: CheckpointOption = None,
    questions: Annotated[
        bool, typer.Option("--questions", help="Also answer the category's moderator questions.")
    ] = False,
    guard: Annotated[
        list[str] | None,
        typer.Option(
            help="Guard(s) whose output conditions the VLM (a name or a guard.pt), repeatable.",
            callback=_check_guard,
        ),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="A policy JSON file (taxonomy, questions, templates).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rationale as JSON.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    num_beams: Annotated[int, typer.Option(min=1, help="instructblip: beam width.")] = 5,
    max_length: Annotated[
        int, typer.Option(min=8, help="instructblip: maximum tokens, prompt included.")
    ] = 512,
    repetition_penalty: Annotated[
        float, typer.Option(help="instructblip: repetition penalty.")
    ] = 1.5,
) -> None:
    """Say why an image is unsafe, grounded in its attributes.

    The grounded backend works offline from the guards' evidence (and says which moderator
    questions it cannot answer); instructblip and openai ask a vision-language model whose
    instruction is conditioned on what the guards predicted.
    """
    from safeview.rationale import explain as run
    from safeview.rationale.openai_backend import RationaleError

    options = _backend_options(backend, model, base_url, api_key, instructblip_checkpoint, device)
    if backend == "instructblip":
        from safeview.rationale.instructblip import GenerationSettings

        options["generation"] = GenerationSettings(
            num_beams=num_beams, max_length=max_length, repetition_penalty=repetition_penalty
        )
    try:
        result = run(
            input_path,
            backend,
            guards=list(guard or []) or None,
            questions=questions,
            policy=str(policy) if policy else None,
            device=device,
            **options,
        )
    except (ImageInputError, ValueError, OSError, RationaleError) as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(result.text)
    for answer in result.answers:
        typer.echo(f"- {answer.question}\n  {answer.answer} [{answer.source}]")


class BackboneName(StrEnum):
    efficientnet_lite0 = "efficientnet-lite0"
    resnet50 = "resnet50"
    open_nsfw = "open-nsfw"


def _bars() -> Any:
    """Rich progress bars on stderr (stage, bar, done/total, elapsed, ETA); off when stderr is
    not a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description:>12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not sys.stderr.isatty(),
    )


@contextmanager
def _stages() -> Iterator[Callable[[str, int, int], None]]:
    """Progress bars for named stages of work (decode, epoch N, embed...) on stderr."""
    progress = _bars()
    tasks: dict[str, Any] = {}

    def advance(stage: str, n: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.advance(tasks[stage], n)

    with progress:
        yield advance


def _metrics_line(values: dict[str, Any]) -> str:
    auroc = values.get("auroc")
    return (
        f"accuracy {values['accuracy']:.3f}  F1 {values['f1']:.3f}  "
        f"AUROC {'n/a' if auroc is None else f'{auroc:.3f}'}  (n={values['n']})"
    )


@app.command()
def train(
    data: Annotated[
        Path,
        typer.Argument(
            help="Image folder: safe/ + unsafe/, safe/ + CATEGORY/ (one folder per category), "
            "or CATEGORY/safe + CATEGORY/unsafe."
        ),
    ],
    category: Annotated[str, typer.Option(help="The category this guard flags.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Checkpoint to write (use as --guard FILE).")
    ] = Path("guard.pt"),
    backbone: Annotated[
        BackboneName,
        typer.Option(
            help="efficientnet-lite0 (offline ImageNet weights), resnet50 (random init unless "
            "--weights), open-nsfw (open_nsfw's trunk)."
        ),
    ] = BackboneName.efficientnet_lite0,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe", help="Lightweight guard: logistic regression on frozen embeddings."
        ),
    ] = False,
    weights: Annotated[
        Path | None, typer.Option(help="Starting weights for the backbone (a state dict file).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Fine-tuning epochs.")] = 5,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    learning_rate: Annotated[
        float, typer.Option("--lr", min=0.0, help="Backbone learning rate (head: 10x).")
    ] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed of the 80/10/10 split and of training.")] = 0,
    resume: Annotated[
        bool, typer.Option(help="Continue from OUTPUT.state after an interruption.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Train a guard for one category and keep the best validation checkpoint.

    Splits the images 80/10/10 (stratified, --seed), fine-tunes the backbone with a linear head
    (or fits a linear probe with --probe), and reports accuracy, F1 and AUROC on the test split.
    The checkpoint is a guard: `safeview safeguard IMAGES --guard OUTPUT`.
    """
    from safeview.train import TrainConfig, find_dataset, train_guard

    if weights is not None and not weights.is_file():
        _error(f"--weights {weights} does not exist")
        raise typer.Exit(2)
    try:
        dataset = find_dataset(data, category)
    except ValueError as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    n_safe = int((dataset.labels == 0).sum())
    typer.echo(
        f"{data}: {n_safe} safe, {len(dataset.labels) - n_safe} {category} ({dataset.layout})"
        + (f"; left out: {', '.join(dataset.ignored)}" if dataset.ignored else ""),
        err=True,
    )
    config = TrainConfig(
        category=category,
        backbone=backbone.value,
        probe=probe,
        weights=str(weights) if weights else None,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        device=device,
    )
    try:
        with _stages() as progress:
            result = train_guard(dataset, output, config, resume=resume, progress=progress)
    except (ValueError, OSError) as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        state = output.with_name(output.name + ".state")
        hint = f"; rerun the same command to resume from {state}" if state.exists() else ""
        _error(f"interrupted{hint}")
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "schema_version": "1.0",
                    "output": str(result.output),
                    "kind": result.kind,
                    "metrics": result.metrics,
                    "split": result.split_sizes,
                    "best_epoch": result.best_epoch,
                    "history": result.history,
                    "seconds": result.seconds,
                },
                indent=2,
            )
        )
        return
    if result.resumed_from:
        typer.echo(f"resumed after epoch {result.resumed_from}", err=True)
    for row in result.history:
        typer.echo(
            f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, val loss "
            f"{row['val_loss']:.4f}, val accuracy {row['val_accuracy']:.3f}"
        )
    best = f", best epoch {result.best_epoch}" if result.best_epoch else ""
    typer.echo(f"test ({result.kind}{best}): {_metrics_line(result.metrics['test'])}")
    typer.echo(
        f"saved {result.output} ({result.seconds:.1f} s); use it with "
        f"`safeview safeguard IMAGES --guard {result.output}`"
    )


pairs_app = typer.Typer(
    help="SafetyPairs: counterfactual image pairs, a pair benchmark, and augmentation.",
    no_args_is_help=True,
)
app.add_typer(pairs_app, name="pairs")


class EditorName(StrEnum):
    obfuscate = "obfuscate"
    inpaint = "inpaint"
    diffusers = "diffusers"


@contextmanager
def _counter(label: str) -> Iterator[Callable[[int, int], None]]:
    """One progress bar, updated with (done, total)."""
    progress = _bars()
    task: list[Any] = []

    def update(done: int, total: int) -> None:
        if not task:
            task.append(progress.add_task(label, total=total))
        progress.update(task[0], completed=done, total=total)

    with progress:
        yield update


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
        _error(f"{output} exists and is not empty")
        raise typer.Exit(2)
    try:
        with _counter("pasting") as update:
            done = [0]

            def advance(n: int) -> None:
                done[0] += n
                update(done[0], limit or done[0])

            counts = make_synthetic(source, output, category, seed, limit, advance)
    except (ValueError, ImageInputError) as exc:
        _error(str(exc))
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
    guard: Annotated[str, _guard_option("Guard that verifies the label flip:")] = "open-nsfw",
    policy: Annotated[
        Path | None,
        typer.Option(
            help="Policy text file, or JSON ({'policy', 'instruction'} or a safeview "
            "policy); default: the built-in policy for the category."
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
        typer.Option(help="obfuscate: how regions are obfuscated.", callback=_registered("style")),
    ] = "inpaint",
    segmenter: Annotated[
        str,
        typer.Option(
            help="obfuscate: candidate regions (bass-guided: small, tight edits).",
            callback=_registered("segmenter"),
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
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Guard threshold.")] = 0.5,
    ssim_threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Minimum SSIM outside the edit mask.")
    ] = 0.95,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Edit each unsafe image into a safe counterpart and keep the verified pairs.

    A pair is kept when the guard flags the original, does not flag the edit, and the image is
    unchanged outside the edit mask (SSIM >= --ssim-threshold). Writes OUTPUT/pairs.jsonl (every
    image, kept or rejected with the reason), OUTPUT/images/, OUTPUT/masks/, summary.json and
    sheet.png (kept pairs, the unsafe side pixelated). A rerun resumes.
    """
    from safeview.guards import load_guard
    from safeview.pairs import make_editor, make_pairs

    options: dict[str, Any] = {}
    if editor is EditorName.obfuscate:
        try:
            extra = _parse_options(segmenter_option or [])
        except ValueError as exc:
            _error(str(exc))
            raise typer.Exit(2) from None
        options = {
            "style": style,
            "threshold": threshold,
            "segmenter": segmenter,
            **extra,
        }
    elif editor is EditorName.inpaint:
        options = {"mask_fraction": mask_fraction}
    else:
        if not model:
            _error("--editor diffusers needs --model (a pipeline folder or cached hub id)")
            raise typer.Exit(2)
        options = {
            "model": model,
            "steps": steps,
            "size": size,
            "mask_fraction": mask_fraction,
            "device": device,
        }
    try:
        chosen = make_editor(editor.value, **options)
        loaded = load_guard(guard, device)
        trained_for = getattr(loaded, "category", None)
        if trained_for is not None and trained_for != category:
            raise ValueError(f"guard {guard} was trained for {trained_for!r}, not {category!r}")
        with _counter("editing") as update:
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
                progress=update,
            )
    except (ValueError, OSError) as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        reasons = "; ".join(f"{n}x {r}" for r, n in summary["rejection_reasons"].items())
        typer.echo(
            f"{summary['kept']} pair(s) kept, {summary['rejected']} rejected, "
            f"{summary['failed']} failed of {summary['sources']} in {output / 'pairs.jsonl'}"
            + (f" (rejected: {reasons})" if reasons else "")
        )
    if summary["failed"]:
        raise typer.Exit(1)


@pairs_app.command("eval")
def pairs_eval(
    pairs: Annotated[Path, typer.Argument(metavar="PAIRS", help="A folder from `pairs make`.")],
    guard: Annotated[str, _guard_option("Guard to benchmark:")] = "open-nsfw",
    vlm: Annotated[
        str | None,
        typer.Option(
            help="Benchmark a VLM instead of the guard: openai or instructblip.",
            callback=_registered("rationale"),
        ),
    ] = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    instructblip_checkpoint: CheckpointOption = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Guard threshold.")] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Benchmark a guard or a VLM on pairs: pair accuracy, per category, the misses.

    Pair accuracy: the unsafe image called unsafe and its safe counterpart safe. Also image
    accuracy, unsafe recall and safe specificity, per category, and the pairs it gets wrong.
    """
    from rich.console import Console
    from rich.table import Table

    from safeview.guards import load_guard
    from safeview.pairs import GuardJudge, VLMJudge, evaluate_pairs
    from safeview.rationale.openai_backend import RationaleError

    try:
        if vlm is not None:
            if vlm == "grounded":
                raise ValueError("--vlm must be openai or instructblip (grounded is not a VLM)")
            judge: Any = VLMJudge(
                vlm,
                **_backend_options(vlm, model, base_url, api_key, instructblip_checkpoint, device),
            )
        else:
            judge = GuardJudge(load_guard(guard, device), threshold)
        with _counter("judging") as update:
            result = evaluate_pairs(pairs, judge, progress=update)
    except (ValueError, OSError, ImageInputError, RationaleError) as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    flags = getattr(getattr(judge, "guard", None), "unsafe_category", None)
    if flags is not None and flags not in result["per_category"]:
        typer.echo(
            f"note: {result['judge']} flags {flags!r}, the pairs are "
            f"{', '.join(map(repr, result['per_category']))}: it is judged on another category",
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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Measure what the pairs add to a lightweight guard's training data.

    Trains a linear probe with and without the pairs at several fractions of the training split
    (the same split as `safeview train --seed`; only pairs made from training images are added);
    writes the table (augment.md, augment.json) and the plot (augment.png).
    """
    from safeview.pairs.augment import markdown_table, plot, run_experiment
    from safeview.train import find_dataset

    try:
        values = tuple(float(v) for v in fractions.split(","))
        if not values or not all(0.0 < v <= 1.0 for v in values):
            raise ValueError(f"--fractions must be in (0, 1], got {fractions}")
    except ValueError as exc:
        _error(f"bad --fractions: {exc}")
        raise typer.Exit(2) from None
    try:
        dataset = find_dataset(data, category)
        with _stages() as progress:
            result = run_experiment(
                dataset,
                pairs,
                backbone.value,
                values,
                tuple(range(seeds)),
                seed,
                device,
                progress,
            )
    except (ValueError, OSError, ImageInputError) as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    from safeview.io import atomic_write

    table = markdown_table(result)
    atomic_write(output / "augment.json", json.dumps(result, indent=2).encode())
    atomic_write(output / "augment.md", table.encode())
    plot(result, output / "augment.png")
    typer.echo(table)
    typer.echo(
        f"{result['pairs']['in_training_split']} pair(s) from training images used, "
        f"{result['pairs']['excluded_val_or_test']} from validation/test left out; "
        f"wrote {output}/augment.{{json,md,png}}"
    )


vlm_app = typer.Typer(
    help="Train and evaluate the classifier-conditioned VLM.", no_args_is_help=True
)
app.add_typer(vlm_app, name="vlm")


@vlm_app.command("finetune")
def vlm_finetune(
    data: Annotated[Path, typer.Argument(help="JSONL of {image, question, answer} records.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the model.")],
    model: ModelOption = None,
    guard: Annotated[str, _guard_option("Guard that conditions each instruction:")] = "open-nsfw",
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    learning_rate: Annotated[float, typer.Option("--lr")] = 1e-5,
    save_every: Annotated[int, typer.Option(min=1, help="Steps between training states.")] = 50,
    resume: Annotated[bool, typer.Option(help="Continue from OUTPUT's training state.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Fine-tune the InstructBLIP Q-Former on guard-conditioned instructions (answer-only loss)."""
    from safeview.rationale import Context, condition, load_policy, predictions
    from safeview.rationale.finetune import finetune, read_records
    from safeview.rationale.instructblip import DEFAULT_MODEL, load_instructblip

    try:
        records = read_records(data)
        network, processor = load_instructblip(model or DEFAULT_MODEL, device)
    except (ImageInputError, ValueError, OSError) as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    policy = load_policy()

    def conditioner(pixels: Any, question: str) -> str:
        context = Context(pixels, predictions(pixels, [guard], policy, device), policy)
        return condition(question, context)[0]

    def progress(step: int, total: int, loss: float) -> None:
        typer.echo(f"step {step}/{total} loss {loss:.4f}", err=True)

    losses = finetune(
        network,
        processor,
        records,
        conditioner,
        output,
        epochs=epochs,
        learning_rate=learning_rate,
        save_every=save_every,
        resume=resume,
        progress=progress,
    )
    if losses:
        typer.echo(
            f"trained {len(losses)} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
            f"model saved to {output} (use --instructblip-checkpoint {output})"
        )
    else:
        typer.echo(f"nothing to do: {output} has already finished {epochs} epoch(s)")


@vlm_app.command("eval")
def vlm_eval(
    folder: Annotated[
        Path,
        typer.Argument(
            help="FOLDER/<category>/*.jpg, categories as in the "
            "policy (sexually_explicit, cyberbullying, "
            "self_harm)."
        ),
    ],
    backend: Annotated[
        list[str] | None,
        typer.Option(
            help="Backend(s) to evaluate (repeatable).", callback=_registered("rationale")
        ),
    ] = None,
    judge: Annotated[str, typer.Option(help="rubric (offline keywords) or openai (LLM judge).")] = (
        "rubric"
    ),
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    instructblip_checkpoint: CheckpointOption = None,
    limit: Annotated[int | None, typer.Option(help="At most N images per category.")] = None,
    guard: Annotated[str, _guard_option("Guard that conditions the questions:")] = "open-nsfw",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Hit rate of unsafe attributes in answers to generic questions, with and without
    conditioning, per category and backend (the paper's Table 1 protocol)."""
    from safeview.rationale import Context, load_policy, make_backend, predictions
    from safeview.rationale.evaluate import evaluate, table
    from safeview.rationale.openai_backend import RationaleError

    if judge not in ("rubric", "openai"):
        _error(f"unknown judge {judge!r} (rubric or openai)")
        raise typer.Exit(2)
    policy = load_policy()
    names = list(backend or ["grounded"])
    try:
        backends = {
            name: make_backend(
                name,
                **_backend_options(name, model, base_url, api_key, instructblip_checkpoint, device),
            )
            for name in names
        }
        judge_backend = (
            make_backend("openai", base_url=base_url, model=model, api_key=api_key)
            if judge == "openai"
            else None
        )
        rows = evaluate(
            folder,
            backends,
            policy,
            lambda pixels: Context(pixels, predictions(pixels, [guard], policy, device), policy),
            judge=judge_backend,
            limit=limit,
        )
    except (ImageInputError, ValueError, OSError, RationaleError) as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    typer.echo(table(rows))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes; each loads the models once.")
    ] = 1,
) -> None:
    """Run the HTTP service (moderation API, safeguarding, review page).

    POST /v1/moderations (OpenAI-compatible, images), POST /v1/safeguard, GET /healthz, /readyz,
    the review page at / and the API docs at /docs.

    Limits come from the environment (the table in safeview.service.app lists all with their
    defaults): SAFEVIEW_API_KEY (require Authorization: Bearer KEY), SAFEVIEW_MAX_BODY_BYTES,
    SAFEVIEW_BODY_TIMEOUT_S, SAFEVIEW_MAX_INFLIGHT_BYTES, SAFEVIEW_MAX_PIXELS, SAFEVIEW_MAX_INPUTS,
    SAFEVIEW_MAX_PARTS, SAFEVIEW_TIMEOUT_S, SAFEVIEW_MAX_CONCURRENCY, SAFEVIEW_MAX_QUEUE,
    SAFEVIEW_ATTRIBUTIONS, SAFEVIEW_RATIONALES, SAFEVIEW_INSTRUCTBLIP_MODEL, SAFEVIEW_DEVICE,
    SAFEVIEW_PRELOAD (guards loaded at start), SAFEVIEW_GUARD_FILES (comma-separated checkpoints
    from `safeview train`, offered as guards named by their file stem); connection limits:
    SAFEVIEW_HEADER_TIMEOUT_S, SAFEVIEW_KEEP_ALIVE_S, SAFEVIEW_MAX_HEAD_BYTES,
    SAFEVIEW_MAX_CONNECTIONS. The service never downloads a model (HF_HUB_OFFLINE=1).
    """
    import os

    import uvicorn

    from safeview.service.server import uvicorn_options

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["SAFEVIEW_WORKERS"] = str(workers)  # each worker takes its share of the cores
    uvicorn.run(
        "safeview.service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        **uvicorn_options(),
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the report."""
    from safeview.report import JSON_SCHEMA

    typer.echo(json.dumps(JSON_SCHEMA, indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
