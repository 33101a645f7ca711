"""CLI commands `latplan plan` and `latplan demo` ([E]): parse, call the library, print.

No logic here: planning is :func:`latplan.board.plan_case`, reports are
:func:`latplan.report.write_reports`, the demo is :func:`latplan.report.run_demo`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

_console = Console(stderr=True)


def _progress_bar() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    console=_console, transient=False)


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
    ) -> None:
        """Plan one case: plan.json, report.html/.pdf (board) and patient.html/.pdf (option grid)."""
        from latplan.board import plan_case
        from latplan.imaging.case_folder import load_case_folder
        from latplan.report import write_reports

        with _progress_bar() as bar:
            task = bar.add_task("loading the case folder", total=None)
            case = load_case_folder(case_dir)

            def board_progress(*args: Any, **kwargs: Any) -> None:
                msg = next((a for a in args if isinstance(a, str)), kwargs.get("message", "planning"))
                bar.update(task, description=str(msg))

            bar.update(task, description="planning")
            proposal = plan_case(case, rule_paths=list(rules) if rules else None, simulate=not no_simulate,
                                 progress=board_progress)
            bar.update(task, description="writing reports")
            files = write_reports(proposal, out, pdf=not no_pdf)
            bar.update(task, description="done", total=1, completed=1)
        table = Table(title=f"latplan plan · {case.patient.id}")
        table.add_column("output")
        table.add_column("path")
        for key, path in files.items():
            table.add_row(key.replace("_", "."), str(path))
        Console().print(table)

    @app.command("demo")
    def demo(
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("latplan-demo"),
        cases: Annotated[list[str] | None, typer.Option("--cases", help="Demo case name (repeatable; default all).")] = None,
        no_simulate: Annotated[bool, typer.Option("--no-simulate", help="Assess eligibility only; skip simulations.")] = False,
        no_pdf: Annotated[bool, typer.Option("--no-pdf", help="Write HTML only (faster).")] = False,
    ) -> None:
        """Build every demo case, plan it, and write its reports plus OUT/index.html linking them."""
        from latplan.report import run_demo

        with _progress_bar() as bar:
            task = bar.add_task("demo", total=None)

            def progress(message: str, done: int, total: int) -> None:
                bar.update(task, description=message, completed=done, total=total)

            result = run_demo(out, cases or None, progress=progress, simulate=not no_simulate, pdf=not no_pdf)
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
