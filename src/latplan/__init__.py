"""latplan: planning of image-guided local cancer therapies for the multidisciplinary tumor board.

Public API (thin; heavy modules are imported lazily):
``load_case(folder)``, ``measure_case(case)``, ``plan_case(case, ...)``, ``write_report(...)``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_case(folder: Any) -> Any:
    """Load a case folder (see docs/case-format.md) into a :class:`latplan.case.Case`."""
    from latplan.case import Case

    return Case.from_folder(folder)


def measure_case(case: Any) -> dict[str, Any]:
    """Per-lesion and patient-level measurements (the ``latplan measure --json`` document)."""
    from latplan.anatomy import measure_case as _measure

    return _measure(case)


def plan_case(case: Any, **kwargs: Any) -> Any:
    """Assess, simulate and rank every modality for every lesion (the plan.json document)."""
    from latplan.board import plan_case as _plan

    return _plan(case, **kwargs)
