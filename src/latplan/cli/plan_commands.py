"""CLI commands `latplan plan` and `latplan demo` ([E]): parse, call the pipeline, print.

No logic here: planning a case folder is :func:`latplan.pipeline.plan_case_folder`, the demo is
:func:`latplan.pipeline.run_demo`; progress is :func:`latplan.pipeline.terminal_progress` (a rich
bar in a terminal, plain lines when stdout is not a TTY).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def register(app: typer.Typer) -> None:
    """Add `plan` and `demo` to the main app."""

    @app.command("plan")
    def plan(
        case_dir: Annotated[Path, typer.Argument(help="Case folder (case.yaml, image, labels).", exists=True,
                                                 file_okay=False, dir_okay=True, readable=True)],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for plan.json and the reports.")],
        rules: Annotated[list[Path] | None, typer.Option("--rules", help="Extra/overriding rule file (repeatable).",
                                                          exists=True, dir_okay=False)] = None,
        no_simulate: Annotated[bool, typer.Option("--no-simulate", help="Assess eligibility only; skip simulations.")] = False,
        no_pdf: Annotated[bool, typer.Option("--no-pdf", help="Write HTML only (faster).")] = False,
        workers: Annotated[int, typer.Option("--workers", min=1,
                                             help="Processes for the lesion × modality simulations.")] = 1,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty output folder that latplan "
                                                "did not write (a folder latplan wrote is always replaced whole).")] = False,
    ) -> None:
        """Plan one case: plan.json, report.html/.pdf (board) and patient.html/.pdf (option grid)."""
        from latplan.pipeline import PlanOptions, plan_case_folder, terminal_progress

        options = PlanOptions(rule_paths=tuple(rules or ()), simulate=not no_simulate, pdf=not no_pdf,
                              workers=workers, overwrite=overwrite)
        with terminal_progress() as progress:
            result = plan_case_folder(case_dir, out, options, progress)
        table = Table(title=f"latplan plan · {result.proposal.plan_json['patient']['id']}")
        table.add_column("output")
        table.add_column("path")
        for key, path in result.files.items():
            table.add_row(key.replace("_", "."), str(path))
        Console().print(table)

    @app.command("demo")
    def demo(
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("latplan-demo"),
        cases: Annotated[list[str] | None, typer.Option("--cases", help="Demo case name (repeatable; default all).")] = None,
        no_simulate: Annotated[bool, typer.Option("--no-simulate", help="Assess eligibility only; skip simulations.")] = False,
        no_pdf: Annotated[bool, typer.Option("--no-pdf", help="Write HTML only (faster).")] = False,
        workers: Annotated[int | None, typer.Option("--workers", min=1,
                                                    help="Demo cases planned at once (default: up to 4 cores).")] = None,
    ) -> None:
        """Build every demo case, plan it, and write its reports plus OUT/index.html linking them."""
        from latplan.pipeline import run_demo, terminal_progress

        with terminal_progress() as progress:
            result = run_demo(out, cases or None, progress=progress, simulate=not no_simulate, pdf=not no_pdf,
                              workers=workers or _default_workers())
        table = Table(title="latplan demo")
        table.add_column("case")
        table.add_column("board report")
        table.add_column("status")
        for name, files in result.reports.items():
            table.add_row(name, str(files.get("report_html", "")), "ok")
        for name, err in result.errors.items():
            table.add_row(name, "—", f"[red]failed: {err}[/red]")
        Console().print(table)
        Console().print(f"open {result.index_html}")
