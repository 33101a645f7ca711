"""Electroporation: electrochemotherapy (ECT) and irreversible electroporation (IRE); planners in
:mod:`latplan.planning.electroporation`. Verdict: the plan's own field-coverage goal (ECT: the
tumour; IRE: tumour + margin), else the ablative coverage/margin verdict."""

from __future__ import annotations

from latplan.case.vocabulary import Modality
from latplan.modalities.spec import ModalitySpec, TherapyFamily, Verdict
from latplan.modalities.thermal import ablative_verdict
from latplan.planning.applicators import shared_trajectory
from latplan.planning.electroporation import plan_ect, plan_ire
from latplan.planning.types import TreatmentPlan

__all__ = ["ECT", "IRE", "SPECS", "electroporation_verdict"]


def electroporation_verdict(plan: TreatmentPlan, target_margin_mm: float | None) -> Verdict:
    """≥ goal % of the target above the field threshold (see latplan.planning.electroporation)."""
    m = plan.metrics
    if m.get("coverage_goal_percent") is None or "covered" not in m:
        return ablative_verdict(plan, target_margin_mm)
    cov, goal = m.get("target_coverage_percent"), m["coverage_goal_percent"]
    what = str(m.get("coverage_target", "target")).replace("+", " + ")
    if m["covered"]:
        return "achieves", f"field above threshold in {cov:.1f} % of the {what} (goal {goal:g} %)"
    limited = f", limited by {m['limited_by']}" if m.get("limited_by") else ""
    return "fails", f"field above threshold in only {cov:.1f} % of the {what} (goal {goal:g} %{limited})"


ECT = ModalitySpec(Modality.ECT, TherapyFamily.ELECTROPORATION, 5, "electrochemotherapy", plan_ect,
                   electroporation_verdict, shared=shared_trajectory, expected_cost=30.0)
IRE = ModalitySpec(Modality.IRE, TherapyFamily.ELECTROPORATION, 6, "irreversible electroporation", plan_ire,
                   electroporation_verdict, shared=shared_trajectory, expected_cost=46.0)

SPECS = (ECT, IRE)
