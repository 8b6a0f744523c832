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
    bass = "bass"
    bass_guided = "bass-guided"


class StyleName(StrEnum):
    blur = "blur"
    pixelate = "pixelate"
    fill = "fill"
    inpaint = "inpaint"


class BackendName(StrEnum):
    grounded = "grounded"
    instructblip = "instructblip"
    openai = "openai"


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
    segmenter_option: Annotated[
        list[str] | None,
        typer.Option(
            "--segmenter-option",
            help="KEY=VALUE passed to the segmenter, repeatable (e.g. n_segments=40, i_std=0.03).",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[
        int, typer.Option(min=1, help="Candidate images per forward pass in the search.")
    ] = 4,
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
        BackendName | None,
        typer.Option(help="Also explain why (report key 'rationale') with this backend."),
    ] = None,
) -> None:
    """Obfuscate the minimal unsafe regions of each image.

    Writes OUTPUT/NAME.EXT (obfuscated, metadata stripped) and OUTPUT/NAME.json (the report) for
    every input; files under a folder keep their path relative to it. OUTPUT/manifest.jsonl lists
    every input as ok or failed; a rerun after an interruption skips what is done. Exits 1 if any
    input failed; the other inputs are still processed.
    """
    from safeview.batch import collect, run_local

    try:
        segmenter_options = _parse_options(segmenter_option or [])
        from safeview.segmentation import make_segmenter

        make_segmenter(segmenter.value, **segmenter_options)
    except ValueError as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    jobs, errors = collect(list(inputs or []), demo)
    for message in errors:
        _error(message)
    if not jobs:
        if not errors:
            _error("no inputs given (pass image files or folders, or --demo)")
        raise typer.Exit(2 if not errors else 1)
    options: dict[str, Any] = {
        "guard": guard.value,
        "attribution": attribution.value,
        "segmenter": segmenter.value,
        "segmenter_options": segmenter_options,
        "style": style.value,
        "threshold": threshold,
        "max_regions": max_regions,
        "prune": not no_prune,
        "on_failure": on_failure.value,
        "device": device,
        "batch_size": batch_size,
        "rationale": rationale.value if rationale else None,
    }
    failures = len(errors)
    skipped = 0

    def report_outcome(outcome: Outcome) -> None:
        nonlocal failures, skipped
        if outcome.skipped:
            skipped += 1
            return
        if not outcome.ok:
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

            run_local(jobs, output, options, viz, on_done=on_done)
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

    from safeview.batch import collect
    from safeview.pipeline import classify as run

    jobs, errors = collect(inputs)
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
        BackendName,
        typer.Option(help="grounded (offline evidence), instructblip, or openai (a server)."),
    ] = BackendName.grounded,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    instructblip_checkpoint: CheckpointOption = None,
    questions: Annotated[
        bool, typer.Option("--questions", help="Also answer the category's moderator questions.")
    ] = False,
    guard: Annotated[
        list[GuardName] | None, typer.Option(help="Guard(s) whose output conditions the VLM.")
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

    options = _backend_options(
        backend.value, model, base_url, api_key, instructblip_checkpoint, device
    )
    if backend is BackendName.instructblip:
        from safeview.rationale.instructblip import GenerationSettings

        options["generation"] = GenerationSettings(
            num_beams=num_beams, max_length=max_length, repetition_penalty=repetition_penalty
        )
    try:
        result = run(
            input_path,
            backend.value,
            guards=[g.value for g in guard or []] or None,
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


vlm_app = typer.Typer(
    help="Train and evaluate the classifier-conditioned VLM.", no_args_is_help=True
)
app.add_typer(vlm_app, name="vlm")


@vlm_app.command("finetune")
def vlm_finetune(
    data: Annotated[Path, typer.Argument(help="JSONL of {image, question, answer} records.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the model.")],
    model: ModelOption = None,
    guard: Annotated[GuardName, typer.Option(help="Guard that conditions each instruction.")] = (
        GuardName.open_nsfw
    ),
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
        context = Context(pixels, predictions(pixels, [guard.value], policy, device), policy)
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
        list[BackendName] | None, typer.Option(help="Backend(s) to evaluate (repeatable).")
    ] = None,
    judge: Annotated[str, typer.Option(help="rubric (offline keywords) or openai (LLM judge).")] = (
        "rubric"
    ),
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    instructblip_checkpoint: CheckpointOption = None,
    limit: Annotated[int | None, typer.Option(help="At most N images per category.")] = None,
    guard: Annotated[GuardName, typer.Option(help="Guard that conditions the questions.")] = (
        GuardName.open_nsfw
    ),
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
    names = [b.value for b in backend or [BackendName.grounded]]
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
            lambda pixels: Context(
                pixels, predictions(pixels, [guard.value], policy, device), policy
            ),
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
    """Run the HTTP service: POST /v1/moderations (OpenAI-compatible, images), POST /v1/safeguard,
    GET /healthz, /readyz, the review page at / and the API docs at /docs.

    Limits come from the environment: SAFEVIEW_API_KEY (require Authorization: Bearer KEY),
    SAFEVIEW_MAX_BODY_BYTES, SAFEVIEW_MAX_PIXELS, SAFEVIEW_TIMEOUT_S, SAFEVIEW_MAX_CONCURRENCY,
    SAFEVIEW_MAX_QUEUE, SAFEVIEW_DEVICE, SAFEVIEW_PRELOAD (guards loaded at start).
    """
    import uvicorn

    uvicorn.run(
        "safeview.service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
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
