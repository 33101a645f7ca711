"""Options and results of the planning pipeline (typed; no dicts crossing the layer)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from latplan.board.proposal import BoardProposal

__all__ = ["PlanOptions", "PlanResult"]


@dataclass(frozen=True)
class PlanOptions:
    """What to plan and how.

    ``rule_paths``: hospital rule files loaded over the core set. ``simulate``: True, False, or the
    modality codes to simulate. ``pdf``: also write report.pdf/patient.pdf. ``preferences``: weights
    0–5 overriding the patient's. ``workers``: processes for the lesion × modality simulations.
    ``overwrite``: replace an existing plan.json in the output folder.
    """

    rule_paths: tuple[Path, ...] = ()
    simulate: bool | frozenset[str] = True
    pdf: bool = True
    preferences: Mapping[str, float] | None = None
    workers: int = 1
    overwrite: bool = False


@dataclass
class PlanResult:
    """A planned case folder: the proposal, the files written and the hash of everything read."""

    proposal: BoardProposal
    files: dict[str, Path] = field(default_factory=dict)
    input_sha256: str = ""
