"""One target per kind (latplan.board.targets) and the patient sheet's comparability rule.

References: Wang 2013 (CVIR 36:166: local tumour progression by minimal margin — the margin, not tumour coverage,
decides) and Odisio 2017 (10 mm for RAS-mutant); issue [I] item 2 (an option that reaches the target only at the
optimistic end of its uncertainty band is "uncertain"); CIRSE 2020 (organs at risk, hydrodissection); latplan requirement
"Comparing outcomes honestly" (figures only side by side at the same endpoint and time point). Exact checks on
hand-chosen metrics (the expected status follows from the numbers).
"""

from __future__ import annotations

from latplan.board.option_grid import option_grid
from latplan.board.targets import judge


def test_ect_ire_judged_against_margin_not_tumour_coverage() -> None:
    """Round-1 bug: ECT/IRE with full tumour coverage but −1.0 / −2.0 mm margin ranked #1. Same target as thermal."""
    for mod in ("ect", "ire", "mwa"):
        j = judge(mod, {"coverage_percent": 100.0, "min_margin_mm": -1.0}, 5.0)
        assert j.status == "misses", mod
        assert judge(mod, {"coverage_percent": 100.0, "min_margin_mm": 6.0}, 5.0).status == "reaches"


def test_uncertain_when_only_optimistic_end_reaches() -> None:
    j = judge("mwa", {"coverage_percent": 100.0, "min_margin_mm": 4.0, "min_margin_range_mm": [2.0, 6.5]}, 5.0)
    assert j.status == "uncertain"
    assert judge("mwa", {"coverage_percent": 100.0, "min_margin_mm": 4.0, "min_margin_range_mm": [2.0, 4.5]}, 5.0
                 ).status == "misses"


def test_target_coverage_key_and_ras_unknown_both_margins() -> None:
    j = judge("ire", {"target_coverage_percent": 99.5, "target_margin_mm": 10.0, "coverage_percent": 100.0,
                      "min_margin_mm": 7.0}, 10.0, alt_margins_mm=(5.0, 10.0))
    assert j.status == "misses" and j.by_margin == {"5": "reaches", "10": "misses"}


def test_absent_keys_are_unknown_not_safe() -> None:
    assert judge("rfa", {}, 5.0).status == "uncertain"
    j = judge("rfa", {"coverage_percent": 100.0, "min_margin_mm": 6.0}, 5.0)
    assert any("not reported" in u for u in j.unchecked)
    assert judge("ibt", {"d100_gy": 20.0}, None, prescription_gy=15.0).status == "uncertain"  # organ limits absent
    assert judge("ibt", {"d100_gy": 20.0, "constraints_met": True}, None, prescription_gy=15.0).status == "reaches"
    assert judge("ibt", {"d100_gy": 12.0, "constraints_met": True}, None, prescription_gy=15.0).status == "misses"


def test_organs_in_zone_threshold_and_diaphragm_caution() -> None:
    j = judge("mwa", {"coverage_percent": 100.0, "min_margin_mm": 6.0,
                      "organ_volumes_in_zone_ml": {"gallbladder": 1.14, "kidney": 0.05, "diaphragm": 0.8}}, 5.0)
    assert [(o, round(v, 2)) for o, v, _ in j.organs] == [("gallbladder", 1.14)]
    assert j.cautions and "diaphragm" in j.cautions[0]


def test_patient_sheet_no_figures_side_by_side_at_other_time_points() -> None:
    """A 1-month complete response and a 6-month local control are not shown as numbers beside each other."""
    def opt(mod, rank, lc):
        return {"modality": mod, "rank": rank, "eligibility": "eligible", "hospital_stay_days": 1, "sessions": 1,
                "repeatability": {"level": 3}, "needs_review": False, "local_control": lc}
    rows = option_grid([{"id": "lesion_1", "options": [
        opt("ect", 1, {"value_percent": 85, "time_point_months": 1, "endpoint": "complete_response", "comparable": False}),
        opt("ibt", 2, {"value_percent": 87, "time_point_months": 6, "endpoint": "local_control", "comparable": False}),
        opt("rfa", 3, {"value_percent": 74, "time_point_months": 24, "endpoint": "local_control", "comparable": True})]}])
    works = {r["modality"]: r["works"] for r in rows[0]["rows"]}
    assert "cannot be compared" in works["ect"] and "cannot be compared" in works["ibt"]
    assert "74 in 100" in works["rfa"]


def test_colorectal_margin_figures_not_shown_for_hcc(vignette, monkeypatch) -> None:
    """Wang 2013 (colorectal metastases) is not an HCC figure: a simulated 7 mm margin gets the 74 % 2-year figure
    for a colorectal patient and none for an HCC patient (issue [I]: figures from the right population)."""
    from latplan.board import plan_case
    from latplan.modalities import simulate
    from latplan.planning.types import TreatmentPlan

    def planner_for(modality):
        if modality != "rfa":
            raise simulate.NotAvailableError("rfa only")
        return lambda case, lesion_id, measurements=None, **_k: TreatmentPlan(
            "rfa", lesion_id, {"coverage_percent": 100.0, "min_margin_mm": 7.0}, applicators=[], engine="fake")

    monkeypatch.setattr(simulate, "planner_for", planner_for)
    m = vignette.measurements(vignette.lesion(d=20))
    crc = plan_case(object(), measurements=m, patient=vignette.patient())
    hcc = plan_case(object(), measurements=m, patient=vignette.patient(primary="hcc", molecular=None))

    def figs(p):
        o = next(o for o in p.plan_json["lesions"][0]["options"] if o["modality"] == "rfa")
        return [f["figure_id"] for f in o["local_control"]["figures"]]
    assert "LC-ABL-MARGIN-6-10" in figs(crc)
    assert not any(f.startswith("LC-ABL-MARGIN") for f in figs(hcc))


def test_board_context_lists_conditions_once(vignette) -> None:
    """patient_context shows computed Child-Pugh beside the recorded class; lesion_conditions lists each once."""
    from latplan.board.context import lesion_conditions, patient_context
    from latplan.board.options import assess_options
    from latplan.knowledge.features import patient_features
    from latplan.knowledge.profiles import load_profiles
    from latplan.knowledge.rules import load_rule_set
    from latplan.modalities.base import Site

    les = vignette.lesion(d=25, not_segmented=["bile_duct"])
    pt = vignette.patient(child_pugh="A", labs={"bilirubin_mg_dl": 2.5, "albumin_g_dl": 3.0, "inr": 1.5},
                          ascites_grade="mild", encephalopathy="none")
    _ctx, opts = assess_options(Site(les, {}, (les,)), pt, load_rule_set(), load_profiles())
    conds = lesion_conditions(opts)
    assert conds.count("conditional — verify clearance of bile_duct on imaging") == 1
    pc = patient_context(patient_features(pt, {}, [les]))
    assert pc["child_pugh"]["computed_class"] == "B" and pc["child_pugh"]["effective_class"] == "A"
    assert any("components give B" in f for f in pc["flags"])


def test_uncertain_never_above_reaching_in_same_tier(vignette, monkeypatch) -> None:
    """Issue [I] item 2: an option reaching its target only at the optimistic end of its band ranks below one that
    reaches it nominally, in the same tier (both indicated by COLLISION for a 20 mm colorectal metastasis)."""
    from latplan.board import plan_case
    from latplan.modalities import simulate
    from latplan.planning.types import TreatmentPlan

    metrics = {"mwa": {"coverage_percent": 100.0, "min_margin_mm": 4.0, "min_margin_range_mm": [2.5, 6.0],
                       "organ_volumes_in_zone_ml": {}},
               "rfa": {"coverage_percent": 100.0, "min_margin_mm": 5.5, "min_margin_range_mm": [4.0, 7.0],
                       "organ_volumes_in_zone_ml": {}}}

    def planner_for(modality):
        if modality not in metrics:
            raise simulate.NotAvailableError("fake")
        return lambda case, lesion_id, measurements=None, **_k: TreatmentPlan(
            modality, lesion_id, dict(metrics[modality]), applicators=[], engine="fake")

    monkeypatch.setattr(simulate, "planner_for", planner_for)
    prop = plan_case(object(), measurements=vignette.measurements(vignette.lesion(d=20)), patient=vignette.patient())
    o = {x["modality"]: x for x in prop.plan_json["lesions"][0]["options"]}
    assert o["rfa"]["target_status"] == "reaches" and o["mwa"]["target_status"] == "uncertain"
    assert o["rfa"]["tier"] == "indicated"
    assert o["rfa"]["rank"] == 1
    assert o["mwa"]["tier"] == o["rfa"]["tier"]  # uncertain keeps the tier ...
    assert o["mwa"]["rank"] > o["rfa"]["rank"]   # ... and ranks below the option that reaches


def test_radiation_organs_not_segmented_are_unchecked_not_met() -> None:
    """"Unknown is not safe" (docs/architecture.md): an SBRT screen that could not check the heart (not segmented)
    reports it, and the judgement lists it as unchecked (a condition on the option); the status is the screen's
    ("reaches" for a feasible schedule: the limits it did check) — as for the ablative options' unsegmented organs."""
    j = judge("sbrt", {"feasible": True, "constraints_met": True, "bed10_gy": 112.5,
                       "unsegmented_organs": ["heart", "esophagus"]}, None)
    assert j.status == "reaches" and j.unchecked == ["heart", "esophagus"]
    assert judge("sbrt", {"feasible": True, "constraints_met": True}, None).unchecked == []
