"""``safeview explain`` and ``safeview vlm`` (finetune, eval): rationales."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from safeview.cli.common import (
    ApiKeyOption,
    BaseUrlOption,
    CheckpointOption,
    DeviceOption,
    ModelOption,
    check_guard,
    check_policy,
    error,
    guard_option,
    registered,
)
from safeview.io import ImageInputError


def explain(
    input_path: Annotated[str, typer.Argument(metavar="INPUT", help="The image to explain.")],
    backend: Annotated[
        str,
        typer.Option(
            help="grounded (offline evidence), instructblip, or openai (a server).",
            callback=registered("rationale"),
        ),
    ] = "grounded",
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    instructblip_checkpoint: CheckpointOption = None,
    questions: Annotated[
        bool,
        typer.Option(
            "--questions",
            help="Also answer every moderator question of the policy: yes / no / not covered, "
            "citing the detector or guard, its score and where in the image (grounded).",
        ),
    ] = False,
    guard: Annotated[
        list[str] | None,
        typer.Option(
            help="Guard(s) whose output conditions the VLM (a name or a guard.pt), repeatable.",
            callback=check_guard,
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="'default' or a policy JSON file (categories with their guards and thresholds, "
            "taxonomy, questions, templates). Without --guard, every guard of the policy "
            "conditions the rationale.",
            callback=check_policy,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rationale as JSON.")] = False,
    device: DeviceOption = "auto",
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
    from safeview.rationale import backend_options
    from safeview.rationale import explain as run
    from safeview.rationale.openai_backend import RationaleError

    options = backend_options(
        backend,
        model=model,
        base_url=base_url,
        api_key=api_key,
        checkpoint=instructblip_checkpoint,
        device=device,
    )
    if backend == "instructblip":
        from safeview.rationale.instructblip import GenerationSettings

        options["generation"] = GenerationSettings(
            num_beams=num_beams, max_length=max_length, repetition_penalty=repetition_penalty
        )
    options.pop("device", None)  # explain() hands its own device to the backend
    try:
        result = run(
            input_path,
            backend,
            guards=list(guard or []) or None,
            questions=questions,
            policy=policy,
            device=device,
            **options,
        )
    except (ImageInputError, ValueError, OSError, RationaleError) as exc:
        error(str(exc))
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


@vlm_app.command("finetune")
def vlm_finetune(
    data: Annotated[Path, typer.Argument(help="JSONL of {image, question, answer} records.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the model.")],
    model: ModelOption = None,
    guard: Annotated[str, guard_option("Guard that conditions each instruction:")] = "open-nsfw",
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    learning_rate: Annotated[float, typer.Option("--lr")] = 1e-5,
    save_every: Annotated[int, typer.Option(min=1, help="Steps between training states.")] = 50,
    resume: Annotated[bool, typer.Option(help="Continue from OUTPUT's training state.")] = True,
    device: DeviceOption = "auto",
) -> None:
    """Fine-tune the InstructBLIP Q-Former on guard-conditioned instructions (answer-only loss)."""
    from safeview.rationale import guard_conditioner
    from safeview.rationale.finetune import finetune, read_records
    from safeview.rationale.instructblip import DEFAULT_MODEL, load_instructblip

    try:
        records = read_records(data)
        network, processor = load_instructblip(model or DEFAULT_MODEL, device)
    except (ImageInputError, ValueError, OSError) as exc:
        error(str(exc))
        raise typer.Exit(1) from None

    def progress(step: int, total: int, loss: float) -> None:
        typer.echo(f"step {step}/{total} loss {loss:.4f}", err=True)

    losses = finetune(
        network,
        processor,
        records,
        guard_conditioner([guard], device=device),
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
        typer.Option(help="Backend(s) to evaluate (repeatable).", callback=registered("rationale")),
    ] = None,
    judge: Annotated[str, typer.Option(help="rubric (offline keywords) or openai (LLM judge).")] = (
        "rubric"
    ),
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    instructblip_checkpoint: CheckpointOption = None,
    limit: Annotated[int | None, typer.Option(help="At most N images per category.")] = None,
    guard: Annotated[str, guard_option("Guard that conditions the questions:")] = "open-nsfw",
    device: DeviceOption = "auto",
) -> None:
    """Hit rate of unsafe attributes in answers to generic questions, with and without
    conditioning, per category and backend (the paper's Table 1 protocol)."""
    from safeview.rationale import backend_options, guard_context, load_policy, make_backend
    from safeview.rationale.evaluate import evaluate, table
    from safeview.rationale.openai_backend import RationaleError

    if judge not in ("rubric", "openai"):
        error(f"unknown judge {judge!r} (rubric or openai)")
        raise typer.Exit(2)
    policy = load_policy()
    names = list(backend or ["grounded"])
    try:
        backends = {
            name: make_backend(
                name,
                **backend_options(
                    name,
                    model=model,
                    base_url=base_url,
                    api_key=api_key,
                    checkpoint=instructblip_checkpoint,
                    device=device,
                ),
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
            guard_context([guard], policy, device),
            judge=judge_backend,
            limit=limit,
        )
    except (ImageInputError, ValueError, OSError, RationaleError) as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    typer.echo(table(rows))
