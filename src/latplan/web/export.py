"""Exports of a case's plan and decisions: JSON, an HL7 FHIR bundle, DICOM SEG.

FHIR version: ``fhir.resources`` 8 ships R5 as default and R4B (4.3.0) as its R4-line
subpackage (no R4 4.0.1 package). The bundle is built and validated with
``fhir.resources.R4B``; the resources it uses (Patient, Condition, BodyStructure, Observation,
CarePlan, Bundle) are unchanged between R4 and R4B (R4B changed only a few low-maturity
resources: http://hl7.org/fhir/R4B/diff.html), and the mCODE profiles it claims are R4 (4.0.1)
profiles, so the export declares FHIR R4: ``application/fhir+json; fhirVersion=4.0``
(http://hl7.org/fhir/R4/http.html#version-parameter).

Profiles claimed (``meta.profile``) and checked offline by :mod:`latplan.web.fhir_profiles`
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

DICOM SEG: [A1]'s ``latplan.imaging.io.write_seg`` needs a DICOM source series. A case that
came as DICOM uses its own series; a NIfTI case gets a derived CT series written from the
image (so the SEG can reference it) and both are returned in one zip.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from latplan.store.models import CaseRecord, Decision


def _iso(when: dt.datetime) -> str:
    return when.replace(tzinfo=dt.UTC).isoformat()


def decision_dict(d: Decision, username: str | None = None) -> dict[str, Any]:
    return {
        "id": d.id, "scope": d.scope, "version": d.version, "supersedes_id": d.supersedes_id,
        "chosen_kind": d.chosen_kind, "chosen": d.chosen, "top_ranked": d.top_ranked, "deviates": d.deviates,
        "deviation": ({"code": d.deviation_code, "text": d.deviation_text} if d.deviates else None),
        "rationale": d.rationale, "attendees": d.attendees, "patient_preference": d.patient_preference,
        "job_key": d.job_key, "recorded_by": username or d.recorded_by, "recorded_at": _iso(d.recorded_at),
    }


def export_json(case: CaseRecord, plan: dict[str, Any] | None, decisions: list[dict[str, Any]],
                job: dict[str, Any] | None, exported_by: str) -> dict[str, Any]:
    return {
        "format": "latplan-board-export/1",
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "exported_by": exported_by,
        "case": {"id": case.id, "patient_ref": case.patient_ref, "title": case.title, "status": case.status,
                 "content_sha256": case.content_sha256, "summary": case.summary},
        "job": job,
        "plan": plan,
        "decisions": decisions,
    }


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


def _lesion_diagnosis(primary: str | None) -> tuple[str, list[dict[str, str]]] | None:
    """(mCODE profile id, codings) of a liver lesion given the patient's primary; None when unknown."""
    if not primary:
        return None
    p = str(primary).lower()
    return _PRIMARY_LIVER.get(p, _SECONDARY_LIVER)


def fhir_bundle(case: CaseRecord, plan: dict[str, Any] | None, decisions: list[dict[str, Any]]) -> dict[str, Any]:
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
        safe = f"{case.id}-{lid}".replace("_", "-")
        cond_url = f"urn:latplan:condition-{case.id}-{lid}"
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
        tumor_url = f"urn:latplan:tumor-{case.id}-{lid}"
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
        entries.append({"fullUrl": f"urn:latplan:tumor-size-{case.id}-{lid}", "resource": {
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
            cp["addresses"] = [{"reference": f"urn:latplan:condition-{case.id}-{d['scope']}"}]
        if d.get("supersedes_id"):
            cp["replaces"] = [{"reference": f"urn:latplan:decision-{d['supersedes_id']}"}]
        entries.append({"fullUrl": f"urn:latplan:decision-{d['id']}", "resource": cp})
    bundle = Bundle.model_validate({
        "resourceType": "Bundle", "type": "collection",
        "identifier": {"system": "urn:latplan:board-export", "value": f"case-{case.id}"},
        "timestamp": dt.datetime.now(dt.UTC).isoformat(), "entry": entries,
    })
    return bundle.model_dump(mode="json", exclude_none=True)


def derived_ct_series(image: Any, out_dir: Path) -> list[Path]:
    """Write ``image`` (a Volume) as a DICOM CT series (one file a slice) so a SEG can reference it."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    out_dir.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(image.array)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    aff = np.asarray(image.affine)
    d = aff[:3, :3] / np.asarray(image.spacing_mm)
    row_dir, col_dir = d[:, 0], d[:, 1]
    lo, hi = float(arr.min()), float(arr.max())
    slope = max((hi - lo) / 60000.0, 1e-6) if (hi - lo) > 60000 or not np.allclose(arr, np.round(arr)) else 1.0
    intercept = lo if slope != 1.0 else min(lo, -1024.0)
    paths = []
    for k in range(arr.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "latplan", "latplan^derived"
        ds.PatientBirthDate, ds.PatientSex, ds.StudyDate, ds.StudyTime = "", "", "", ""
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.Manufacturer = "latplan (derived from NIfTI)"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.ImagePositionPatient = [float(x) for x in (aff @ np.array([0, 0, k, 1.0]))[:3]]
        ds.ImageOrientationPatient = [float(x) for x in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(image.spacing_mm[1]), float(image.spacing_mm[0])]
        ds.SliceThickness = float(image.spacing_mm[2])
        ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[2])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = intercept, slope, "HU"
        ds.PositionReferenceIndicator = ""
        raw = np.clip(np.round((arr[k] - intercept) / slope), 0, 65535).astype(np.uint16)
        ds.PixelData = raw.tobytes()
        path = out_dir / f"ct_{k:04d}.dcm"
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths


def seg_zip(case_dir: Path, work_dir: Path, extra_masks: dict[str, Any] | None = None) -> bytes:
    """A zip with ``seg.dcm`` (lesions and, when given, predicted zones) and its source series."""
    from latplan.imaging.case_folder import load_case_folder
    from latplan.imaging.io import write_seg

    case = load_case_folder(case_dir)
    names: dict[int, str] = {}
    labels = np.zeros(case.labels.array.shape, dtype=np.uint16)
    value = 1
    for lid in case.lesion_ids:
        labels[case.mask_array(lid)] = value
        names[value] = lid
        value += 1
    for name, mask in (extra_masks or {}).items():
        if mask.shape == labels.shape:
            labels[(labels == 0) & mask] = value
            names[value] = name
            value += 1
    lab = case.labels.with_array(labels)
    if (case_dir / "dicom").is_dir():
        source: Any = case_dir / "dicom"
        series_files: list[Path] = []
    else:
        series_files = derived_ct_series(case.image, work_dir / "ct")
        source = work_dir / "ct"
    seg_path = write_seg(lab, names, source, work_dir / "seg.dcm")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(seg_path, "seg.dcm")
        for p in series_files:
            zf.write(p, f"ct/{p.name}")
    return buf.getvalue()
