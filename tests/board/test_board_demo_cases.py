"""The issue [D] checks on the phantom demo cases of [A] (real measurements; simulations off for speed,
the simulated path is exercised by benchmarks/bench_plan.py).

References as in test_board_vignettes.py. Skips with the reason while [A]'s demo specs are not built.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from latplan.board import plan_case, plan_json_text, plan_schema


def _demo(name: str):
    from latplan.phantom import build_demo_case

    return build_demo_case(name)


def _options(prop, lid=None):
    le = prop.plan_json["lesions"][0] if lid is None else next(x for x in prop.plan_json["lesions"] if x["id"] == lid)
    return {o["modality"]: o for o in le["options"]}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fig1-seg8-between-hepatic-veins", "fig2-seg4a8-third-line"])
def test_demo_fig_cases_ibt_top3_and_sequence(name: str) -> None:
    prop = plan_case(_demo(name), simulate=False)
    jsonschema.validate(json.loads(plan_json_text(prop)), plan_schema())
    assert _options(prop)["ibt"]["eligibility"] in ("eligible", "indicated")
    strategies = prop.plan_json["strategies"]
    assert any(s["rank"] <= 3 and any(st["modality"] == "ibt" for st in s["steps"]) for s in strategies)
    seq = next(s for s in strategies if s["kind"] == "sequence_tace_ibt")
    assert seq["evidence_level"] == "CEBM 4" and seq["rationale"]


@pytest.mark.slow
def test_demo_seg6_thermal_first() -> None:
    prop = plan_case(_demo("seg6-peripheral-18mm"), simulate=False)
    o = _options(prop)
    top = min((x for x in o.values() if x["rank"]), key=lambda x: x["rank"])
    assert top["modality"] in ("mwa", "rfa")


@pytest.mark.slow
def test_demo_stomach_case_radiation_carries_hollow_organ_reason() -> None:
    prop = plan_case(_demo("seg3-abutting-stomach-30mm"), simulate=False)
    o = _options(prop)
    assert any("hollow organ" in r["text"].lower() for r in o["sbrt"]["reasons"])
    assert any("hollow organ" in r["text"].lower() for r in o["ibt"]["reasons"])


@pytest.mark.slow
def test_demo_large_rfa_not_eligible() -> None:
    o = _options(plan_case(_demo("large-60mm"), simulate=False))
    assert o["rfa"]["eligibility"] in ("contraindicated", "relative_contraindication")


@pytest.mark.slow
def test_demo_four_lesions_regional_or_systemic_top3() -> None:
    prop = plan_case(_demo("four-lesions-right-lobe"), simulate=False)
    top = [s for s in prop.plan_json["strategies"] if s["rank"] <= 3]
    assert any(st["modality"] in ("tace", "tare", "hai", "systemic") for s in top for st in s["steps"])


@pytest.mark.slow
def test_demo_perivascular_rfa_heat_sink_only() -> None:
    """Perivascular demo (portal vein ≈ 8 mm at 2 mm): RFA carries the heat-sink reason, MWA/ECT/IBT do not lose
    eligibility for it (seed: heat sink most pronounced in RFA; Lu 2003)."""
    o = _options(plan_case(_demo("perivascular-rfa"), simulate=False))
    assert "RFA-HEATSINK-5MM" in {r["rule_id"] for r in o["rfa"]["reasons"]}
    for m in ("mwa", "ect", "ibt"):
        assert o[m]["eligibility"] in ("eligible", "indicated")
        assert o[m]["rank"] < o["rfa"]["rank"]


@pytest.mark.slow
def test_demo_fig2_data_drive_the_ranking() -> None:
    """Fig. 2 demo: the surgeon's 'unresectable' (case.yaml extra.resectability) contraindicates resection, and the
    progression under 2nd/3rd line fires the EVT rules that put TACE (DEBIRI) → IBT in the top strategies."""
    prop = plan_case(_demo("fig2-seg4a8-third-line"), simulate=False)
    res = _options(prop)["resection"]
    assert res["eligibility"] == "contraindicated" and "RES-UNRESECTABLE" in {r["rule_id"] for r in res["reasons"]}
    seq = next(s for s in prop.plan_json["strategies"] if s["kind"] == "sequence_tace_ibt")
    assert seq["rank"] <= 3 and "STRAT-EVT-PROGRESSION" in {r["rule_id"] for r in seq["reasons"]}


@pytest.mark.slow
def test_demo_four_lesions_no_regional_first_and_all_local_built() -> None:
    """Issue [I]: four-lesions-right-lobe (colorectal, no progression recorded) ranked TACE #1, TARE #2 and never
    built "ablate all four". ESMO 2023 / seed: regional therapy after systemic progression; COLLISION: thermal
    ablation ≤ 3 cm. Now no lesion has a regional option first, regional strategies are not in the top 3, and the
    all-local strategies (ablate all, resection + ablation) are built."""
    prop = plan_case(_demo("four-lesions-right-lobe"), simulate=False)
    for le in prop.plan_json["lesions"]:
        first = min((o for o in le["options"] if o["rank"]), key=lambda o: o["rank"])
        assert first["modality"] not in ("tace", "tare", "hai")
    kinds = [s["kind"] for s in prop.plan_json["strategies"]]
    assert "ablate_all" in kinds and "ablate_and_resect" in kinds
    assert "regional" not in kinds[:3]


@pytest.mark.slow
def test_demo_large_60mm_resection_first() -> None:
    """Solitary 60 mm colorectal metastasis, ECOG 1, remnant 57 %: resection is the standard (ESMO 2023) — first
    option and first strategy (issue [I]: resection was never ranked first across 34 lesions)."""
    prop = plan_case(_demo("large-60mm"), simulate=False)
    first = min((o for o in prop.plan_json["lesions"][0]["options"] if o["rank"]), key=lambda o: o["rank"])
    assert first["modality"] == "resection" and first["tier"] == "indicated"
    assert prop.plan_json["strategies"][0]["kind"] == "resection"
