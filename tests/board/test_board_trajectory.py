"""[L] an access path that could not be verified on the image reads "uncertain" — never safe, never demoted.

Reference: issue [I] part 4 (an unknown keeps the option's tier, becomes a condition listed once per lesion, and
confidence drops so that the rank *within* the tier may drop) applied to ``trajectory_verified: false``, which the
planners write when the image does not show the abdominal wall along the needle/catheter path (geometry: a path
can be verified only where the image shows it leaving the body). The cropped case is the radiation phantom with
the body filling the image to its edges (tests/planning/test_ibt_trajectory.py), planned by the real IBT planner.
Tolerance: exact statuses, tiers and texts; the score cost is the documented unknown cost (0.03, ±1e-9).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from rad_case_helpers import make_case

from latplan.board import plan_case
from latplan.board.options import UNKNOWN_PENALTY
from latplan.board.targets import TRAJECTORY_CONDITION, judge
from latplan.case import Case
from latplan.modalities import simulate
from latplan.planning.ibt import plan_ibt
from latplan.planning.types import TreatmentPlan
from tests.board.test_board_guideline_vignettes import HEPATIC_VEINS, fit, lesions_of


def _body_fills_image(case: Case) -> Case:
    lab = np.asarray(case.labels.array).copy()
    lab[lab == 0] = 1  # the image edge cuts through the body: no path can be seen leaving it
    image = case.image.with_array(np.full(lab.shape, 40, np.int16))
    return Case(case.patient, image, case.labels.with_array(lab), case.label_table)


@pytest.fixture(scope="module")
def cropped_ibt_plan() -> TreatmentPlan:
    plan = plan_ibt(_body_fills_image(make_case(spacing_mm=3.0, shape=(40, 54, 54))), "lesion_1")
    assert plan.metrics["trajectory_verified"] is False  # precondition (geometry)
    return plan


def _with_metrics(plan: TreatmentPlan, **kw) -> TreatmentPlan:
    return dataclasses.replace(plan, metrics={**plan.metrics, **kw})


def _board(vignette, monkeypatch, plans: dict[str, TreatmentPlan], lesion=None):
    def planner_for(modality: str):
        if modality not in plans:
            raise simulate.NotAvailableError(f"no fake planner for {modality}")
        return lambda case, lesion_id, measurements=None, **_kw: plans[modality]

    monkeypatch.setattr(simulate, "planner_for", planner_for)
    les = lesion or vignette.lesion(d=25, segments=("8",), vessels=HEPATIC_VEINS)
    return plan_case(object(), measurements=vignette.measurements(les), patient=fit(vignette))


def test_unverified_path_turns_reaches_into_uncertain_and_keeps_misses() -> None:
    ok = {"coverage_percent": 100.0, "min_margin_mm": 7.0, "organ_volumes_in_zone_ml": {}}
    assert judge("mwa", ok, 5.0).status == "reaches"
    j = judge("mwa", {**ok, "trajectory_verified": False}, 5.0)
    assert j.status == "uncertain" and j.trajectory_unverified and j.target["trajectory_verified"] is False
    assert "access path could not be verified" in j.text
    short = {**ok, "min_margin_mm": 2.0, "trajectory_verified": False}
    assert judge("mwa", short, 5.0).status == "misses"  # an unknown path never improves a missed target
    assert not judge("mwa", {**ok, "trajectory_verified": True}, 5.0).trajectory_unverified


def test_cropped_case_ibt_uncertain_tier_kept_condition_once(vignette, monkeypatch, cropped_ibt_plan) -> None:
    """The real IBT plan on the cropped case reaches its protocol dose (D100 ≥ prescription, constraints met)
    but its catheter paths cannot be verified: target "uncertain", same tier as the verified plan, the condition
    on the option and once in the lesion's conditions, total lower by exactly the unknown cost."""
    verified = _board(vignette, monkeypatch, {"ibt": _with_metrics(cropped_ibt_plan, trajectory_verified=True)})
    cropped = _board(vignette, monkeypatch, {"ibt": cropped_ibt_plan})
    v, c = lesions_of(verified)["lesion_1"]["ibt"], lesions_of(cropped)["lesion_1"]["ibt"]
    assert v["target_status"] == "reaches" and c["target_status"] == "uncertain"
    assert c["tier"] == v["tier"] and c["eligibility"] == v["eligibility"]
    assert TRAJECTORY_CONDITION in c["conditions"] and TRAJECTORY_CONDITION not in v["conditions"]
    assert c["ranking"]["total"] == pytest.approx(v["ranking"]["total"] - UNKNOWN_PENALTY, abs=1e-9)
    assert "access path not verified" in c["ranking"]["reason"]
    assert v["needs_review"] is False and not v["cannot_assess"]  # the verified plan needs no review
    assert c["needs_review"] is True  # the team must still check the path (patient sheet: "check some facts")
    lesion = cropped.plan_json["lesions"][0]
    assert lesion["conditions"].count(TRAJECTORY_CONDITION) == 1


def test_two_unverified_options_one_lesion_condition_listed_once(vignette, monkeypatch, cropped_ibt_plan) -> None:
    """IBT and MWA both unverified on one lesion: each option names the condition, the lesion lists it once; an
    uncertain option is never ranked above one that reaches its target in the same tier (issue [I] part 2)."""
    mwa = TreatmentPlan("mwa", "lesion_1", {"coverage_percent": 100.0, "min_margin_mm": 7.0,
                                            "organ_volumes_in_zone_ml": {}, "trajectory_verified": False},
                        applicators=[], engine="fake")
    rfa = dataclasses.replace(mwa, modality="rfa", metrics={**mwa.metrics, "trajectory_verified": True})
    # solitary 18 mm segment VI colorectal metastasis: RFA and MWA both indicated (COLLISION; vignette v03)
    prop = _board(vignette, monkeypatch, {"ibt": cropped_ibt_plan, "mwa": mwa, "rfa": rfa}, vignette.lesion(d=18))
    opts = lesions_of(prop)["lesion_1"]
    assert TRAJECTORY_CONDITION in opts["ibt"]["conditions"] and TRAJECTORY_CONDITION in opts["mwa"]["conditions"]
    assert prop.plan_json["lesions"][0]["conditions"].count(TRAJECTORY_CONDITION) == 1
    assert opts["mwa"]["target_status"] == "uncertain" and opts["rfa"]["target_status"] == "reaches"
    assert opts["mwa"]["tier"] == opts["rfa"]["tier"]  # the unverified path keeps the tier
    assert opts["rfa"]["rank"] < opts["mwa"]["rank"]
