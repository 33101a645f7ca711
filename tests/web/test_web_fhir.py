"""The FHIR export against the profiles it claims (issue 7, Export).

Independent references:
- base structure: ``fhir.resources.R4B`` parses the bundle back (R4B models; the resources used
  have the R4 structure);
- profiles: the mCODE STU3 (3.0.0) / US Core 5.0.1 rules encoded with their sources in
  ``latplan/web/fhir_mcode_rules.yaml`` — the checker must pass the export AND flag each
  violation we plant (a checker that accepts everything would pass the first test alone);
- values: the tumour size in the bundle equals the plan's measured maximum diameter (plan.json).
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
from webtest_helpers import login, upload

from latplan.web.export import FHIR_MEDIA_TYPE, fhir_bundle
from latplan.web.fhir_profiles import check_bundle, load_rules
from latplan.web.jobs import run_worker

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"


@pytest.fixture
def exported(sqlite_client, sqlite_settings, case_zip):
    """(FHIR bundle as JSON, plan.json) of the small case planned by the stand-in planner, one decision."""
    csrf = login(sqlite_client, "coord")
    case_id = upload(sqlite_client, csrf, case_zip).json()["id"]
    sqlite_client.post(f"/cases/{case_id}/plan", headers={"X-CSRF-Token": csrf})
    run_worker(sqlite_settings, once=True)
    r = sqlite_client.post(f"/cases/{case_id}/decisions", headers={"accept": "application/json"}, data={
        "scope": "lesion_1", "chosen": "mwa", "rationale": "small peripheral lesion",
        "attendees": "Dr Doc — interventional radiology", "csrf_token": csrf})
    assert r.status_code == 201, r.text
    resp = sqlite_client.get(f"/cases/{case_id}/export.fhir.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == FHIR_MEDIA_TYPE == "application/fhir+json; fhirVersion=4.0"
    plan = sqlite_client.get(f"/cases/{case_id}/export.json").json()["plan"]
    return resp.json(), plan


def _entry(bundle, resource_type, profile=None):
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == resource_type and (profile is None or MCODE + profile in r.get("meta", {}).get("profile", [])):
            return r
    raise AssertionError(f"no {resource_type} {profile or ''} in the bundle")


def test_web_fhir_export_conforms_to_claimed_mcode_profiles(exported):
    bundle, plan = exported
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)  # base structure
    assert check_bundle(bundle) == []
    claimed = {p for e in bundle["entry"] for p in e["resource"].get("meta", {}).get("profile", [])}
    assert claimed == {MCODE + p for p in ("mcode-cancer-patient", "mcode-secondary-cancer-condition",
                                           "mcode-tumor", "mcode-tumor-size")}
    assert claimed <= set(load_rules()["profiles"])  # nothing claimed that is not checked
    assert load_rules()["ig"]["version"] == "3.0.0" and load_rules()["ig"]["sources"]
    size = _entry(bundle, "Observation", "mcode-tumor-size")
    assert size["component"][0]["valueQuantity"]["value"] == pytest.approx(
        plan["lesions"][0]["measurements"]["max_diameter_mm"], abs=0.05)
    cond = _entry(bundle, "Condition", "mcode-secondary-cancer-condition")  # small case: colorectal primary
    assert {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C78.7"} in [
        {k: c[k] for k in ("system", "code")} for c in cond["code"]["coding"]]
    cond_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition")
    assert _entry(bundle, "CarePlan")["addresses"][0]["reference"] == cond_url


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
    bundle = fhir_bundle(case, plan, [decision])  # type: ignore[arg-type]
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
def test_web_fhir_checker_flags_each_planted_violation(built, what, mutate, rule_id):
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
def test_web_fhir_condition_profile_follows_the_primary(primary, profile, code):
    """Primary liver cancers are PrimaryCancerConditions, liver lesions of other primaries are
    SecondaryCancerConditions; an unknown primary claims no profile (and no code is invented)."""
    case = SimpleNamespace(id=7, patient_ref="P-7", summary={"lesion_ids": ["lesion_1"]})
    plan = {"patient": {"primary": primary} if primary else {},
            "lesions": [{"id": "lesion_1", "measurements": {"max_diameter_mm": 21.4}}]}
    bundle = fhir_bundle(case, plan, [])  # type: ignore[arg-type]
    assert check_bundle(bundle) == []
    cond = _entry(bundle, "Condition")
    if profile is None:
        assert "meta" not in cond and "coding" not in cond["code"]
        assert "extension" not in _entry(bundle, "BodyStructure")
    else:
        assert cond["meta"]["profile"] == [MCODE + profile]
        assert code in [c["code"] for c in cond["code"]["coding"]]
