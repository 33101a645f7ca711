"""Factory for the per-modality modules: each exposes ``CODE``, ``assess`` and ``plan``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from latplan.case.patient import Patient
from latplan.knowledge.rules import RuleSet
from latplan.modalities.base import Assessment, Site, assess_with_rules
from latplan.modalities.simulate import call_planner
from latplan.planning.types import TreatmentPlan


def make(code: str) -> tuple[Callable[..., Assessment], Callable[..., TreatmentPlan]]:
    def assess(site: Site | Mapping[str, Any], patient: Patient, rules: RuleSet | None = None) -> Assessment:
        """Eligibility of this modality for one lesion under ``rules`` (default: the core rule set)."""
        return assess_with_rules(code, site, patient, rules)

    def plan(site: Site | Mapping[str, Any], case: Any, *, measurements: Mapping[str, Any] | None = None,
             parameters: Mapping[str, Any] | None = None) -> TreatmentPlan:
        """Simulate this modality on the lesion (raises NotAvailableError when no planner exists)."""
        s = Site.coerce(site)
        return call_planner(code, case, s.lesion_id, measurements if measurements is not None else s.lesion,
                            parameters or {})

    assess.__name__ = plan.__name__ = code
    return assess, plan
