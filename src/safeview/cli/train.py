"""``safeview train``: a guard for one category (of the safeguarding policy, or of its own)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from safeview.cli.common import DeviceOption, check_policy, error, progress_bars


class BackboneName(StrEnum):
    efficientnet_lite0 = "efficientnet-lite0"
    resnet50 = "resnet50"
    open_nsfw = "open-nsfw"


def _metrics_line(values: dict[str, Any]) -> str:
    auroc = values.get("auroc")
    return (
        f"accuracy {values['accuracy']:.3f}  F1 {values['f1']:.3f}  "
        f"AUROC {'n/a' if auroc is None else f'{auroc:.3f}'}  (n={values['n']})"
    )


def train(
    data: Annotated[
        Path,
        typer.Argument(
            help="Image folder: safe/ + unsafe/, safe/ + CATEGORY/ (one folder per category), "
            "or CATEGORY/safe + CATEGORY/unsafe."
        ),
    ],
    category: Annotated[
        str,
        typer.Option(
            help="The category this guard flags: a category of --policy (an id or name, e.g. "
            "self-harm), or, without --policy, any name (a guard for --guard only)."
        ),
    ],
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
    policy: Annotated[
        str | None,
        typer.Option(
            help="The safeguarding policy the guard is for: 'default' (built in) or a policy "
            "JSON file; --category must be one of its categories. After training, "
            "OUTPUT.policy.json (OUTPUT's suffix replaced) is written: this policy with the "
            "checkpoint added to the category's guards. Default: the built-in policy, when "
            "--category is one of its categories.",
            callback=check_policy,
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    device: DeviceOption = "auto",
) -> None:
    """Train a guard for one category and keep the best validation checkpoint.

    Splits the images 80/10/10 (stratified, --seed), fine-tunes the backbone with a linear head
    (or fits a linear probe with --probe), and reports accuracy, F1 and AUROC on the test split.
    The checkpoint is a guard: `safeview safeguard IMAGES --guard OUTPUT`. When --category is a
    category of the policy (--policy, or the built-in one), OUTPUT.policy.json is that policy
    with the checkpoint as one more judge of the category (threshold 0.5; a relative path, read
    beside the policy file): `safeview classify IMAGES --policy OUTPUT.policy.json`.
    """
    from safeview.policy import add_guard, resolve_policy
    from safeview.train import TrainConfig, find_dataset, train_guard

    if weights is not None and not weights.is_file():
        error(f"--weights {weights} does not exist")
        raise typer.Exit(2)
    chosen = resolve_policy(policy)
    judged = chosen.category_for("", category)
    if judged is None and policy is not None:
        error(
            f"--category {category!r} is not a category of policy {chosen.name} (its "
            f"categories: {', '.join(chosen.categories)}; their names work too, e.g. self-harm)"
        )
        raise typer.Exit(2)
    try:
        dataset = find_dataset(data, category)
    except ValueError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    n_safe = int((dataset.labels == 0).sum())
    typer.echo(
        f"{data}: {n_safe} safe, {len(dataset.labels) - n_safe} {category} ({dataset.layout})"
        + (f"; left out: {', '.join(dataset.ignored)}" if dataset.ignored else ""),
        err=True,
    )
    if judged is None:
        typer.echo(
            f"note: {category!r} is not a category of the built-in policy "
            f"({', '.join(chosen.categories)}): the guard is for --guard only; no policy file "
            "is written",
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
        with progress_bars() as bars:
            result = train_guard(dataset, output, config, resume=resume, progress=bars.advance)
    except (ValueError, OSError) as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        state = output.with_name(output.name + ".state")
        hint = f"; rerun the same command to resume from {state}" if state.exists() else ""
        error(f"interrupted{hint}")
        raise typer.Exit(130) from None
    policy_file = None
    if judged is not None:
        try:
            policy_file = add_guard(
                policy,
                judged.id,
                result.output,
                category,
                config.threshold,
                Path(result.output).with_suffix(".policy.json"),
            )
        except (ValueError, OSError) as exc:
            error(f"saved {result.output}, but could not write its policy file: {exc}")
            raise typer.Exit(1) from None
    if as_json:
        summary = result.to_dict()
        summary["policy_file"] = str(policy_file) if policy_file is not None else None
        typer.echo(json.dumps(summary, indent=2))
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
    if policy_file is not None and judged is not None:
        typer.echo(
            f"wrote {policy_file}: policy {chosen.name} with {Path(result.output).name} as a "
            f"judge of {judged.id} (threshold {config.threshold}); use it with `safeview "
            f"classify IMAGES --policy {policy_file}`, or copy that judge into the "
            f"'guards' of {judged.id} in your policy file"
        )
