"""What one therapy is to latplan: a typed :class:`ModalitySpec` (code, family, planner, verdict,
clinical parameters from :mod:`latplan.knowledge`).

Each therapy family has one file (``thermal``, ``electroporation``, ``radiation``, ``surgical``,
``regional``) holding its specs; :mod:`latplan.modalities.registry` collects them. Adding a
therapy is one spec in its family's file (its eligibility rules live in the rule files).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol

from latplan.anatomy.geometry import CaseGeometry
from latplan.case import Case
from latplan.case.patient import Patient
from latplan.case.vocabulary import Modality
from latplan.knowledge.rules import RuleSet
from latplan.modalities.base import Assessment, Site, assess_with_rules
from latplan.planning.types import TreatmentPlan

__all__ = ["ModalitySpec", "Planner", "SharedWork", "TherapyFamily", "Verdict", "VerdictFn"]

#: does the simulated plan reach the clinical target?
Verdict = tuple[Literal["achieves", "fails", "unclear"], str]


class TherapyFamily(StrEnum):
    """The five therapy families (one module each)."""

    THERMAL = "thermal"                  # RFA, MWA, cryoablation, HIFU
    ELECTROPORATION = "electroporation"  # ECT, IRE
    RADIATION = "radiation"              # interstitial brachytherapy, SBRT, radioembolisation
    SURGICAL = "surgical"                # resection
    REGIONAL = "regional"                # intra-arterial: TACE, HAI


class Planner(Protocol):
    """A lesion planner as the pipeline calls it: ``geometry`` is the case's
    :class:`~latplan.anatomy.geometry.CaseGeometry` (computed once per case by the pipeline); the
    clinical target margin comes from the rules."""

    def __call__(self, case: Case, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
                 geometry: CaseGeometry | None = None, target_margin_mm: float = 5.0) -> TreatmentPlan: ...


class SharedWork(Protocol):
    """What the planners of one lesion share (e.g. its trajectory): computed once onto the
    :class:`~latplan.anatomy.geometry.CaseGeometry` (its ``memo``) and returned as the memo entries
    (small: they are sent to every worker process that plans the lesion)."""

    def __call__(self, case: Case, lesion_id: str, geometry: CaseGeometry) -> Mapping[Hashable, Any]: ...


class VerdictFn(Protocol):
    def __call__(self, plan: TreatmentPlan, target_margin_mm: float | None) -> Verdict: ...


@dataclass(frozen=True)
class ModalitySpec:
    """One therapy: ``code`` (plan.json), ``family``, ``order`` (position in plan.json's option list),
    ``planner`` (None: assessed by rules only), ``verdict`` (how a simulated plan is judged) and
    ``parameters`` (the clinical planner parameters from :mod:`latplan.knowledge`, for display),
    ``shared`` (per-lesion work the planners share, run once before simulations fan out) and
    ``expected_cost`` (relative planner time, a scheduling hint only: the longest jobs start first;
    the family modules give the planner seconds of the 2 mm demo case fig1-seg8-between-hepatic-veins,
    profiled in one process on a loaded machine, 2026-12-02 — only their ratios matter)."""

    code: Modality
    family: TherapyFamily
    order: int
    name: str
    planner: Planner | None = None
    verdict: VerdictFn | None = None
    parameters: Callable[[], Mapping[str, Any]] | None = None
    shared: SharedWork | None = None
    expected_cost: float = 1.0

    def assess(self, site: Site | Mapping[str, Any], patient: Patient, rules: RuleSet | None = None) -> Assessment:
        """Eligibility of this modality for one lesion under ``rules`` (default: the core rule set)."""
        return assess_with_rules(self.code.value, site, patient, rules)
