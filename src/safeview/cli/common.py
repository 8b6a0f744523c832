"""What the commands share: guard and registry checks, option types, errors, progress bars."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer


def check_guard(value: Any) -> Any:
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


def guard_option(
    help_text: str, without: str = "Without it, every category of --policy is checked."
) -> Any:
    return typer.Option(
        help=f"{help_text} open-nsfw, imagenet, or a guard.pt from `safeview train`. {without}",
        callback=check_guard,
        show_default=False,
    )


def check_policy(value: Any) -> Any:
    """``default`` or a readable policy file (validated before any work)."""
    if value is None:
        return value
    from safeview.policy import resolve_policy

    try:
        resolve_policy(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def policy_option() -> Any:
    return typer.Option(
        help="The policy checked when no --guard is given: 'default' (built in: every category "
        "with its offline guards and thresholds) or a policy JSON file of the same shape "
        "(categories, each with 'guards': [{guard, category, threshold}]).",
        callback=check_policy,
        show_default=False,
    )


#: The stage registries the CLI's choices come from (a registered plug-in is accepted too).
_REGISTRIES = {
    "attribution": ("safeview.attribution", "ATTRIBUTIONS"),
    "segmenter": ("safeview.segmentation", "SEGMENTERS"),
    "search": ("safeview.counterfactual", "SEARCHES"),
    "style": ("safeview.render", "RENDERERS"),
    "rationale": ("safeview.rationale", "RATIONALES"),
}


def registry(stage: str) -> Any:
    module, name = _REGISTRIES[stage]
    return getattr(importlib.import_module(module), name)


def registered(stage: str) -> Callable[[Any], Any]:
    """A callback accepting only names registered for ``stage`` (a usage error, exit 2)."""

    def check(value: Any) -> Any:
        chosen = registry(stage)
        for item in value if isinstance(value, list) else [value]:
            if item is not None and item not in chosen:
                raise typer.BadParameter(
                    f"unknown {chosen.kind} {item!r} (available: {', '.join(chosen.names())})"
                )
        return value

    return check


def error(message: str) -> None:
    """``error: MESSAGE`` on stderr."""
    typer.echo(f"error: {message}", err=True)


def parse_options(items: list[str], what: str = "segmenter") -> dict[str, Any]:
    """``["n_segments=40", "i_std=0.03"]`` -> ``{"n_segments": 40, "i_std": 0.03}``; ``true`` and
    ``false`` are booleans, ``null`` and ``none`` are None (``prune_passes=null``: no bound)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} option {item!r} is not KEY=VALUE")
        value: Any = raw.strip()
        for convert in (int, float):
            try:
                value = convert(raw)
                break
            except ValueError:
                continue
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        elif isinstance(value, str) and value.lower() in ("null", "none"):
            value = None
        options[key.strip()] = value
    return options


DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
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


class Bars:
    """Named progress bars: ``advance(stage, n, total)`` (the library's ``progress`` callbacks
    of named stages) or ``update(stage, done, total)`` (callbacks of ``(done, total)``)."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}

    def _task(self, stage: str, total: int | None) -> Any:
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        return self._tasks[stage]

    def advance(self, stage: str, n: int = 1, total: int | None = None) -> None:
        self._progress.advance(self._task(stage, total), n)

    def update(self, stage: str, done: int, total: int) -> None:
        self._progress.update(self._task(stage, total), completed=done, total=total)

    def counter(self, stage: str) -> Callable[[int, int], None]:
        """``update`` for one stage, as a ``(done, total)`` callback."""
        return lambda done, total: self.update(stage, done, total)


@contextmanager
def progress_bars(
    *, rate: bool = False, transient: bool = False, enabled: bool = True
) -> Iterator[Bars]:
    """Rich progress bars on stderr (stage, bar, done/total, [images/s,] elapsed, ETA); off when
    stderr is not a terminal or ``enabled`` is false."""
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

    columns: list[Any] = [TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn()]
    if rate:
        columns.append(RateColumn())
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    progress = Progress(
        *columns,
        console=Console(stderr=True),
        transient=transient,
        disable=not enabled or not sys.stderr.isatty(),
    )
    with progress:
        yield Bars(progress)
