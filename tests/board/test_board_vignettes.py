"""The issue [D] verification list on hand-written vignettes (measure_case JSON shape), rules only.

References: seed (Kovács 2021: RFA ≤ 3.5 cm, heat sink most pronounced in RFA, radioablation
limited near radiation-sensitive organs, TACE → IBT sequence in Figures 1-2, EVT for several
lesions in one lobe / progression under 1st-2nd line); latplan requirement 'unknown is not safe' (docs/architecture.md: absent data → cannot_assess);
plan.schema.json. Tolerance: exact ranks/eligibilities (the rules are deterministic).
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from latplan.board import plan_case, plan_json_text, plan_schema, write_plan_json

MODS = {"resection", "rfa", "mwa", "cryo", "hifu", "ect", "ire", "ibt", "sbrt", "tace", "tare", "hai"}


def run(vignette, *lesions, patient=None, **kw):
    return plan_case(None, measurements=vignette.measurements(*lesions, **kw), patient=patient or vignette.patient())


def opts(prop, lid="lesion_1"):
    le = next(le for le in prop.plan_json["lesions"] if le["id"] == lid)
    return {o["modality"]: o for o in le["options"]}


def check_invariants(prop) -> None:
    """Schema-valid; every modality for every lesion; no option without a reason, no reason without a citation;
    contraindicated unranked; ranks 1..n; strategies sorted by rank."""
    doc = json.loads(plan_json_text(prop))
    jsonschema.validate(doc, plan_schema())
    for le in doc["lesions"]:
        assert {o["modality"] for o in le["options"]} == MODS
        ranks = sorted(o["rank"] for o in le["options"] if o["rank"] is not None)
        assert ranks == list(range(1, len(ranks) + 1))
        for o in le["options"]:
            assert o["reasons"], o["modality"]
            assert all(r["citation"] and r["rule_id"] and r["text"] for r in o["reasons"])
            assert (o["rank"] is None) == (o["eligibility"] == "contraindicated")
            assert o["simulation"] is not None or o["simulation_why"]
    ranks = [s["rank"] for s in doc["strategies"]]
    assert ranks == sorted(ranks) and ranks[0] == 1


def test_small_peripheral_segment6_thermal_first(vignette) -> None:
    """1.8 cm peripheral seg VI lesion away from vessels: MWA or RFA ranks first (COLLISION, seed)."""
    prop = run(vignette, vignette.lesion(d=18, segments=("6",)))
    check_invariants(prop)
    o = opts(prop)
    top = min((x for x in o.values() if x["rank"]), key=lambda x: x["rank"])
    assert top["modality"] in ("mwa", "rfa")
    assert o["rfa"]["eligibility"] == "indicated"
    assert "CRC-THERMAL-3CM" in {r["rule_id"] for r in o["mwa"]["reasons"]}
    assert prop.plan_json["strategies"][0]["steps"][0]["modality"] in ("mwa", "rfa")


def test_stomach_abutting_radiation_below_sparing_options(vignette) -> None:
    """Lesion 1 mm from the stomach (seg III, 30 mm): SBRT and IBT carry a hollow-organ reason and rank below
    options that spare it (ECT, IRE, resection, TACE); thermal ablation carries its own bowel warning."""
    prop = run(vignette, vignette.lesion(d=30, segments=("3",), dist={"stomach": 1.0}))
    check_invariants(prop)
    o = opts(prop)
    assert "SBRT-HOLLOW-10MM" in {r["rule_id"] for r in o["sbrt"]["reasons"]}
    assert "IBT-HOLLOW-5MM" in {r["rule_id"] for r in o["ibt"]["reasons"]}
    assert any("hollow organ" in r["text"].lower() for r in o["sbrt"]["reasons"])
    for sparing in ("ect", "ire", "resection"):
        for rad in ("sbrt", "ibt"):
            assert o[sparing]["rank"] < o[rad]["rank"], (sparing, rad)
    for thermal in ("rfa", "mwa"):
        assert {"THERMAL-HOLLOW-5MM", "THERMAL-HOLLOW-10MM"} <= {r["rule_id"] for r in o[thermal]["reasons"]}


def test_large_vessel_heat_sink_only_penalises_rfa(vignette) -> None:
    """A 6 mm hepatic vein 2 mm away: RFA carries the heat-sink reason (Lu 2003: all vessels > 5 mm);
    MWA, ECT and IBT are not penalised for it (their vessel rules have score ≥ 0)."""
    v = [{"name": "hepatic_vein_right", "role": "hepatic_vein", "distance_mm": 2.0, "calibre_mm": 6.0}]
    prop = run(vignette, vignette.lesion(d=25, vessels=v))
    check_invariants(prop)
    o = opts(prop)
    assert "RFA-HEATSINK-5MM" in {r["rule_id"] for r in o["rfa"]["reasons"]}
    assert o["rfa"]["eligibility"] == "relative_contraindication"
    base = plan_case(None, measurements=vignette.measurements(vignette.lesion(d=25)), patient=vignette.patient())
    ob = opts(base)
    for m in ("mwa", "ect", "ibt"):
        assert o[m]["eligibility"] == ob[m]["eligibility"], m
        assert o[m]["ranking"]["clinical_score"] >= ob[m]["ranking"]["clinical_score"], m
        assert o[m]["rank"] < o["rfa"]["rank"]


def test_six_cm_lesion_rfa_contraindicated_by_size(vignette) -> None:
    """6 cm: RFA contraindicated or relative with the size reason (seed: RFA ≤ 3.5 cm)."""
    prop = run(vignette, vignette.lesion(d=60, segments=("7",)))
    check_invariants(prop)
    o = opts(prop)
    assert o["rfa"]["eligibility"] in ("contraindicated", "relative_contraindication")
    assert "RFA-SIZE-35" in {r["rule_id"] for r in o["rfa"]["reasons"]}
    assert o["ibt"]["rank"] is not None and o["ibt"]["eligibility"] in ("eligible", "indicated")


def test_four_lesions_one_lobe_regional_or_systemic_in_top_strategies(vignette) -> None:
    """Four lesions in the right lobe, responding to first-line FOLFOX: systemic therapy (then local) among the top 3
    strategies, with rationale. Issue [I] replaced the round-1 assertion that the "several in one lobe" EVT rule lifts
    regional therapy here: for colorectal metastases the seed and ESMO 2023 place DEBIRI/SIRT after systemic
    progression, so STRAT-EVT-ONE-LOBE fires only after progression (second half of the test)."""
    lesions = [vignette.lesion(f"lesion_{i}", d=22, segments=(s,)) for i, s in zip(range(1, 5), "5678", strict=True)]
    prop = run(vignette, *lesions, flr_percent=35)
    check_invariants(prop)
    top = [s for s in prop.plan_json["strategies"] if s["rank"] <= 3]
    assert any(st["modality"] in ("tace", "tare", "hai", "systemic") for s in top for st in s["steps"])
    assert all(s["rationale"] and s["evidence_level"] for s in top)
    assert not any("STRAT-EVT-ONE-LOBE" == r["rule_id"] for s in prop.plan_json["strategies"] for r in s["reasons"])
    assert prop.plan_json["strategies"][0]["kind"] != "regional"
    assert any(s["kind"] == "ablate_all" for s in prop.plan_json["strategies"])
    progressed = vignette.patient(prior_therapies=[{"kind": "systemic", "line": 1, "regimen": "FOLFOX",
                                                    "response": "progression"}])
    prop2 = run(vignette, *lesions, patient=progressed, flr_percent=35)
    assert any("STRAT-EVT-ONE-LOBE" == r["rule_id"] for s in prop2.plan_json["strategies"] for r in s["reasons"])


def _fig_patient(vignette, **kw):
    return vignette.patient(**kw)


def test_fig1_like_ibt_eligible_and_tace_ibt_offered(vignette) -> None:
    """Seed Fig 1 data: solitary seg VIII lesion between hepatic veins after three resections: IBT eligible/indicated,
    among the top-3 strategies, and TACE (DEBIRI) → IBT offered with rationale and case-report evidence (CEBM 4)."""
    v = [{"name": "hepatic_vein_right", "role": "hepatic_vein", "distance_mm": 3.0, "calibre_mm": 7.0},
         {"name": "hepatic_vein_middle", "role": "hepatic_vein", "distance_mm": 4.0, "calibre_mm": 7.0}]
    pt = vignette.patient(prior_therapies=[{"kind": "resection"}, {"kind": "resection"}, {"kind": "resection"},
                                           {"kind": "systemic", "line": 1, "response": "partial"}])
    prop = run(vignette, vignette.lesion(d=25, segments=("8",), vessels=v), patient=pt)
    check_invariants(prop)
    o = opts(prop)
    assert o["ibt"]["eligibility"] in ("eligible", "indicated")
    strategies = prop.plan_json["strategies"]
    assert any(s["rank"] <= 3 and any(st["modality"] == "ibt" for st in s["steps"]) for s in strategies)
    seq = next(s for s in strategies if s["kind"] == "sequence_tace_ibt")
    assert [st["modality"] for st in sorted(seq["steps"], key=lambda st: st["order"])] == ["tace", "ibt"]
    assert seq["evidence_level"] == "CEBM 4" and "case report" in seq["rationale"]
    assert "RES-REPEAT-HEPATECTOMY" in {r["rule_id"] for r in o["resection"]["reasons"]}


def test_fig2_like_progression_third_line_ranks_sequence_first(vignette) -> None:
    """Seed Fig 2 data: unresectable solitary lesion at seg IVa/VIII, progressing under 3rd-line chemotherapy:
    the rules for EVT after progression lift TACE → IBT; IBT is eligible and in the top 3 strategies."""
    v = [{"name": "hepatic_vein_middle", "role": "hepatic_vein", "distance_mm": 5.0, "calibre_mm": 6.0}]
    pt = vignette.patient(extra={"resectable": False}, chemotherapy_cycles=20, prior_therapies=[
        {"kind": "systemic", "line": n, "response": "progression"} for n in (1, 2, 3)])
    prop = run(vignette, vignette.lesion(d=35, segments=("4a", "8"), vessels=v), patient=pt)
    check_invariants(prop)
    strategies = prop.plan_json["strategies"]
    top3 = [s for s in strategies if s["rank"] <= 3]
    assert any(s["kind"] == "sequence_tace_ibt" for s in top3)
    assert any("STRAT-EVT-PROGRESSION" == r["rule_id"] for s in top3 for r in s["reasons"])
    assert opts(prop)["resection"]["eligibility"] == "contraindicated"
    # the same lesion without progression data: the sequence loses its progression bonus (data, not name)
    prop2 = run(vignette, vignette.lesion(d=35, segments=("4a", "8"), vessels=v),
                patient=vignette.patient(extra={"resectable": False}))
    s2 = next(s for s in prop2.plan_json["strategies"] if s["kind"] == "sequence_tace_ibt")
    s1 = next(s for s in strategies if s["kind"] == "sequence_tace_ibt")
    assert s1["score"] > s2["score"]


def test_unknown_anatomy_is_flagged_not_ranked_as_safe(vignette) -> None:
    """No bile ducts / hepatic veins segmented: thermal options carry cannot_assess naming them and need review
    (latplan requirement: unknown is not safe, docs/architecture.md). Issue [I] replaced the round-1 assertions that such an option is ranked as
    a relative contraindication below every fully assessable option (indicated MWA/RFA fell below ECT/IRE on real
    segmentations): the unknown is now a condition "verify clearance of X" on the option, listed once, the tier is
    kept, and the option still ranks below fully assessable options of its own tier."""
    les = vignette.lesion(d=25, vessels=[{"name": "portal_vein", "role": "portal_vein", "distance_mm": 15.0,
                                          "calibre_mm": 10.0}],
                          not_segmented=["bile_duct", "hepatic_vein_right", "hepatic_vein_middle", "hepatic_vein_left"])
    prop = run(vignette, les)
    check_invariants(prop)
    o = opts(prop)
    for m in ("rfa", "mwa", "cryo"):
        assert o[m]["needs_review"]
        missing = {x for c in o[m]["cannot_assess"] for x in c["missing"]}
        assert "lesion.distance_mm.bile_duct" in missing
        assert o[m]["ranking"]["basis"] == o[m]["eligibility"]
        assert o[m]["conditions"].count("conditional — verify clearance of bile_duct on imaging") == 1
    assert any("hepatic_vein" in x for c in o["rfa"]["cannot_assess"] for x in c["missing"])
    assert o["mwa"]["tier"] == "indicated"  # CRC <= 3 cm (COLLISION): an unknown does not remove the standard of care
    safe = [x for x in o.values() if x["rank"] and not x["needs_review"] and x["tier"] == o["rfa"]["tier"]]
    assert all(x["rank"] < o["rfa"]["rank"] for x in safe)
    for x in o.values():  # no eligible option outranks the indicated ones because of the unknown
        if x["tier"] == "eligible" and x["rank"]:
            assert x["rank"] > o["mwa"]["rank"]


def test_unknown_clinical_field_gives_cannot_assess(vignette) -> None:
    """Pacemaker status absent: ECT/IRE need review with patient.pacemaker named; RAS unknown → 10 mm margin."""
    pt = vignette.patient(pacemaker=None, molecular=None)
    prop = run(vignette, vignette.lesion(d=20), patient=pt)
    o = opts(prop)
    assert o["ect"]["needs_review"]
    assert "patient.pacemaker" in {x for c in o["ect"]["cannot_assess"] for x in c["missing"]}
    assert o["mwa"]["parameters"]["target_margin_mm"] == 10


def test_ras_mutant_sets_10mm_margin(vignette) -> None:
    """RAS mutant colorectal → target margin 10 mm (Odisio 2017, Calandri 2018); wild type → 5 mm."""
    mut = opts(run(vignette, vignette.lesion(), patient=vignette.patient(molecular={"ras": "mutant"})))
    wt = opts(run(vignette, vignette.lesion()))
    assert mut["mwa"]["parameters"]["target_margin_mm"] == 10
    assert wt["mwa"]["parameters"]["target_margin_mm"] == 5


def test_hcc_oligometastatic_not_applicable(vignette) -> None:
    """HCC: oligometastatic status 'not_applicable'. Issue [I] replaced the round-1 assertion "BCLC A ≤ 3 cm →
    ablation indicated": EASL 2018 makes ablation first line in surgical candidates only up to 2 cm (BCLC 0);
    2-3 cm it competes with resection (eligible), and it is the standard where surgery is not suitable."""
    pt = vignette.patient(primary="hcc", bclc_stage="A", molecular=None)
    prop = run(vignette, vignette.lesion(d=25), patient=pt)
    assert prop.plan_json["patient"]["oligometastatic"]["status"] == "not_applicable"
    assert opts(prop)["mwa"]["eligibility"] == "eligible"
    assert "HCC-ABLATION-2-3CM" in {r["rule_id"] for r in opts(prop)["mwa"]["reasons"]}
    small = opts(run(vignette, vignette.lesion(d=18), patient=vignette.patient(primary="hcc", bclc_stage="0",
                                                                              molecular=None)))
    assert small["mwa"]["eligibility"] == "indicated"
    unfit = opts(run(vignette, vignette.lesion(d=25), patient=vignette.patient(
        primary="hcc", bclc_stage="A", molecular=None, portal_hypertension=True)))
    assert unfit["mwa"]["eligibility"] == "indicated"


def test_missing_primary_status_makes_oligo_unknown(vignette) -> None:
    prop = run(vignette, vignette.lesion(), patient=vignette.patient(primary_status=None))
    oligo = prop.plan_json["patient"]["oligometastatic"]
    assert oligo["status"] == "unknown" and "patient.primary_status" in oligo["details"]["missing"]


def test_no_local_control_comparison_across_time_points(vignette) -> None:
    """ECT's 1-month complete response and IBT's 6-month local control are never compared with each other
    or with 24-month figures: each says it is not comparable. Issue [I] replaced the round-1 assertion that the
    criterion is then a neutral 0.5 (which rewarded options without evidence over resection): it is the
    modality's ordinal local-control class, (class − 1)/4 from modalities.yaml, and says so."""
    o = opts(run(vignette, vignette.lesion()))
    for m, cls in (("ect", 3), ("ibt", 4)):
        assert o[m]["local_control"]["comparable"] is False
        assert o[m]["criteria"]["local_control"] == (cls - 1) / 4
        assert o[m]["local_control_basis"].startswith("ordinal")


def test_write_plan_json_round_trip(vignette, tmp_path) -> None:
    prop = run(vignette, vignette.lesion())
    path = write_plan_json(prop, tmp_path / "out" / "plan.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(doc, plan_schema())
    assert doc["rule_set"]["name"] == "latplan-core"
    assert doc["preferences"]["flag"] == "preferences not yet elicited: equal weights used"


def test_schema_rejects_option_without_reason(vignette) -> None:
    doc = json.loads(plan_json_text(run(vignette, vignette.lesion())))
    doc["lesions"][0]["options"][0]["reasons"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, plan_schema())


def test_hospital_rule_file_changes_plan_and_is_named(vignette, tmp_path) -> None:
    """A local pathway without a HIFU device: HIFU contraindicated with the local citation; plan.json names the
    hospital rule set and version over the core set."""
    f = tmp_path / "hospital.yaml"
    f.write_text('rule_set: {name: st-elsewhere, version: "2027.1"}\n'
                 "citations: {local: {text: 'St Elsewhere liver board pathway 2027'}}\n"
                 "rules:\n  - {id: LOCAL-NO-HIFU, statement: No HIFU device at this hospital., modalities: [hifu],"
                 " condition: 'true', effect: contraindicated, evidence_level: CEBM 5, citation: local}\n", encoding="utf-8")
    prop = plan_case(None, measurements=vignette.measurements(vignette.lesion()), patient=vignette.patient(),
                     rule_paths=[f])
    check_invariants(prop)
    rs = prop.plan_json["rule_set"]
    assert "st-elsewhere" in rs["name"] and "2027.1" in rs["version"]
    hifu = opts(prop)["hifu"]
    assert hifu["eligibility"] == "contraindicated" and hifu["rank"] is None
    assert any(r["rule_id"] == "LOCAL-NO-HIFU" and "St Elsewhere" in r["citation"] for r in hifu["reasons"])


def test_lesion_outside_liver_is_not_planned(vignette) -> None:
    """A lung metastasis in the measurements is counted and not planned by the liver board (every liver modality
    unranked with LESION-OUTSIDE-LIVER); issue [I]: it is handed to the thoracic board (tier "refer"), not
    labelled "contraindicated for all", and the strategies carry the hand-off step."""
    lung = vignette.lesion("lesion_2", d=12)
    lung["organ"] = "lung"
    prop = run(vignette, vignette.lesion(), lung)
    check_invariants(prop)
    o2 = opts(prop, "lesion_2")
    assert all(o["eligibility"] == "contraindicated" for o in o2.values())
    assert all("LESION-OUTSIDE-LIVER" in {r["rule_id"] for r in o["reasons"]} for o in o2.values())
    assert all(o["tier"] == "refer" and "thoracic board" in o["handoff"] for o in o2.values())
    top = prop.plan_json["strategies"][0]
    assert any(st["modality"] == "refer" and st["lesion_ids"] == ["lesion_2"] for st in top["steps"]) or \
        top["kind"] in ("systemic", "best_supportive_care")


def test_option_grid_plain_language(vignette) -> None:
    """Option grid rows follow the ranking, use short sentences and take numbers only from plan.json."""
    prop = run(vignette, vignette.lesion())
    grid = prop.plan_json["option_grid"][0]
    ranked = [r for r in grid["rows"] if r["rank"] is not None]
    assert [r["rank"] for r in ranked] == sorted(r["rank"] for r in ranked)
    for r in grid["rows"]:
        for key in ("fit", "stay", "sessions", "repeat", "works"):
            sentences = [s for s in r[key].split(".") if s.strip()]
            assert all(len(s.split()) <= 16 for s in sentences), r[key]


def test_hcc_intermediate_size_offers_tace_then_ablation(vignette) -> None:
    """HCC 45 mm (BCLC A): TACE + ablation for 3-7 cm is offered with its rule (PMC10954431); a colorectal
    patient with the same lesion does not get this HCC-specific strategy."""
    hcc = run(vignette, vignette.lesion(d=45), patient=vignette.patient(primary="hcc", bclc_stage="A", molecular=None))
    check_invariants(hcc)
    s = next(s for s in hcc.plan_json["strategies"] if s["kind"] == "tace_then_ablation")
    assert min(s["steps"], key=lambda st: st["order"])["modality"] == "tace"
    assert any(r["rule_id"] == "STRAT-HCC-TACE-ABLATION" for r in s["reasons"])
    crc = run(vignette, vignette.lesion(d=45))
    assert not any(s["kind"] == "tace_then_ablation" for s in crc.plan_json["strategies"])


def test_extrahepatic_lesion_does_not_block_liver_strategies(vignette) -> None:
    """A lung lesion has no local liver option; the liver lesion still gets local strategies, and the rationale
    says the lung lesion is left to systemic therapy."""
    lung = vignette.lesion("lesion_2", d=12)
    lung["organ"] = "lung"
    prop = run(vignette, vignette.lesion(), lung)
    local = [s for s in prop.plan_json["strategies"] if s["kind"] == "local"]
    assert local and all(s["steps"][0]["lesion_ids"] == ["lesion_1"] for s in local)
    assert all("lesion_2" in s["rationale"] for s in local)
