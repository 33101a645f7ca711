"""Shared decision-making: weights move the ranking in the expected direction, the sensitivity analysis
names the flip point, and preferences never lift a contraindicated option.

Reference: the weighted-sum definition in latplan.board.preferences (criteria values from
knowledge/modalities.yaml); expected directions follow from the profiles (SBRT is the only
non-invasive option with no hospital stay; resection the most invasive). Exact comparisons.
"""

from __future__ import annotations

from latplan.board import plan_case
from latplan.board.preferences import CRITERIA, sensitivity, weights_from_patient


def ranks(prop, lid="lesion_1"):
    le = next(le for le in prop.plan_json["lesions"] if le["id"] == lid)
    return {o["modality"]: o["rank"] for o in le["options"]}


def test_absent_preferences_equal_weights_flagged(vignette) -> None:
    w = weights_from_patient(vignette.patient())
    assert not w.elicited and len(set(w.values.values())) == 1
    assert "not yet elicited" in w.to_json()["flag"]


def test_invasiveness_weight_moves_non_invasive_options_up(vignette) -> None:
    """Raising invasiveness/stay/recovery importance moves SBRT (non-invasive) up and resection down."""
    m = vignette.measurements(vignette.lesion(d=25))
    low = plan_case(None, measurements=m, patient=vignette.patient(), preferences={
        "local_control": 5, "invasiveness": 0, "recovery_time": 0, "side_effects": 3, "sessions": 3,
        "repeatability": 3, "hospital_stay": 0})
    high = plan_case(None, measurements=m, patient=vignette.patient(), preferences={
        "local_control": 5, "invasiveness": 5, "recovery_time": 5, "side_effects": 3, "sessions": 3,
        "repeatability": 3, "hospital_stay": 5})
    assert ranks(high)["sbrt"] < ranks(low)["sbrt"]
    assert ranks(high)["resection"] >= ranks(low)["resection"]
    assert high.plan_json["preferences"]["elicited"] is True


def test_sensitivity_names_flip_point(vignette) -> None:
    """Vessel-adjacent 35 mm lesion judged unresectable: MWA and IBT close at the top of the eligible tier;
    sensitivity names the criterion and the weight at which the top changes, and re-ranking at that weight really
    flips it. (Issue [I]: the round-1 input, a 25 mm lesion, now has MWA indicated — COLLISION — above eligible IBT,
    which no weight may overturn, so the close ranking is made with a lesion where no option is indicated.)"""
    v = [{"name": "hepatic_vein_right", "role": "hepatic_vein", "distance_mm": 2.0, "calibre_mm": 6.0}]
    m = vignette.measurements(vignette.lesion(d=35, vessels=v))
    pt = vignette.patient(extra={"resectable": False})
    prop = plan_case(None, measurements=m, patient=pt)
    flips = prop.plan_json["sensitivity"]["lesions"]["lesion_1"]
    assert flips, "a close ranking must have a flip point"
    f = flips[0]
    assert f["criterion"] in CRITERIA and f["top_before"] != f["top_after"] and f["text"]
    weights = dict(prop.plan_json["preferences"]["weights"])
    weights[f["criterion"]] = f["to_weight"]
    flipped = plan_case(None, measurements=m, patient=pt, preferences=weights)
    r = ranks(flipped)
    assert min(r, key=lambda k: r[k] or 99) == f["top_after"]


def test_preferences_never_lift_contraindicated(vignette) -> None:
    """Whatever the weights, a contraindicated option (RFA for 6 cm) stays unranked."""
    m = vignette.measurements(vignette.lesion(d=60))
    for c in CRITERIA:
        prefs = dict.fromkeys(CRITERIA, 0.0)
        prefs[c] = 5.0
        prop = plan_case(None, measurements=m, patient=vignette.patient(), preferences=prefs)
        assert ranks(prop)["rfa"] is None


def test_sensitivity_function_on_toy_ranking() -> None:
    """Toy: A wins while w_lc < 2 (analytic: A = 1·w_inv, B = 1·w_lc with w_inv = 2) → flip at 2.25 (step 0.25)."""
    def order(w):
        a, b = w["invasiveness"], w["local_control"]
        return ["A", "B"] if a >= b else ["B", "A"]

    w = dict.fromkeys(CRITERIA, 1.0)
    w["invasiveness"] = 2.0
    flips = {f.criterion: f for f in sensitivity(order, w)}
    assert flips["local_control"].to_weight == 2.25
    assert flips["invasiveness"].to_weight == 0.75
    assert set(flips) == {"local_control", "invasiveness"}


def test_ties_at_the_top_are_said(vignette) -> None:
    """RFA and MWA have identical profiles and rules for a small peripheral lesion: the sensitivity output says
    they are tied rather than pretending the list order is a preference."""
    prop = plan_case(None, measurements=vignette.measurements(vignette.lesion(d=18)), patient=vignette.patient())
    sens = prop.plan_json["sensitivity"]
    assert set(sens["ties"]["lesion_1"]) >= {"rfa", "mwa"}
    assert any("tied" in n for n in sens["notes"])


def test_local_control_only_patient_brings_resection_to_top(vignette) -> None:
    """Issue [I] bias fix: a patient who values only local control (all other weights 0) ranks resection first
    for a resectable solitary 18 mm colorectal metastasis (resection: lowest local recurrence, seed; the five
    burden criteria form one composite and no longer out-vote local control)."""
    m = vignette.measurements(vignette.lesion(d=18))
    prefs = dict.fromkeys(CRITERIA, 0.0)
    prefs["local_control"] = 5.0
    prop = plan_case(None, measurements=m, patient=vignette.patient(), preferences=prefs)
    r = ranks(prop)
    assert min(r, key=lambda k: r[k] or 99) == "resection"
