"""Calls into the lesion planners, and how a plan judges a prior.

Why: a missing planner or a :class:`~latplan.errors.PlanningError` must never remove an option,
only leave ``simulation: null`` with a ``why``. Which planner a modality has, and how its plan is
judged, is its :class:`~latplan.modalities.spec.ModalitySpec`; the clinical target margin comes
from the rules (``Assessment.parameters["target_margin_mm"]``), the other clinical parameters
from :mod:`latplan.knowledge` (inside the family modules).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from latplan.anatomy.geometry import CaseGeometry, case_geometry
from latplan.case import Case
from latplan.case.patient import Patient
from latplan.errors import InfeasiblePlanError, LatplanError, NotAvailableError, PlanningError
from latplan.knowledge.rules import RuleSet
from latplan.modalities.base import Assessment, Site
from latplan.modalities.registry import MODALITIES
from latplan.modalities.spec import ModalitySpec, Planner, Verdict
from latplan.modalities.thermal import COVERAGE_TOLERANCE_PERCENT
from latplan.planning.types import TreatmentPlan

__all__ = ["COVERAGE_TOLERANCE_PERCENT", "PLANNERS", "ModalityRunner", "NotAvailableError", "SimulationJob",
           "SimulationResult", "call_planner", "planner_for", "simulate_job", "verdict"]

#: the modalities that have a planner
PLANNERS: frozenset[str] = frozenset(code for code, spec in MODALITIES.items() if spec.planner is not None)


def planner_for(modality: str) -> Planner:
    """The planner of ``modality``, or :class:`NotAvailableError` saying why there is none."""
    spec = MODALITIES.get(modality)
    if spec is None or spec.planner is None:
        raise NotAvailableError(f"no simulation exists for {modality} in this release (assessed by rules only).")
    return spec.planner


def call_planner(modality: str, case: Case, lesion_id: str, measurements: Mapping[str, Any] | None,
                 parameters: Mapping[str, Any], geometry: CaseGeometry) -> TreatmentPlan:
    """Run one planner on ``case`` with its ``geometry`` (computed once per case by the pipeline) and the
    rules' target margin; raises NotAvailableError / PlanningError with the reason."""
    fn = planner_for(modality)
    margin = parameters.get("target_margin_mm")
    plan = fn(case, lesion_id, measurements, geometry=geometry) if margin is None else \
        fn(case, lesion_id, measurements, geometry=geometry, target_margin_mm=float(margin))
    if not isinstance(plan, TreatmentPlan):
        raise PlanningError(f"planner of {modality} returned {type(plan).__name__}, not a TreatmentPlan.")
    return plan


@dataclass(frozen=True)
class SimulationJob:
    """One simulation of a case: one lesion × one modality (the pipeline's unit of parallel work).

    ``lesion``: the lesion's measurements (measure.schema.json; what the planners read);
    ``target_margin_mm``: the rules' target margin (None: the planner's default).
    """

    lesion_id: str
    modality: str
    lesion: Mapping[str, Any]
    target_margin_mm: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.lesion_id, self.modality


@dataclass(frozen=True)
class SimulationResult:
    """What one :class:`SimulationJob` gave: the plan, or ``why`` there is none; planner wall time;
    ``limiting``: what blocked the plan when the planner found it infeasible
    (:class:`~latplan.errors.InfeasiblePlanError`'s ``limiting``, e.g. ``"field_of_view"``), else None."""

    lesion_id: str
    modality: str
    plan: TreatmentPlan | None
    why: str | None
    runtime_s: float
    limiting: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.lesion_id, self.modality


def simulate_job(job: SimulationJob, case: Case, geometry: CaseGeometry | None) -> SimulationResult:
    """Run the planner of ``job`` on ``case`` with its ``geometry``; a missing planner or a planner's
    error is the result's ``why`` (the option stays, with ``simulation: null``), never an exception."""
    params = {} if job.target_margin_mm is None else {"target_margin_mm": job.target_margin_mm}
    geo = geometry if geometry is not None else case_geometry(case)
    plan: TreatmentPlan | None = None
    why: str | None = None
    limiting: str | None = None
    t0 = time.perf_counter()
    try:
        plan = call_planner(job.modality, case, job.lesion_id, job.lesion, params, geo)
    except NotAvailableError as exc:
        why = str(exc)
    except PlanningError as exc:
        limiting = exc.limiting if isinstance(exc, InfeasiblePlanError) else None
        why = f"planner could not produce a plan: {exc}" + (f" (limiting: {limiting})" if limiting else "")
    except (LatplanError, TypeError, ValueError) as exc:
        why = f"planner failed: {type(exc).__name__}: {exc}"
    return SimulationResult(job.lesion_id, job.modality, plan, why, time.perf_counter() - t0, limiting)


def verdict(modality: str, plan: TreatmentPlan, target_margin_mm: float | None) -> Verdict:
    """('achieves' | 'fails' | 'unclear', text) — does the simulated plan reach the clinical target?"""
    spec = MODALITIES.get(modality)
    if spec is None or spec.verdict is None:
        return "unclear", "no judgement rule for this simulation"
    return spec.verdict(plan, target_margin_mm)


@dataclass(frozen=True)
class ModalityRunner:
    """A spec with the two calls the board makes: ``assess`` (rules) and ``plan`` (simulation)."""

    spec: ModalitySpec

    @property
    def code(self) -> str:
        return self.spec.code.value

    def assess(self, site: Site | Mapping[str, Any], patient: Patient, rules: RuleSet | None = None) -> Assessment:
        return self.spec.assess(site, patient, rules)

    def plan(self, site: Site | Mapping[str, Any], case: Case, *, measurements: Mapping[str, Any] | None = None,
             parameters: Mapping[str, Any] | None = None, geometry: CaseGeometry | None = None) -> TreatmentPlan:
        """Simulate this modality on the lesion (raises NotAvailableError when no planner exists).
        ``geometry``: the pipeline's :class:`CaseGeometry` of ``case`` (None: ``case_geometry(case)``)."""
        s = Site.coerce(site)
        return call_planner(self.code, case, s.lesion_id, measurements if measurements is not None else s.lesion,
                            parameters or {}, geometry if geometry is not None else case_geometry(case))
