"""The ``safeview`` command line: one module per command group, each parsing and printing only.

``common`` holds what they share (guard and registry checks, option types, errors, progress
bars); the work is done by the library (``safeview.batch``, ``pipeline``, ``train``, ``pairs``,
``rationale``, ``service``).
"""

from __future__ import annotations

import typer

from safeview.cli import explain, pairs, safeguard, serve, train

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

# Registered in the order `safeview --help` lists them.
app.command()(safeguard.safeguard)
app.command()(safeguard.classify)
app.command()(explain.explain)
app.command()(train.train)
app.add_typer(pairs.pairs_app, name="pairs")
app.add_typer(explain.vlm_app, name="vlm")
app.command()(serve.serve)
app.command()(serve.schema)


def main() -> None:
    app()


__all__ = ["app", "main"]
