"""The FHIR/mCODE bundle builder and its offline profile checker (moved from tests/web, issue [H] 5).

Independent references:
- base structure: ``fhir.resources.R4B`` parses the bundle back (R4B models; the resources used
  have the R4 structure);
- profiles: the mCODE STU3 (3.0.0) / US Core 5.0.1 rules encoded with their sources in
  ``latplan/interop/fhir_mcode_rules.yaml`` — the checker must pass the export AND flag each
  violation we plant (a checker that accepts everything would pass the first test alone);
- resource ids: FHIR R4 ``id`` datatype, ``[A-Za-z0-9.-]{1,64}``
  (http://hl7.org/fhir/R4/datatypes.html#id).
"""

from __future__ import annotations

import copy
import re
from types import SimpleNamespace

import pytest

from latplan.interop.fhir import FhirExportError, fhir_bundle, fhir_id
from latplan.interop.fhir_profiles import check_bundle

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"


def _entry(bundle, resource_type, profile=None):
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == resource_type and (profile is None or MCODE + profile in r.get("meta", {}).get("profile", [])):
            return r
    raise AssertionError(f"no {resource_type} {profile or ''} in the bundle")


@pytest.fixture(scope="module")
def built():
    """A conforming bundle built directly (no app): colorectal primary, one lesion, one decision."""
    case = SimpleNamespace(id=3, patient_ref="P-3", summary={"lesion_ids": ["lesion_1"]})
    plan = {"patient": {"primary": "colorectal"}, "created": "2026-01-05T10:00:00+00:00",
            "lesions": [{"id": "lesion_1", "measurements": {"max_diameter_mm": 18.3}}]}
    decision = {"id": 1, "scope": "lesion_1", "version": 1, "chosen_kind": "option", "chosen": "mwa",
                "top_ranked": "mwa", "deviation": None, "supersedes_id": None, "rationale": "r",
                "attendees": [{"name": "Dr A", "specialty": "surgery"}], "patient_preference": "",
                "recorded_at": "2026-01-05T11:00:00+00:00"}
    bundle = fhir_bundle(case, plan, [decision])
    assert check_bundle(bundle) == []
    return bundle


def _mutations():
    """(description, mutate(bundle), rule id the checker must report)."""

    def res(b, rtype, profile=None):
        return _entry(b, rtype, profile)

    def two_longest(b):
        obs = res(b, "Observation", "mcode-tumor-size")
        obs["component"].append(copy.deepcopy(obs["component"][0]))

    def foreign_claim(b):
        res(b, "CarePlan").setdefault("meta", {})["profile"] = [MCODE + "mcode-cancer-related-surgical-procedure"]

    return [
        ("patient without gender", lambda b: res(b, "Patient").pop("gender"), "pat-gender"),
        ("patient gender not a FHIR code", lambda b: res(b, "Patient").update(gender="M"), "pat-gender-binding"),
        ("patient without name", lambda b: res(b, "Patient").pop("name"), "pat-name"),
        ("name with neither family, given nor data-absent-reason", lambda b: res(b, "Patient").update(name=[{"text": "x"}]),
         "pat-name-us-core-6"),
        ("identifier without system", lambda b: res(b, "Patient")["identifier"][0].pop("system"), "pat-identifier-parts"),
        ("condition without category", lambda b: res(b, "Condition").pop("category"), "cond-category"),
        ("condition category outside US Core", lambda b: res(b, "Condition")["category"][0]["coding"][0].update(code="x"),
         "cond-category-us-core"),
        ("condition subject not in the bundle", lambda b: res(b, "Condition")["subject"].update(reference="urn:x"),
         "cond-subject-patient"),
        ("secondary cancer with a stage", lambda b: res(b, "Condition").update(stage=[{"summary": {"text": "IV"}}]),
         "scc-no-stage"),
        ("condition without clinicalStatus", lambda b: res(b, "Condition").pop("clinicalStatus"), "cond-con-3"),
        ("tumor size with another LOINC code", lambda b: res(b, "Observation")["code"]["coding"][0].update(code="8302-2"),
         "ts-code"),
        ("tumor size in inches", lambda b: res(b, "Observation")["component"][0]["valueQuantity"].update(code="[in_i]"),
         "ts-longest-dimension"),
        ("tumor size without focus or specimen", lambda b: res(b, "Observation").pop("focus"), "ts-focus-or-specimen"),
        ("two longest dimensions", two_longest, "ts-longest-dimension"),
        ("tumor with another morphology", lambda b: res(b, "BodyStructure")["morphology"]["coding"][0].update(code="1"),
         "tumor-morphology"),
        ("tumor identifier not typed BodyStructure", lambda b: res(b, "BodyStructure")["identifier"][0].pop("type"),
         "tumor-identifier-slice"),
        ("tumor without location", lambda b: res(b, "BodyStructure").pop("location"), "tumor-location"),
        ("a claim latplan does not check", foreign_claim, "unchecked-claim"),
    ]


@pytest.mark.parametrize(("what", "mutate", "rule_id"), _mutations(), ids=[m[0] for m in _mutations()])
def test_fhir_checker_flags_each_planted_violation(built, what, mutate, rule_id):
    bundle = copy.deepcopy(built)
    mutate(bundle)
    found = {v.rule_id for v in check_bundle(bundle)}
    assert rule_id in found, (what, found)


@pytest.mark.parametrize(("primary", "profile", "code"), [
    ("hcc", "mcode-primary-cancer-condition", "C22.0"),
    ("cholangiocarcinoma", "mcode-primary-cancer-condition", "C22.1"),
    ("breast", "mcode-secondary-cancer-condition", "C78.7"),
    (None, None, None),
])
def test_fhir_condition_profile_follows_the_primary(primary, profile, code):
    """Primary liver cancers are PrimaryCancerConditions, liver lesions of other primaries are
    SecondaryCancerConditions; an unknown primary claims no profile (and no code is invented)."""
    case = SimpleNamespace(id=7, patient_ref="P-7", summary={"lesion_ids": ["lesion_1"]})
    plan = {"patient": {"primary": primary} if primary else {},
            "lesions": [{"id": "lesion_1", "measurements": {"max_diameter_mm": 21.4}}]}
    bundle = fhir_bundle(case, plan, [])
    assert check_bundle(bundle) == []
    cond = _entry(bundle, "Condition")
    if profile is None:
        assert "meta" not in cond and "coding" not in cond["code"]
        assert "extension" not in _entry(bundle, "BodyStructure")
    else:
        assert cond["meta"]["profile"] == [MCODE + profile]
        assert code in [c["code"] for c in cond["code"]["coding"]]


@pytest.mark.parametrize("lesion_id", ["lesion 1/left", "läsion_ü", "x" * 200, "a.b-c", "seg8 (dome)", "1"])
def test_fhir_unusual_lesion_ids_export_valid_ids(lesion_id):
    """Any lesion name gives valid FHIR ids (R4 id datatype), the name kept as identifier; a decision
    on that lesion still addresses its Condition. Before: pydantic rejected the id → HTTP 500."""
    case = SimpleNamespace(id=9, patient_ref="P-9", summary={"lesion_ids": [lesion_id]})
    plan = {"patient": {"primary": "colorectal"},
            "lesions": [{"id": lesion_id, "measurements": {"max_diameter_mm": 12.0}}]}
    decision = {"id": 4, "scope": lesion_id, "version": 1, "chosen_kind": "option", "chosen": "mwa",
                "top_ranked": "mwa", "deviation": None, "supersedes_id": None, "rationale": "r",
                "attendees": [{"name": "Dr A", "specialty": "surgery"}], "patient_preference": "",
                "recorded_at": "2026-01-05T11:00:00+00:00"}
    bundle = fhir_bundle(case, plan, [decision])
    assert check_bundle(bundle) == []
    ids = [e["resource"]["id"] for e in bundle["entry"]]
    assert all(re.fullmatch(r"[A-Za-z0-9.-]{1,64}", i) for i in ids), ids
    cond = _entry(bundle, "Condition")
    assert cond["identifier"][0]["value"] == lesion_id
    cond_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition")
    assert _entry(bundle, "CarePlan")["addresses"][0]["reference"] == cond_url
    assert fhir_id(9, "lesion 1/left") != fhir_id(9, "lesion 1-left")  # distinct names stay distinct


def test_fhir_invalid_bundle_is_an_input_error():
    """A bundle FHIR cannot hold (a decision time that is not a dateTime) raises FhirExportError, not a 500."""
    case = SimpleNamespace(id=2, patient_ref="P-2", summary={"lesion_ids": ["lesion_1"]})
    decision = {"id": 1, "scope": "patient", "version": 1, "chosen_kind": "strategy", "chosen": "x",
                "top_ranked": None, "deviation": None, "supersedes_id": None, "rationale": "r",
                "attendees": [], "patient_preference": "", "recorded_at": "yesterday"}
    with pytest.raises(FhirExportError, match="cannot be exported"):
        fhir_bundle(case, {}, [decision])
