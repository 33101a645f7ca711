"""Exports of a case's plan and decisions: JSON, an HL7 FHIR bundle, DICOM SEG.

FHIR: ``fhir.resources`` 8 ships R5 as default and R4B (4.3) as its R4-line subpackage; the
bundle is built and validated with ``fhir.resources.R4B`` (R4B keeps the R4 structure of the
resources used here: Patient, Condition, CarePlan with ``activity.detail``) and declares
``meta.profile``-free ``collection`` type. One Condition per lesion, one CarePlan per
decision (latest versions; earlier versions are listed as ``replaces``), with the rationale,
attendees, patient preference and deviation reason as annotations.

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


def fhir_bundle(case: CaseRecord, plan: dict[str, Any] | None, decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """An HL7 FHIR R4(B) ``collection`` Bundle of the case's lesions and the board's decisions."""
    from fhir.resources.R4B.bundle import Bundle

    pid = f"patient-{case.id}"
    entries: list[dict[str, Any]] = [{
        "fullUrl": f"urn:latplan:{pid}",
        "resource": {"resourceType": "Patient", "id": pid,
                     "identifier": [{"system": "urn:latplan:pseudonym", "value": case.patient_ref}]},
    }]
    lesion_ids = [str(le.get("id")) for le in (plan or {}).get("lesions", [])] or list(case.summary.get("lesion_ids", []))
    for lid in lesion_ids:
        entries.append({
            "fullUrl": f"urn:latplan:condition-{case.id}-{lid}",
            "resource": {
                "resourceType": "Condition", "id": f"condition-{case.id}-{lid}".replace("_", "-"),
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]},
                "code": {"text": "liver lesion (malignant neoplasm of liver, primary or secondary)"},
                "bodySite": [{"text": "liver"}],
                "identifier": [{"system": "urn:latplan:lesion", "value": lid}],
                "subject": {"reference": f"urn:latplan:{pid}"},
            },
        })
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
            "subject": {"reference": f"urn:latplan:{pid}"},
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
