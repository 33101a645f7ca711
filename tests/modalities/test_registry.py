"""The modality registry (issue [H] part 3).

References: plan.schema.json (the option and strategy-step modality enums, the plan.json
contract), issue [H] part 8 (the seven whole-patient step modalities), the planner functions of
latplan.planning (what each spec must call), and hand-computed verdict boundaries (coverage
tolerance 99 %, margin vs target; exact comparisons).
"""

from __future__ import annotations

import pytest

from latplan.board import plan_schema
from latplan.case.vocabulary import Modality
from latplan.modalities import (
    LESION_MODALITIES,
    MODALITIES,
    MODULES,
    StepModality,
    TherapyFamily,
    simulate,
    spec_for,
)
from latplan.modalities.thermal import ablative_verdict
from latplan.planning import electroporation, thermal
from latplan.planning.types import TreatmentPlan

ISSUE_STEPS = {"systemic", "conversion_chemotherapy", "portal_vein_embolisation", "two_stage_resection",
               "transplant_referral", "best_supportive_care", "refer"}


def test_registry_lists_the_plan_json_option_modalities_in_order() -> None:
    assert list(LESION_MODALITIES) == plan_schema()["$defs"]["option"]["properties"]["modality"]["enum"]
    assert set(MODALITIES) == {m.value for m in Modality} - {"systemic"}
    assert list(MODULES) == list(LESION_MODALITIES)


def test_families() -> None:
    by_family = {f: sorted(c for c, s in MODALITIES.items() if s.family == f) for f in TherapyFamily}
    assert by_family == {TherapyFamily.THERMAL: ["cryo", "hifu", "mwa", "rfa"],
                         TherapyFamily.ELECTROPORATION: ["ect", "ire"],
                         TherapyFamily.RADIATION: ["ibt", "sbrt", "tare"],
                         TherapyFamily.SURGICAL: ["resection"],
                         TherapyFamily.REGIONAL: ["hai", "tace"]}


def test_planners_are_the_planning_functions() -> None:
    assert spec_for("rfa").planner is thermal.plan_rfa
    assert spec_for("mwa").planner is thermal.plan_mwa
    assert spec_for("cryo").planner is thermal.plan_cryo
    assert spec_for("ect").planner is electroporation.plan_ect
    assert spec_for("ire").planner is electroporation.plan_ire
    assert simulate.PLANNERS == {"rfa", "mwa", "cryo", "ect", "ire", "ibt", "sbrt", "tare"}
    for code in ("resection", "hifu", "tace", "hai"):
        with pytest.raises(simulate.NotAvailableError, match=f"no simulation exists for {code}"):
            simulate.planner_for(code)


def test_unknown_modality_names_the_known_ones() -> None:
    from latplan.errors import UnknownModalityError

    with pytest.raises(UnknownModalityError, match=r"unknown modality 'laser'.*rfa"):
        spec_for("laser")


@pytest.mark.parametrize(("cov", "margin", "target", "expected"), [
    (98.9, 8.0, 5.0, "fails"),      # below the 99 % voxel tolerance
    (99.0, 4.9, 5.0, "fails"),      # margin below target
    (99.0, 5.0, 5.0, "achieves"),   # boundary: margin == target reaches it
    (100.0, None, 5.0, "achieves"),
    (None, 6.0, 5.0, "unclear")])
def test_ablative_verdict_boundaries(cov: float | None, margin: float | None, target: float, expected: str) -> None:
    metrics = {k: v for k, v in (("coverage_percent", cov), ("min_margin_mm", margin)) if v is not None}
    assert ablative_verdict(TreatmentPlan("rfa", "lesion_1", metrics), target)[0] == expected


def test_step_modalities_are_the_documented_enum() -> None:
    """Today's twelve lesion modalities plus the issue's seven, and exactly the schema's step enum."""
    values = {m.value for m in StepModality}
    assert values == set(LESION_MODALITIES) | ISSUE_STEPS
    step_enum = plan_schema()["$defs"]["step"]["properties"]["modality"]["enum"]
    assert sorted(step_enum) == sorted(values)


def test_call_planner_passes_the_rules_target_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules' target margin reaches the planner; without one the planner's default applies.
    The pipeline's CaseGeometry reaches the planner as the ``geometry`` argument (the same object)."""
    seen: list[float | None] = []
    geometries: list[object] = []

    def fake(case, lesion_id, measurements=None, *, geometry=None,  # type: ignore[no-untyped-def]
             target_margin_mm: float = 5.0):
        seen.append(target_margin_mm)
        geometries.append(geometry)
        return TreatmentPlan("rfa", lesion_id, {})

    geometry = object()
    monkeypatch.setattr(simulate, "planner_for", lambda modality: fake)
    simulate.call_planner("rfa", None, "lesion_1", {}, {"target_margin_mm": 10}, geometry)  # type: ignore[arg-type]
    simulate.call_planner("rfa", None, "lesion_1", {}, {}, geometry)  # type: ignore[arg-type]
    assert seen == [10.0, 5.0]
    assert all(g is geometry for g in geometries)
