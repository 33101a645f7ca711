"""The ``latplan demo`` index page: one row per demo case linking its reports.

Planning the demo is :func:`latplan.pipeline.run_demo`; this module only renders what it found
(report must not import the pipeline).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latplan.report.context import modality_name
from latplan.report.writer import render_index_html

__all__ = ["DemoRow", "summary_cells", "write_demo_index"]


@dataclass
class DemoRow:
    """One index row: the case, its lesion count, its top strategy, links (relative to OUT) or an error."""

    name: str
    lesions: str = "—"
    top: str = "—"
    error: str | None = None
    case_dir: str | None = None
    links: dict[str, str] = field(default_factory=dict)

    def to_context(self) -> dict[str, Any]:
        return {"name": self.name, "lesions": self.lesions, "top": self.top, "error": self.error,
                "case_dir": self.case_dir, "report_pdf": "", "patient_pdf": "", **self.links}


def summary_cells(plan_json: Mapping[str, Any]) -> tuple[str, str]:
    """Index-page cells (lesion count, the top-ranked strategy's steps) of one plan.json document."""
    lesions = str(len(plan_json.get("lesions", [])))
    strategies = sorted(plan_json.get("strategies", []) or [],
                        key=lambda s: (s.get("rank") is None, s.get("rank") or 0))
    if not strategies:
        return lesions, "—"
    steps = sorted(strategies[0].get("steps", []) or [], key=lambda st: st.get("order") or 0)
    return lesions, " → ".join(modality_name(str(st.get("modality"))) for st in steps)


def _version() -> str:
    try:
        return importlib.metadata.version("latplan")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def write_demo_index(path: Path, rows: Sequence[DemoRow]) -> Path:
    """Write the index page atomically (temporary file in the same folder, then ``os.replace``)."""
    html = render_index_html({"cases": [r.to_context() for r in rows], "latplan_version": _version(),
                              "generated_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")})
    fd, tmp = tempfile.mkstemp(prefix=".index.", suffix=".html", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(html)
    os.replace(tmp, path)
    return path
