"""CLI commands `latplan cohort synth|plan|report` ([O]): parse, call latplan.batch, print.

No logic here: the cohort run is :func:`latplan.batch.plan_cohort`, the synthetic cohort
:func:`latplan.batch.synth_cohort`, the results :func:`latplan.batch.runner.write_cohort_results`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from latplan.pipeline import PlainProgress, Progress

cohort_app = typer.Typer(help="Plan cohorts of case folders on Dask (docs/cohorts.md).", no_args_is_help=True)


@contextmanager
def _progress() -> Iterator[Progress]:
    """A rich bar when stdout is a terminal, else plain `[done/total] message` lines on stderr."""
    if not sys.stdout.isatty():
        yield PlainProgress()
        return
    console = Console(stderr=True)
    with RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bar:
        task = bar.add_task("cohort", total=None)

        def rich(message: str, done: int | None = None, total: int | None = None) -> None:
            if message.startswith("Dask dashboard"):
                console.print(message)
            bar.update(task, description=message, completed=done or 0, total=total)

        yield rich


@cohort_app.command("synth")
def synth_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the case folders into.")],
    n: Annotated[int, typer.Option("--n", help="Number of patients.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed (same seed: same cohort).")] = 0,
    voxel_mm: Annotated[float, typer.Option("--voxel-mm", help="Phantom voxel size (mm); coarse is fast.")] = 4.0,
    overwrite: Annotated[bool, typer.Option(help="Replace existing case folders of the same name.")] = False,
) -> None:
    """Write a synthetic cohort: phantom case folders with treatments.yaml and outcomes.yaml."""
    from latplan.batch.synth import synth_cohort

    folders = synth_cohort(out, n=n, seed=seed, voxel_mm=voxel_mm, overwrite=overwrite)
    typer.echo(f"wrote {len(folders)} case folders under {out}")


@cohort_app.command("plan")
def plan_cmd(
    cohort_dir: Annotated[Path, typer.Argument(help="Folder of case folders (each with case.yaml).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (cases/, cohort.parquet/.csv, index.html).")],
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 "
                                                  "(default: a LocalCluster on this machine).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="LocalCluster worker processes.")] = 2,
    threads_per_worker: Annotated[int, typer.Option("--threads-per-worker",
                                                    help="numba threads per case (one case per worker at a time).")] = 1,
    rules: Annotated[list[Path] | None, typer.Option("--rules", help="Extra/overriding rule file (repeatable).",
                                                     exists=True, dir_okay=False)] = None,
    no_simulate: Annotated[bool, typer.Option("--no-simulate", help="Assess eligibility only; skip simulations.")] = False,
    simulate: Annotated[list[str] | None, typer.Option("--simulate", help="Simulate only this modality (repeatable).")] = None,
    no_pdf: Annotated[bool, typer.Option("--no-pdf", help="Write HTML reports only (faster).")] = False,
) -> None:
    """Plan every case folder under DIR on Dask; rerun to resume (unchanged cases are skipped)."""
    from latplan.batch.runner import ClusterSettings, plan_cohort
    from latplan.pipeline import PlanOptions

    sim: bool | frozenset[str] = False if no_simulate else (frozenset(simulate) if simulate else True)
    options = PlanOptions(rule_paths=tuple(rules or ()), simulate=sim, pdf=not no_pdf)
    cluster = ClusterSettings(scheduler=scheduler, workers=workers, threads_per_worker=threads_per_worker)
    with _progress() as progress:
        run = plan_cohort(cohort_dir, out, options, cluster, progress)
    con = Console()
    con.print(f"{len(run.outcomes)} cases in {run.seconds:.0f} s: {run.count('planned')} planned, "
              f"{run.count('skipped')} unchanged (skipped), {run.count('failed')} failed")
    for o in run.outcomes:
        if o.status == "failed":
            con.print(f"[red]{o.name}: {o.error_type}: {o.error}[/red]")
    if run.results is not None:
        con.print(f"open {run.results.index_html} · table {run.results.parquet} ({run.results.lesions} lesions)")
    if run.count("failed"):
        raise typer.Exit(1)


@cohort_app.command("report")
def report_cmd(
    cohort_dir: Annotated[Path, typer.Argument(help="The cohort folder that was planned.")],
    out: Annotated[Path, typer.Option("--out", help="The output folder of `latplan cohort plan`.")],
) -> None:
    """Rebuild cohort.parquet/.csv and index.html from the published case results (no planning)."""
    from latplan.batch.runner import write_cohort_results

    res = write_cohort_results(cohort_dir, out)
    typer.echo(f"{res.cases} cases, {res.lesions} lesions: {res.index_html}")


def register(app: typer.Typer) -> None:
    """Add the `cohort` command group to the main app."""
    app.add_typer(cohort_app, name="cohort")
