"""The FHIR export of the app against the profiles it claims (issue 7, Export).

The bundle builder and the profile checker alone are tested in ``tests/interop/test_fhir.py``.

Independent references: those of ``tests/interop/test_fhir.py`` (``fhir.resources.R4B`` parses the
bundle back; the checker's mCODE STU3 / US Core 5.0.1 rules, ``latplan/interop/fhir_mcode_rules.yaml``,
must pass the export AND flag each violation planted), and:
- values: the tumour size in the bundle equals the plan's measured maximum diameter (plan.json).
"""

from __future__ import annotations

import pytest
from webtest_helpers import login, upload

from latplan.interop.fhir import FHIR_MEDIA_TYPE
from latplan.interop.fhir_profiles import check_bundle, load_rules
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
