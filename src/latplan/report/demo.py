"""`latplan demo`: build every demo case, write its case folder, plan it, write its reports,
and an index page linking them all.

Layout of OUT::

    OUT/index.html
    OUT/cases/<name>/            case folder (case.yaml, image, labels) — plan it again with `latplan plan`
    OUT/reports/<name>/          plan.json, report.html/.pdf, patient.html/.pdf

One failing case is recorded on the index page (with its error) and does not stop the others;
``run_demo`` raises only when no case succeeded.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latplan.errors import LatplanError
from latplan.report.context import modality_name
from latplan.report.writer import ReportError, render_index_html, write_reports

__all__ = ["DemoResult", "run_demo"]

#: progress(message, done, total): called before each step; ``done``/``total`` count cases
Progress = Callable[[str, int, int], None]


@dataclass
class DemoResult:
    out_dir: Path
    index_html: Path
    reports: dict[str, dict[str, Path]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _board_progress(progress: Progress | None, name: str, done: int, total: int) -> Callable[..., None] | None:
    if progress is None:
        return None

    def cb(*args: Any, **kwargs: Any) -> None:
        msg = next((a for a in args if isinstance(a, str)), kwargs.get("message", "planning"))
        progress(f"{name}: {msg}", done, total)

    return cb


def _summary_cells(plan_json: dict[str, Any]) -> dict[str, str]:
    """Index-page cells: lesion count and the top-ranked strategy's steps."""
    cells = {"lesions": str(len(plan_json.get("lesions", [])))}
    strategies = sorted(plan_json.get("strategies", []) or [],
                        key=lambda s: (s.get("rank") is None, s.get("rank") or 0))
    if strategies:
        steps = sorted(strategies[0].get("steps", []) or [], key=lambda st: st.get("order") or 0)
        cells["top"] = " → ".join(modality_name(str(st.get("modality"))) for st in steps)
    return cells


def _followup_row(out: Path, result: DemoResult, *, simulate: bool, pdf: bool,
                  progress: Progress | None, total: int) -> dict[str, Any]:
    """Run the Figure 2 follow-up demo and describe it as one index row."""
    import json

    from latplan.followup.demo import run_fig2_followup_demo

    name = "fig2-followup-3m (residual rim re-planned)"
    row: dict[str, Any] = {"name": name, "lesions": "—", "top": "—", "error": None, "case_dir": None,
                           "report_pdf": "", "patient_pdf": ""}
    if progress:
        progress(f"{name}: follow-up analysis and re-planning", total, total)
    try:
        files = run_fig2_followup_demo(out / "followup" / "fig2", plan=simulate, pdf=pdf)
        row["case_dir"] = os.path.relpath(files["case"], out)
        reports = files.get("plan_3m")
        if reports:
            result.reports[name] = reports
            row.update({k: os.path.relpath(v, out) for k, v in reports.items()})
            row.update(_summary_cells(json.loads(Path(reports["plan_json"]).read_text(encoding="utf-8"))))
        else:
            row["error"] = "re-planning skipped (--no-simulate); see followup.json"
    except LatplanError as exc:
        row["error"] = str(exc)
        result.errors[name] = str(exc)
    return row


def run_demo(
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    *,
    progress: Progress | None = None,
    simulate: bool = True,
    pdf: bool = True,
    build_case: Callable[[str], Any] | None = None,
    followup: bool | None = None,
) -> DemoResult:
    """Build, save, plan and report the demo cases ``names`` (default: all) into ``out_dir``.

    ``build_case`` replaces :func:`latplan.phantom.build_demo_case` (tests pass a coarse
    builder). ``followup`` adds the seed's Figure 2 follow-up (3-month residual rim analysed,
    then re-planned; :func:`latplan.followup.demo.run_fig2_followup_demo`); by default it runs
    when all demo cases are asked for. Needs [A2] phantom, [A1] case folders and [D] board.
    """
    from latplan.board import plan_case
    from latplan.imaging.case_folder import load_case_folder, save_case_folder
    from latplan.phantom import build_demo_case, demo_cases

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    available = list(demo_cases())
    wanted = list(names) if names else available
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ReportError(f"unknown demo case(s): {', '.join(unknown)}; available: {', '.join(available)}.")
    builder = build_case or build_demo_case
    result = DemoResult(out, out / "index.html")
    rows = []
    total = len(wanted)
    for i, name in enumerate(wanted):
        row: dict[str, Any] = {"name": name, "lesions": "—", "top": "—", "error": None, "case_dir": None}
        try:
            if progress:
                progress(f"{name}: building the phantom", i, total)
            case = builder(name)
            case_dir = out / "cases" / name
            save_case_folder(case, case_dir, overwrite=True)
            # plan what was written (the report's Basis then lists the case folder's file hashes)
            case = load_case_folder(case_dir)
            row["case_dir"] = os.path.relpath(case_dir, out)
            if progress:
                progress(f"{name}: planning", i, total)
            proposal = plan_case(case, simulate=simulate, progress=_board_progress(progress, name, i, total))
            if progress:
                progress(f"{name}: writing reports", i, total)
            files = write_reports(proposal, out / "reports" / name, pdf=pdf)
            result.reports[name] = files
            row.update({k: os.path.relpath(v, out) for k, v in files.items()})
            row.setdefault("report_pdf", "")
            row.setdefault("patient_pdf", "")
            row.update(_summary_cells(proposal.plan_json))
        except LatplanError as exc:
            row["error"] = str(exc)
            result.errors[name] = str(exc)
        rows.append(row)
        if progress:
            progress(f"{name}: done", i + 1, total)
    if followup if followup is not None else not names:
        rows.append(_followup_row(out, result, simulate=simulate, pdf=pdf, progress=progress, total=total))
    try:
        version = importlib.metadata.version("latplan")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    html = render_index_html({"cases": rows, "latplan_version": version,
                              "generated_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")})
    fd, tmp = tempfile.mkstemp(prefix=".index.", suffix=".html", dir=out)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(html)
    os.replace(tmp, result.index_html)
    if not result.reports:
        raise ReportError("no demo case could be planned: " + "; ".join(f"{k}: {v}" for k, v in result.errors.items()))
    return result
