"""The job progress callback and the planner signature shared by the worker and the planners.

A module of its own so that planners (``latplan.web.fake_planner``) and the job machinery
(``latplan.web.jobs``) both import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

#: ``progress(fraction 0–1, message)`` as the job row shows it
ProgressFn = Callable[[float, str], None]


class Planner(Protocol):
    """Plans the case folder ``case_dir`` into ``out_dir`` (plan.json, report/, viewer/)."""

    def __call__(self, case_dir: Path, out_dir: Path, progress: ProgressFn,
                 parameters: Mapping[str, Any] | None = None) -> None: ...


class StageProgress:
    """Maps an engine's ``progress(message, done=None, total=None)`` onto ``lo``–``hi`` of the job bar.

    With ``done``/``total`` the bar is placed exactly; a message alone advances it a little
    each time (never reaching ``hi``), since the engine does not know how much is left.
    """

    def __init__(self, progress: ProgressFn, lo: float, hi: float) -> None:
        self.progress, self.lo, self.hi, self.calls = progress, lo, hi, 0

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None:
        self.calls += 1
        if done is not None and total:
            frac = min(max(done / total, 0.0), 1.0)
        else:
            frac = 1.0 - 0.85 ** self.calls
        self.progress(self.lo + (self.hi - self.lo) * frac, str(message))
