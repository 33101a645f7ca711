"""latplan: planning of image-guided local cancer therapies for the multidisciplinary tumor board.

Public API (thin; the heavy modules are imported on first call):

* ``load_case(folder) -> Case`` — a case folder (see docs/case-format.md)
* ``measure_case(case) -> dict`` — per-lesion and patient-level measurements (``latplan measure --json``)
* ``plan_case(case, options=PlanOptions(), progress=None) -> BoardProposal`` — assess, simulate and rank
  every modality for every lesion (:func:`latplan.pipeline.plan_case`)
* ``write_report(proposal, out_dir, pdf=True) -> dict[str, Path]`` — plan.json, report.html/.pdf,
  patient.html/.pdf (:func:`latplan.report.write_reports`)

The whole chain for a case folder is :func:`latplan.pipeline.plan_case_folder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from latplan._version import __version__

if TYPE_CHECKING:
    from latplan.board.proposal import BoardProposal
    from latplan.case import Case
    from latplan.pipeline import PlanOptions, Progress

__all__ = ["__version__", "load_case", "measure_case", "plan_case", "write_report"]


def load_case(folder: str | Path) -> Case:
    """Load a case folder (see docs/case-format.md) into a :class:`latplan.case.Case`."""
    from latplan.imaging.case_folder import load_case_folder

    return load_case_folder(folder)


def measure_case(case: Case) -> dict[str, Any]:
    """Per-lesion and patient-level measurements (the ``latplan measure --json`` document)."""
    from latplan.anatomy import measure_case as _measure

    return _measure(case)


def plan_case(case: Case, options: PlanOptions | None = None, progress: Progress | None = None) -> BoardProposal:
    """Assess, simulate and rank every modality for every lesion (plan.json in ``proposal.plan_json``)."""
    from latplan.pipeline import PlanOptions as _Options
    from latplan.pipeline import plan_case as _plan

    return _plan(case, options or _Options(), progress)


def write_report(proposal: BoardProposal, out_dir: str | Path, pdf: bool = True) -> dict[str, Path]:
    """Write plan.json, report.html/.pdf and patient.html/.pdf into ``out_dir``; return their paths."""
    from latplan.report import write_reports

    return write_reports(proposal, out_dir, pdf=pdf)
