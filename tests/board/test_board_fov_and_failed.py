"""Issue 13: a lesion cut by the field of view, a failed simulation, and the whole ranking rule.

References (independent of latplan): ESMO mCRC 2023 (Cervantes et al., Ann Oncol 2023;34:10-32: resection of
resectable colorectal liver metastases; local treatment of oligometastatic disease) and COLLISION (van der Lei et
al., Lancet Oncol 2025;26:187-199: thermal ablation non-inferior to resection for ≤ 3 cm) — a solitary 20 mm
colorectal metastasis in a fit patient has resection and thermal ablation in the top tier, systemic therapy
alone never first; Wang 2013 (CVIR 36:166) / Odisio 2017 (Br J Surg 104:760): 5 mm margin, 10 mm RAS-mutant;
issue [I] items 2 and 4 (a miss never outranks a reach in a tier; an unknown is a condition, the tier is kept).
Fake planners return the metrics named in each test (keys of the cross-helper contract) or raise as a real one
does ("needle lies outside the grid"), so each expectation follows from the numbers. Exact checks.
"""

from __future__ import annotations

from typing import Any

import pytest

from latplan.board import plan_case
from latplan.board.options import rank_options
from latplan.board.proposal import assess_case
from latplan.board.targets import STATUS_ORDER, TRUNCATED_CONDITION, judge, simulation_failed_why
from latplan.knowledge.rules import load_rule_set
from latplan.modalities import simulate
from tests.board.test_board_guideline_vignettes import (
    REGIONAL,
    expect,
    fake_planner,
    fit,
    lesions_of,
    top,
    top_tier,
)

THERMAL_6MM = {"coverage_percent": 100.0, "min_margin_mm": 6.0, "organ_volumes_in_zone_ml": {}, "unsegmented_organs": []}


def planners(metrics: dict[str, dict[str, Any]], raising: tuple[str, ...] = ()):
    """Fake planners: metrics for some modalities, a real planner's InvalidInputError for ``raising``."""
    return fake_planner(metrics, raising)


def test_failed_is_not_not_simulated_and_ranks_below_a_miss() -> None:
    """The planner raised / said it cannot place its applicators → simulation_failed; no planner → not_simulated."""
    assert simulation_failed_why(None, "planner failed: InvalidInputError: needle 2 lies outside the grid")
    assert simulation_failed_why(None, "planner could not produce a plan: no dwell positions") is not None
    assert simulation_failed_why(None, "no simulation engine for hifu in this release") is None
    assert simulation_failed_why(None, "simulations switched off (simulate=False)") is None
    assert simulation_failed_why({"placement_failed": True, "placement_failed_why": "needle 4 outside the image"},
                                 None) == "needle 4 outside the image"
    j = judge("ect", None, 5.0, failed_why="planner failed: needle 2 lies outside the grid")
    assert j.status == "simulation_failed" and "needle 2" in j.text
    assert judge("ect", None, 5.0).status == "not_simulated"
    assert STATUS_ORDER["reaches"] < STATUS_ORDER["uncertain"] == STATUS_ORDER["not_simulated"] \
        < STATUS_ORDER["misses"] < STATUS_ORDER["simulation_failed"]


def test_ranking_rule_tier_then_target_status_then_score(vignette) -> None:
    """Every option of one lesion put in the same tier with a hand-set target status and score: the order is
    status first (reaches, uncertain/not simulated, misses, failed), the total within a status; then a tier
    change dominates both."""
    meas = vignette.measurements(vignette.lesion(d=20))
    a = assess_case(None, meas, rules=load_rule_set(), patient=fit(vignette), simulate=False)
    opts = [o for o in a.options["lesion_1"] if o.rankable and o.tier_name == "eligible"][:5]
    assert len(opts) == 5
    statuses = ["simulation_failed", "misses", "reaches", "not_simulated", "reaches"]
    for o, st, sc in zip(opts, statuses, (5.0, 4.0, 0.0, 3.0, 1.0), strict=True):
        o.target = judge(o.modality, None, 5.0)
        o.target.status = st
        o.score = sc  # clinical score: dominates the total, so the expected order within a status is known
    ranked = rank_options(opts, a.weights.values)
    assert [o.target_status for o in ranked] == ["reaches", "reaches", "not_simulated", "misses", "simulation_failed"]
    assert ranked[0].score == 1.0 and ranked[1].score == 0.0
    # a failed option of a better tier still ranks above a reach of a worse one (tier first)
    from latplan.case.vocabulary import Eligibility
    ranked[0].ranking_basis = Eligibility.RELATIVE_CONTRAINDICATION
    assert rank_options(opts, a.weights.values)[-1] is ranked[0]


def test_crc_20mm_fit_ras_unknown_real_planner_outcomes(vignette, monkeypatch) -> None:
    """The real-CT check in numbers: solitary 20 mm colorectal metastasis, fit patient, RAS unknown (10 mm
    conservative target). Thermal zones reach a 6 mm minimal margin (the 5 mm wild-type target, not 10 mm); ECT and
    IRE planners fail ("needle outside the grid"). Resection and thermal ablation stay in the top tier (the
    unknown RAS is a condition, not a demotion of one kind); the failed ECT/IRE rank below every simulated option
    of their tier and say why; systemic therapy alone is not the top strategy."""
    monkeypatch.setattr(simulate, "planner_for", planners({m: THERMAL_6MM for m in ("rfa", "mwa", "cryo")},
                                                          raising=("ect", "ire")))
    pt = fit(vignette, molecular=None)
    prop = plan_case(object(), measurements=vignette.measurements(vignette.lesion(d=20)), patient=pt)
    expect(prop, top_tier_has={"resection", "mwa", "rfa"}, never_first=REGIONAL | {"sbrt", "ect", "ire"},
           strategy_kinds={"resection", "ablate_all", "local"})
    o = lesions_of(prop)["lesion_1"]
    for m in ("mwa", "rfa"):
        assert o[m]["target_status"] == "uncertain"
        assert any(c.startswith("RAS status would change the target") and "5 mm: reaches" in c
                   for c in o[m]["conditions"])
    for m in ("ect", "ire"):
        assert o[m]["target_status"] == "simulation_failed"
        assert any("simulation failed" in c and "outside the grid" in c for c in o[m]["conditions"])
        same_tier = [x for x in o.values() if x["rank"] and x["tier"] == o[m]["tier"]
                     and x["target_status"] in ("reaches", "uncertain", "misses")
                     and x["simulation"] is not None]
        assert all(x["rank"] < o[m]["rank"] for x in same_tier)
    assert prop.plan_json["strategies"][0]["kind"] != "systemic"


def test_ras_mutant_10mm_miss_is_still_a_miss(vignette, monkeypatch) -> None:
    """RAS known mutant: 6 mm < 10 mm is a miss (relative, never first); the RAS-unknown relief does not apply."""
    monkeypatch.setattr(simulate, "planner_for", planners({"mwa": THERMAL_6MM}))
    pt = fit(vignette, molecular={"ras": "mutant"})
    prop = plan_case(object(), measurements=vignette.measurements(vignette.lesion(d=20)), patient=pt)
    o = lesions_of(prop)["lesion_1"]["mwa"]
    assert o["target_status"] == "misses" and o["tier"] == "relative"
    assert top(prop)["modality"] != "mwa"


@pytest.mark.parametrize("ras", [{"ras": "wildtype"}, None])
def test_truncated_lesion_every_option_conditional_targets_uncertain(vignette, monkeypatch, ras) -> None:
    """A lesion whose measurement says truncated_by_fov: every option carries the condition and needs review,
    an ablative/radiation target that would be reached is 'uncertain', tiers are kept (MWA stays indicated,
    resection too: no silent demotion)."""
    metrics = dict(THERMAL_6MM, min_margin_mm=12.0)
    monkeypatch.setattr(simulate, "planner_for", planners({"mwa": metrics, "rfa": metrics}))
    les = vignette.lesion(d=20)
    les.update({"truncated_by_fov": True, "truncated_by_fov_faces": ["superior (k = 29)"], "size_is_lower_bound": True,
                "volume_lower_bound_ml": les["volume_ml"], "max_diameter_lower_bound_mm": 20.0})
    prop = plan_case(object(), measurements=vignette.measurements(les), patient=fit(vignette, molecular=ras))
    o = lesions_of(prop)["lesion_1"]
    for opt in o.values():
        assert TRUNCATED_CONDITION in opt["conditions"], opt["modality"]
        assert opt["needs_review"] is True and opt["lesion_truncated_by_fov"] is True
    assert o["mwa"]["target_status"] == "uncertain" and "cut by the edge of the scan" in o["mwa"]["target"]["text"]
    assert o["mwa"]["tier"] == "indicated" and o["resection"]["tier"] == "indicated"
    assert {"resection", "mwa", "rfa"} <= top_tier(prop)
    assert TRUNCATED_CONDITION in prop.plan_json["lesions"][0]["conditions"]


def test_truncated_lesion_miss_is_not_conclusive(vignette, monkeypatch) -> None:
    """The real-CT numbers of round 2: on a lesion cut by the scan the thermal zones reach a 0.0 mm minimal margin
    (at the cut face) — not conclusive: 'uncertain', MWA keeps its tier (no silent demotion), and the whole-lesion
    imaging condition is shown; ECT/IRE whose needles fall outside the grid are 'simulation_failed', ranked below."""
    cut = dict(THERMAL_6MM, min_margin_mm=0.0)
    monkeypatch.setattr(simulate, "planner_for", planners({"mwa": cut, "rfa": cut}, raising=("ect", "ire")))
    les = vignette.lesion(d=22)
    les.update({"truncated_by_fov": True, "truncated_by_fov_faces": ["superior (k = 29)"]})
    prop = plan_case(object(), measurements=vignette.measurements(les), patient=fit(vignette, molecular=None))
    o = lesions_of(prop)["lesion_1"]
    assert o["mwa"]["target_status"] == "uncertain" and o["mwa"]["tier"] == "indicated"
    assert "simulated: misses" in o["mwa"]["target"]["text"]
    assert o["ect"]["target_status"] == "simulation_failed"
    assert all(o["ect"]["rank"] > x["rank"] for x in o.values()
               if x["rank"] and x["tier"] == o["ect"]["tier"] and x["target_status"] != "simulation_failed")
    expect(prop, top_tier_has={"resection", "mwa"}, never_first=REGIONAL | {"ect", "ire"})
    assert prop.plan_json["strategies"][0]["kind"] != "systemic"


def test_ep_fov_limited_plan_is_at_best_uncertain() -> None:
    """Helper A's ECT/IRE keys: a plan whose simulated field reaches past the image edge (tissue assumed) that
    would reach 5 mm is 'uncertain' and says how far and where; fov_limited false changes nothing."""
    base = {"coverage_percent": 100.0, "min_margin_mm": 6.0, "organ_volumes_in_zone_ml": {}}
    j = judge("ire", dict(base, fov_limited=True, fov_limited_faces=["left (i = last slice)"], fov_extension_mm=4.5), 5.0)
    assert j.status == "uncertain" and "4.5 mm past the image edge (left (i = last slice))" in j.text
    assert judge("ire", dict(base, fov_limited=False, fov_limited_faces=[], fov_extension_mm=0.0), 5.0).status == "reaches"
    assert judge("ect", dict(base, min_margin_mm=2.0, fov_limited=True), 5.0).status == "misses"
