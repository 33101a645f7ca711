"""The HL7 FHIR R4 bundle of a case (mCODE profile claims), built outside the web layer.

FHIR version: ``fhir.resources`` 8 ships R5 as default and R4B (4.3.0) as its R4-line
subpackage (no R4 4.0.1 package). The bundle is built and validated with
``fhir.resources.R4B``; the resources it uses (Patient, Condition, BodyStructure, Observation,
CarePlan, Bundle) are unchanged between R4 and R4B (R4B changed only a few low-maturity
resources: http://hl7.org/fhir/R4B/diff.html), and the mCODE profiles it claims are R4 (4.0.1)
profiles, so the export declares FHIR R4: ``application/fhir+json; fhirVersion=4.0``
(http://hl7.org/fhir/R4/http.html#version-parameter).

Profiles claimed (``meta.profile``) and checked offline by :mod:`latplan.interop.fhir_profiles`
against the rules encoded in ``fhir_mcode_rules.yaml`` (mCODE STU3 3.0.0):
- Patient → mCODE CancerPatient (US Core Patient): the pseudonym as identifier, the name
  masked with a Data Absent Reason (the export is pseudonymous), gender ``unknown`` (not exported);
- each lesion → a Condition: mCODE SecondaryCancerCondition (liver metastasis of a non-liver
  primary) or PrimaryCancerCondition (HCC, intrahepatic cholangiocarcinoma) — only when the
  primary tumour is known; otherwise a plain Condition without a profile claim;
- each lesion with a measured maximum diameter → an mCODE Tumor (BodyStructure) and a
  TumorSize Observation (longest dimension in mm, from the plan's measurements).
The board's decisions are plain CarePlans (mCODE STU3 has no profile for a treatment decision):
one per latest decision, with rationale, attendees, preference and deviation as notes, and
``replaces`` for corrections.

Resource ids: FHIR ids are ``[A-Za-z0-9.-]{1,64}`` (http://hl7.org/fhir/R4/datatypes.html#id);
a lesion id outside that alphabet (spaces, slashes, non-ASCII) or too long is mapped to a safe id
with a short hash suffix, so that any lesion name exports (the original stays in ``identifier``).
A bundle that still fails validation raises :class:`FhirExportError` (an input error, never a 500).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pydantic import ValidationError

from latplan.errors import InvalidInputError


class FhirExportError(InvalidInputError):
    """The case cannot be written as a valid FHIR bundle (the message says which part)."""


class FhirCase(Protocol):
    """What the bundle needs of a stored case (``latplan.store.models.CaseRecord`` has it)."""

    id: int
    patient_ref: str
    summary: dict[str, Any]


#: at most 48 characters, so that the longest prefix ("tumor-size-", 11) keeps ids within 64
_ID_OK = re.compile(r"^[A-Za-z0-9.-]{1,48}$")


def fhir_id(*parts: object) -> str:
    """A FHIR id part for ``parts`` joined by ``-`` (``_`` becomes ``-``), at most 48 characters."""
    raw = "-".join(str(p) for p in parts)
    plain = raw.replace("_", "-")
    if _ID_OK.match(plain):
        return plain
    digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
    clean = re.sub(r"[^A-Za-z0-9.-]+", "-", plain).strip("-.")[:34] or "x"
    return f"{clean}-{digest}"


#: media type of the FHIR export: R4 content (see the module docstring)
FHIR_MEDIA_TYPE = "application/fhir+json; fhirVersion=4.0"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
SNOMED, ICD10CM, LOINC, UCUM = ("http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm", "http://loinc.org",
                                "http://unitsofmeasure.org")
#: lesion diagnosis by primary tumour: (mCODE profile, codings). Secondary: SNOMED CT 94381002 is in
#: the hierarchy under 128462008 that SecondaryCancerDisorderVS names; ICD-10-CM C78.7. Primary liver
#: cancers: ICD-10-CM C22.0 (liver cell carcinoma = HCC), C22.1 (intrahepatic bile duct carcinoma).
_SECONDARY_LIVER = ("mcode-secondary-cancer-condition", [
    {"system": SNOMED, "code": "94381002", "display": "Secondary malignant neoplasm of liver (disorder)"},
    {"system": ICD10CM, "code": "C78.7", "display": "Secondary malignant neoplasm of liver and intrahepatic bile duct"}])
_PRIMARY_LIVER = {
    "hcc": ("mcode-primary-cancer-condition", [{"system": ICD10CM, "code": "C22.0", "display": "Liver cell carcinoma"}]),
    "cholangiocarcinoma": ("mcode-primary-cancer-condition",
                           [{"system": ICD10CM, "code": "C22.1", "display": "Intrahepatic bile duct carcinoma"}]),
}
_LIVER_SITE = {"coding": [{"system": SNOMED, "code": "10200004", "display": "Liver structure (body structure)"}], "text": "liver"}


def _lesion_diagnosis(primary: object) -> tuple[str, list[dict[str, str]]] | None:
    """(mCODE profile id, codings) of a liver lesion given the patient's primary; None when unknown."""
    if not primary:
        return None
    p = str(primary).lower()
    return _PRIMARY_LIVER.get(p, _SECONDARY_LIVER)


def fhir_bundle(case: FhirCase, plan: Mapping[str, Any] | None,
                decisions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """An HL7 FHIR R4 ``collection`` Bundle of the case's lesions, their sizes and the board's decisions."""
    from fhir.resources.R4B.bundle import Bundle

    pid = f"patient-{case.id}"
    patient_ref = f"urn:latplan:{pid}"
    entries: list[dict[str, Any]] = [{
        "fullUrl": patient_ref,
        "resource": {"resourceType": "Patient", "id": pid, "meta": {"profile": [MCODE + "mcode-cancer-patient"]},
                     "identifier": [{"system": "urn:latplan:pseudonym", "value": case.patient_ref}],
                     # pseudonymous export: no name (masked), sex not exported
                     "name": [{"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                              "valueCode": "masked"}]}],
                     "gender": "unknown"},
    }]
    plan = plan or {}
    primary = (plan.get("patient") or {}).get("primary") or case.summary.get("primary")
    diagnosis = _lesion_diagnosis(primary)
    lesions = {str(le.get("id")): le for le in plan.get("lesions", [])}
    lesion_ids = list(lesions) or list(case.summary.get("lesion_ids", []))
    when = plan.get("created") or dt.datetime.now(dt.UTC).isoformat()
    for lid in lesion_ids:
        safe = fhir_id(case.id, lid)
        cond_url = f"urn:latplan:condition-{safe}"
        condition: dict[str, Any] = {
            "resourceType": "Condition", "id": f"condition-{safe}",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "problem-list-item", "display": "Problem List Item"}]}],
            "code": {"text": "liver lesion (malignant neoplasm of liver, primary or secondary)"},
            "bodySite": [_LIVER_SITE],
            "identifier": [{"system": "urn:latplan:lesion", "value": lid}],
            "subject": {"reference": patient_ref},
        }
        if diagnosis is not None:
            profile, codings = diagnosis
            condition["meta"] = {"profile": [MCODE + profile]}
            condition["code"] = {"coding": codings, "text": f"liver lesion {lid} ({primary} primary)"}
        entries.append({"fullUrl": cond_url, "resource": condition})
        diameter_mm = ((lesions.get(lid) or {}).get("measurements") or {}).get("max_diameter_mm")
        if diameter_mm is None:
            continue
        tumor_url = f"urn:latplan:tumor-{safe}"
        tumor: dict[str, Any] = {
            "resourceType": "BodyStructure", "id": f"tumor-{safe}", "meta": {"profile": [MCODE + "mcode-tumor"]},
            "identifier": [{"use": "usual", "system": "urn:latplan:lesion", "value": lid,
                            "type": {"coding": [{"system": "http://hl7.org/fhir/resource-types", "code": "BodyStructure"}]}}],
            "morphology": {"coding": [{"system": SNOMED, "code": "1240414004",
                                       "display": "Malignant neoplasm (morphologic abnormality)"}]},
            "location": _LIVER_SITE, "patient": {"reference": patient_ref},
        }
        if diagnosis is not None:
            tumor["extension"] = [{"url": "http://hl7.org/fhir/StructureDefinition/condition-related",
                                   "valueReference": {"reference": cond_url}}]
        entries.append({"fullUrl": tumor_url, "resource": tumor})
        entries.append({"fullUrl": f"urn:latplan:tumor-size-{safe}", "resource": {
            "resourceType": "Observation", "id": f"tumor-size-{safe}", "meta": {"profile": [MCODE + "mcode-tumor-size"]},
            "status": "preliminary",  # computed from the segmentation by latplan, not a radiologist's read
            "code": {"coding": [{"system": LOINC, "code": "21889-1", "display": "Size Tumor"}]},
            "subject": {"reference": patient_ref}, "focus": [{"reference": tumor_url}], "effectiveDateTime": when,
            "component": [{"code": {"coding": [{"system": LOINC, "code": "33728-7",
                                                "display": "Size.maximum dimension in Tumor"}]},
                           "valueQuantity": {"value": round(float(diameter_mm), 1), "unit": "mm", "system": UCUM,
                                             "code": "mm"}}],
            "note": [{"text": "maximum diameter measured by latplan on the case's label map"}],
        }})
    for d in decisions:
        notes = [{"text": f"Rationale: {d['rationale']}"}]
        notes.append({"text": "Attendees: " + "; ".join(f"{a['name']} ({a['specialty']})" for a in d["attendees"])})
        if d.get("patient_preference"):
            notes.append({"text": f"Patient's stated preference: {d['patient_preference']}"})
        if d.get("deviation"):
            notes.append({"text": f"Deviation from top-ranked ({d['top_ranked']}): {d['deviation']['code']}"
                                  + (f" — {d['deviation']['text']}" if d["deviation"].get("text") else "")})
        cp: dict[str, Any] = {
            "resourceType": "CarePlan", "id": f"decision-{d['id']}",
            "status": "active", "intent": "plan",
            "title": f"Tumor board decision for {d['scope']} (version {d['version']})",
            "description": f"{d['chosen_kind']}: {d['chosen']}",
            "subject": {"reference": patient_ref},
            "created": d["recorded_at"],
            "identifier": [{"system": "urn:latplan:decision", "value": f"{case.id}/{d['scope']}/v{d['version']}"}],
            "activity": [{"detail": {"status": "not-started", "description": d["chosen"],
                                     "code": {"text": d["chosen"]}}}],
            "note": notes,
        }
        if d["scope"] != "patient":
            cp["addresses"] = [{"reference": f"urn:latplan:condition-{fhir_id(case.id, d['scope'])}"}]
        if d.get("supersedes_id"):
            cp["replaces"] = [{"reference": f"urn:latplan:decision-{d['supersedes_id']}"}]
        entries.append({"fullUrl": f"urn:latplan:decision-{d['id']}", "resource": cp})
    try:
        bundle = Bundle.model_validate({
            "resourceType": "Bundle", "type": "collection",
            "identifier": {"system": "urn:latplan:board-export", "value": f"case-{case.id}"},
            "timestamp": dt.datetime.now(dt.UTC).isoformat(), "entry": entries,
        })
    except ValidationError as exc:
        where = "; ".join(".".join(str(x) for x in e["loc"][-3:]) for e in exc.errors()[:3])
        raise FhirExportError(f"case {case.id} cannot be exported as a valid FHIR bundle ({where}); "
                              "check the lesion names and the decisions' text.") from None
    out: dict[str, Any] = bundle.model_dump(mode="json", exclude_none=True)
    return out


