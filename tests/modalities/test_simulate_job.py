"""simulate_job: a planner's error becomes the result's ``why`` (never an exception), and an
infeasible plan carries what blocked it (``limiting``) so the board need not parse the text.

Reference: the error the (stand-in) planner raised, its message and ``limiting``; exact.
"""

from __future__ import annotations

import pytest

from latplan.errors import InfeasiblePlanError, PlanningError
from latplan.modalities import simulate
from latplan.modalities.simulate import SimulationJob, simulate_job
from latplan.phantom import build_demo_case


@pytest.mark.parametrize(("error", "limiting"), [
    (InfeasiblePlanError("the needle array cannot be placed inside the image", limiting="field_of_view"),
     "field_of_view"),
    (PlanningError("no path"), None),
])
def test_planner_error_is_the_results_why_with_its_limiting(monkeypatch, error, limiting) -> None:  # type: ignore[no-untyped-def]
    def planner(case, lesion_id, measurements=None, *, geometry=None, target_margin_mm=5.0):  # type: ignore[no-untyped-def]
        raise error

    monkeypatch.setattr(simulate, "planner_for", lambda _modality: planner)
    case = build_demo_case("seg6-peripheral-18mm", voxel_mm=6.0)
    result = simulate_job(SimulationJob("lesion_1", "ire", {}), case, None)
    assert result.plan is None and result.limiting == limiting
    assert result.why is not None and result.why.startswith("planner could not produce a plan: " + str(error))
    assert (f"(limiting: {limiting})" in result.why) is (limiting is not None)
