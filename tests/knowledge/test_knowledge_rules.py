"""Rule files: validation on load, hospital overrides by id, and the deciding numbers of the clinical sources below.

References: seed (Kovács et al., Front Oncol 2021;11:616058: RFA ≤ 3.5 cm and MWA/cryo ≤ 5 cm); heat sink for
vessels ≥ 3 mm within 10 mm, Lu 2003; FLR 20/30/40 %, Abdalla 2006; RAS → 10 mm margin,
Odisio 2017 / Calandri 2018. Tolerance: exact (thresholds are data).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from latplan.errors import KnowledgeError
from latplan.knowledge import load_outcomes, load_profiles, load_rule_set, rules_from_text

HEADER = 'rule_set: {name: test, version: "1"}\n'


def test_core_rules_load_and_every_rule_cites() -> None:
    rs = load_rule_set()
    assert rs.name == "latplan-core" and rs.version
    assert len(rs) > 60
    for r in rs.rules.values():
        assert r.citations and all(c.text for c in r.citations), r.id
        assert r.evidence_level.startswith(("CEBM", "GRADE"))


@pytest.mark.parametrize(("rule_id", "number"), [
    ("RFA-SIZE-35", "35"), ("MWA-SIZE-50", "50"), ("CRYO-SIZE-50", "50"), ("RFA-HEATSINK-3MM", "calibre_mm >= 3"),
    ("RFA-HEATSINK-3MM", "distance_mm < 10"), ("RES-FLR-NORMAL-20", "< 20"), ("RES-FLR-CHEMO-30", "< 30"),
    ("RES-FLR-CIRRHOSIS-40", "< 40"), ("MARGIN-RAS-10MM", '"mutant"'), ("ECT-BLEOMYCIN-CUMULATIVE", "400"),
    ("TARE-LUNG-SHUNT", "0.2"),
])
def test_clinical_numbers_are_rules(rule_id: str, number: str) -> None:
    """Every deciding number of the clinical sources (module docstring) lives in a rule condition (not in code)."""
    assert number in load_rule_set()[rule_id].condition.text


def test_ras_margin_parameter() -> None:
    assert load_rule_set()["MARGIN-RAS-10MM"].effect.parameters == {"target_margin_mm": 10}


@pytest.mark.parametrize(("body", "message"), [
    ("rules:\n  - {id: A-1, statement: s, modalities: [rfa], condition: 'true', effect: eligible, evidence_level: CEBM 5}\n",
     "citation"),
    ("rules:\n  - {id: A-1, statement: s, modalities: [rfa], condition: 'true', effect: eligible, evidence_level: CEBM 5, citation: nope}\n",
     "not defined"),
    ("rules:\n  - {id: A-1, statement: s, modalities: [rfa], condition: 'true', effect: eligible, evidence_level: CEBM 5, citation: seed}\n"
     "  - {id: A-1, statement: s, modalities: [rfa], condition: 'true', effect: eligible, evidence_level: CEBM 5, citation: seed}\n",
     "duplicate"),
    ("rules:\n  - {id: A-1, statement: s, modalities: [rfa], condition: 'lesion.size_cm > 3', effect: eligible, evidence_level: CEBM 5, citation: seed}\n",
     "unknown lesion field"),
    ("rules:\n  - {id: A-1, statement: s, modalities: [rfa], condition: 'true', effect: maybe, evidence_level: CEBM 5, citation: seed}\n",
     "effect"),
    ("rules:\n  - {id: A-1, statement: s, modalities: [laser], condition: 'true', effect: eligible, evidence_level: CEBM 5, citation: seed}\n",
     "unknown modality"),
    ("rules:\n  - {id: A-1, statement: s, modalities: [rfa], condition: 'true', effect: eligible, evidence_level: strong, citation: seed}\n",
     "evidence_level"),
    ("rules:\n  - {id: A-1, statement: s, scope: strategy, strategies: [regional], condition: 'strategy.drug == 1', effect: {score: 0.1}, evidence_level: CEBM 5, citation: seed}\n",
     "unknown strategy field"),
    # a condition that is unknown must never make an adverse rule apply: 'conditional' is for standards of care only
    ("rules:\n  - {id: A-1, statement: s, modalities: [rfa], condition: 'patient.ecog >= 3', effect: contraindicated, evidence_level: CEBM 5, citation: seed, on_unknown: conditional}\n",
     "standard-of-care rules"),
    ("rules:\n  - {id: A-1, statement: s, modalities: [rfa], condition: 'patient.ecog >= 3', effect: {score: -0.1}, evidence_level: CEBM 5, citation: seed, on_unknown: conditional}\n",
     "standard-of-care rules"),
])
def test_malformed_rule_files_are_rejected(body: str, message: str) -> None:
    with pytest.raises(KnowledgeError, match=message):
        rules_from_text(HEADER + body)


def test_hospital_file_overrides_by_id_and_names_itself(tmp_path: Path) -> None:
    """A local pathway replaces RFA-SIZE-35 by a 30 mm limit and adds a rule; output names both sets."""
    f = tmp_path / "hospital.yaml"
    f.write_text('rule_set: {name: st-elsewhere, version: "2027.1"}\n'
                 "citations: {local: {text: 'St Elsewhere liver board pathway 2027'}}\n"
                 "rules:\n"
                 "  - {id: RFA-SIZE-35, statement: RFA up to 3 cm here., modalities: [rfa], category: size,"
                 " condition: 'lesion.max_diameter_mm > 30', effect: relative_contraindication, evidence_level: CEBM 5,"
                 " citation: local}\n"
                 "  - {id: LOCAL-NO-HIFU, statement: No HIFU device here., modalities: [hifu], condition: 'true',"
                 " effect: contraindicated, evidence_level: CEBM 5, citation: local}\n", encoding="utf-8")
    core = load_rule_set()
    rs = load_rule_set([f])
    assert "st-elsewhere" in rs.name and "2027.1" in rs.version
    assert rs["RFA-SIZE-35"].condition.text == "lesion.max_diameter_mm > 30"
    assert rs["RFA-SIZE-35"].overrides is not None
    assert "LOCAL-NO-HIFU" in rs.rules and len(rs) == len(core) + 1
    assert [s["name"] for s in rs.sources][-1] == "st-elsewhere"


def test_outcomes_and_profiles_carry_endpoint_time_population_evidence() -> None:
    for f in load_outcomes():
        assert f.endpoint and f.population and f.evidence_level and f.citation.text
    profiles = load_profiles()
    assert set(profiles) >= {"resection", "rfa", "mwa", "cryo", "hifu", "ect", "ire", "ibt", "sbrt", "tace", "tare", "hai"}
    assert all(p.main_risks and p.repeatability_text for p in profiles.values())


def test_issue_i_citation_fixes() -> None:
    """Issue [I] item 6, against the sources: heat-sink numbers are Lu 2002 (AJR 178:47, pig study), not Lu 2003;
    Wang 2013 reports 2-year LTPFS 26/46/74/80 % by margin (no 'relative risk 3.6'); EASL 2018 makes ablation
    first line only <= 2 cm (BCLC 0); the TACE bilirubin limit is not cited to EASL; RES-SOLITARY-SUPERIOR-LC
    fires for one lesion only."""
    from latplan.knowledge.rules import load_rule_set

    rs = load_rule_set()
    for rid in ("RFA-HEATSINK-3MM", "RFA-HEATSINK-5MM"):
        assert "AJR Am J Roentgenol 2002;178:47" in rs[rid].citation_text and "2003" not in rs[rid].citation_text
    assert "3.6" not in rs["MARGIN-5MM"].statement and "26, 46, 74 and 80 %" in rs["MARGIN-5MM"].statement
    assert "<= 20" in rs["HCC-ABLATION-VERY-EARLY"].condition.text
    assert "EASL" not in rs["TACE-BILIRUBIN"].citation_text
    assert rs["RES-SOLITARY-SUPERIOR-LC"].condition.text == "patient.liver_lesion_count == 1"


def test_dome_only_segments_7_8() -> None:
    """THERMAL-DOME: the dome is segments 7/8 (CIRSE 2020); a measurement flag on a segment 2/3 lesion is overruled."""
    from latplan.knowledge.features import lesion_features

    assert lesion_features({"id": "l", "segments": ["liver_segment_2"], "dome": True,
                            "distances_mm": {"diaphragm": 3.0}})["dome"] is False
    assert lesion_features({"id": "l", "segments": ["liver_segment_8"], "distances_mm": {"diaphragm": 3.0}})["dome"] is True
