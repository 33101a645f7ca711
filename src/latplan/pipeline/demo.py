"""``latplan demo``: build every demo case, write its case folder, plan it, write its reports,
then the index page linking them all (and the seed's Figure 2 follow-up, re-planned).

Layout of OUT::

    OUT/index.html
    OUT/cases/<name>/            case folder (case.yaml, image, labels) — plan it again with `latplan plan`
    OUT/reports/<name>/          plan.json, report.html/.pdf, patient.html/.pdf
    OUT/followup/fig2/           Figure 2 follow-up: case, followup.json, response.png, case-3m, plan-3m

One failing case is recorded on the index page (with its error) and does not stop the others;
:func:`run_demo` raises only when no case succeeded. Cases run in parallel processes with
``workers`` > 1 (each process plans its own case; one numba thread per process), the longest
first (lesion count), the follow-up alongside them.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latplan.case import Case
from latplan.errors import LatplanError
from latplan.followup.demo import write_fig2_followup_demo
from latplan.followup.representation import case_for_timepoint
from latplan.imaging.case_folder import load_case_folder, save_case_folder
from latplan.phantom import build_demo_case, demo_cases, demo_spec
from latplan.pipeline.plan import plan_case, write_outputs
from latplan.pipeline.progress import Progress, silent
from latplan.pipeline.types import PlanOptions
from latplan.pipeline.workers import init_worker, single_threaded_children
from latplan.report.demo import DemoRow, summary_cells, write_demo_index
from latplan.report.writer import ReportError

__all__ = ["DemoResult", "run_demo", "run_fig2_followup_demo"]

FOLLOWUP_NAME = "fig2-followup-3m (residual rim re-planned)"


@dataclass
class DemoResult:
    out_dir: Path
    index_html: Path
    reports: dict[str, dict[str, Path]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def run_fig2_followup_demo(out_dir: str | Path, voxel_mm: float | None = None, *, plan: bool = True,
                           pdf: bool = False, overwrite: bool = True) -> dict[str, Path]:
    """The whole follow-up demo in one call (for ``latplan demo``): returns the paths written.

    ``out_dir/case`` (Figure 2 case + 3-month timepoint), ``followup.json`` and ``response.png``
    (analysis, :func:`latplan.followup.demo.write_fig2_followup_demo`), ``case-3m`` (the 3-month scan
    as a plannable case with the TACE in its prior therapies) and, with ``plan``, ``plan-3m/`` (the
    board's plan of the residue and its reports, keys ``plan_3m_<file>``).
    """
    out = Path(out_dir)
    files = write_fig2_followup_demo(out, voxel_mm=voxel_mm, overwrite=overwrite)
    if plan:
        proposal = plan_case(case_for_timepoint(files["case"], "3m"), PlanOptions(simulate=True, pdf=pdf))
        for key, path in write_outputs(proposal, out / "plan-3m", PlanOptions(pdf=pdf, overwrite=True)).items():
            files[f"plan_3m_{key}"] = path
    return files


def _add_followup(result: DemoResult, outcome: _FollowupOutcome) -> DemoRow:
    row, reports, error = outcome
    if reports:
        result.reports[FOLLOWUP_NAME] = reports
    if error is not None:
        result.errors[FOLLOWUP_NAME] = error
    return row


_FollowupOutcome = tuple[DemoRow, dict[str, Path], str | None]


def _followup_outcome(out: Path, simulate: bool, pdf: bool) -> _FollowupOutcome:
    """(index row, reports, error) of the Figure 2 follow-up demo (runs in a worker process too)."""
    row = DemoRow(name=FOLLOWUP_NAME)
    reports: dict[str, Path] = {}
    try:
        files = run_fig2_followup_demo(out / "followup" / "fig2", plan=simulate, pdf=pdf)
        row.case_dir = os.path.relpath(files["case"], out)
        reports = {k.removeprefix("plan_3m_"): v for k, v in files.items() if k.startswith("plan_3m_")}
        if reports:
            row.links = {k: os.path.relpath(v, out) for k, v in reports.items()}
            row.lesions, row.top = summary_cells(json.loads(reports["plan_json"].read_text(encoding="utf-8")))
        else:
            row.error = "re-planning skipped (--no-simulate); see followup.json"
    except LatplanError as exc:
        row.error = str(exc)
        return row, reports, str(exc)
    return row, reports, None


#: expected time of the follow-up demo in lesion-plans (its one re-planned residue and the analysis)
FOLLOWUP_COST = 1.5


def _case_cost(name: str) -> float:
    """Expected time of a demo case in lesion-plans (each lesion is planned with every modality)."""
    return float(max(1, len(demo_spec(name).lesions)))


def _demo_case(name: str, out: Path, builder: Callable[[str], Case], simulate: bool, pdf: bool,
               progress: Progress | None = None) -> tuple[DemoRow, dict[str, Path]]:
    """Build, save, reload, plan and report one demo case; a LatplanError becomes the row's error."""
    row = DemoRow(name=name)
    say = progress or silent
    try:
        say(f"{name}: building the phantom")
        case = builder(name)
        case_dir = out / "cases" / name
        save_case_folder(case, case_dir, overwrite=True)
        # plan what was written (the report's Basis then lists the case folder's file hashes)
        case = load_case_folder(case_dir)
        row.case_dir = os.path.relpath(case_dir, out)
        proposal = plan_case(case, PlanOptions(simulate=simulate, pdf=pdf),
                             lambda msg, done=None, total=None: say(f"{name}: {msg}"))
        say(f"{name}: writing reports")
        files = write_outputs(proposal, out / "reports" / name, PlanOptions(pdf=pdf, overwrite=True))
        row.links = {k: os.path.relpath(v, out) for k, v in files.items()}
        row.lesions, row.top = summary_cells(proposal.plan_json)
        return row, files
    except LatplanError as exc:
        row.error = str(exc)
        return row, {}


def _run_parallel(wanted: Sequence[str], out: Path, builder: Callable[[str], Case], simulate: bool, pdf: bool,
                  workers: int, with_followup: bool, say: Progress,
                  ) -> tuple[list[tuple[DemoRow, dict[str, Path]]], _FollowupOutcome | None]:
    """The demo cases (and the follow-up) in ``workers`` processes, the longest first (the
    longest-processing-time rule: the workers finish together); outcomes in ``wanted`` order."""
    total = len(wanted)
    tasks: list[tuple[float, int]] = [(_case_cost(name), i) for i, name in enumerate(wanted)]
    if with_followup:
        tasks.append((FOLLOWUP_COST, total))  # index ``total``: the follow-up
    tasks.sort(key=lambda t: (-t[0], t[1]))
    case_outcomes: dict[int, tuple[DemoRow, dict[str, Path]]] = {}
    followup: _FollowupOutcome | None = None
    with single_threaded_children(), \
            ProcessPoolExecutor(max_workers=min(workers, len(tasks)), initializer=init_worker,
                                mp_context=multiprocessing.get_context("spawn")) as pool:
        futures: dict[Future[Any], int] = {}
        for _cost, i in tasks:
            if i == total:
                futures[pool.submit(_followup_outcome, out, simulate, pdf)] = i
            else:
                futures[pool.submit(_demo_case, wanted[i], out, builder, simulate, pdf)] = i
        done = 0
        for fut in as_completed(futures):
            i = futures[fut]
            if i == total:
                followup = fut.result()
                say(f"{FOLLOWUP_NAME}: done", done, total)
            else:
                case_outcomes[i] = fut.result()
                done += 1
                say(f"{wanted[i]}: done", done, total)
    return [case_outcomes[i] for i in range(total)], followup


def run_demo(out_dir: str | Path, names: Sequence[str] | None = None, *, progress: Progress | None = None,
             simulate: bool = True, pdf: bool = True, build_case: Callable[[str], Case] | None = None,
             followup: bool | None = None, workers: int = 1) -> DemoResult:
    """Build, save, plan and report the demo cases ``names`` (default: all) into ``out_dir``.

    ``build_case`` replaces :func:`latplan.phantom.build_demo_case` (tests pass a coarse builder; with
    ``workers`` > 1 it must be picklable, i.e. a module-level function). ``followup`` adds the seed's
    Figure 2 follow-up (:func:`run_fig2_followup_demo`); by default it runs when all demo cases are
    asked for. ``workers`` > 1 plans that many cases at once in separate processes.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    available = list(demo_cases())
    wanted = list(names) if names else available
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ReportError(f"unknown demo case(s): {', '.join(unknown)}; available: {', '.join(available)}.")
    builder = build_case or build_demo_case
    say = progress or silent
    result = DemoResult(out, out / "index.html")
    total = len(wanted)
    rows: list[DemoRow] = []
    say(f"planning {total} demo case(s)", 0, total)
    with_followup = followup if followup is not None else not names
    followup_done: _FollowupOutcome | None = None
    if workers > 1 and total + int(with_followup) > 1:
        outcomes, followup_done = _run_parallel(wanted, out, builder, simulate, pdf, workers, with_followup, say)
    else:
        outcomes = []
        for i, name in enumerate(wanted):
            outcomes.append(_demo_case(name, out, builder, simulate, pdf,
                                       lambda msg, done=None, tot=None, i=i: say(msg, i, total)))
            say(f"{name}: done", i + 1, total)
    for row, files in outcomes:
        rows.append(row)
        if row.error is not None:
            result.errors[row.name] = row.error
        else:
            result.reports[row.name] = files
    if with_followup:
        if followup_done is None:
            say(f"{FOLLOWUP_NAME}: follow-up analysis and re-planning", total, total)
            followup_done = _followup_outcome(out, simulate, pdf)
        rows.append(_add_followup(result, followup_done))
    write_demo_index(result.index_html, rows)
    if not result.reports:
        raise ReportError("no demo case could be planned: " + "; ".join(f"{k}: {v}" for k, v in result.errors.items()))
    return result
