"""`latplan` command line: a thin Typer layer over library calls (no logic here).

Each sub-module registers its commands; errors derived from LatplanError are printed as
one clear message (exit code 2), never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from latplan.errors import LatplanError

app = typer.Typer(
    name="latplan",
    help="Plan image-guided local cancer therapies and support the tumor board.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    from latplan.cli import (
        case_commands,
        case_import_commands,
        cohort_commands,
        followup_commands,
        imaging_commands,
        physics_commands,
        plan_commands,
        web_commands,
    )

    for module in (case_commands, imaging_commands, physics_commands, plan_commands, web_commands, followup_commands):
        module.register(app)
    case_import_commands.register(app)
    cohort_commands.register(app)


_register_all()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except LatplanError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
