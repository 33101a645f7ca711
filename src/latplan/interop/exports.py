"""Exports of a case's plan and decisions that are not FHIR: the board JSON and DICOM SEG.

The FHIR/mCODE bundle is :mod:`latplan.interop.fhir`. This package knows nothing of the web
app: the routers hand it a case (anything with the fields of :class:`ExportCase`), the
plan.json document and the decisions as :func:`latplan.store.decisions.decision_dict` writes them.

DICOM SEG: ``latplan.imaging.io.write_seg`` needs a DICOM source series. A case that came as
DICOM uses its own series; a NIfTI case gets a derived CT series written from the image (so the
SEG can reference it) and both are returned in one zip.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from latplan.imaging.case_folder import load_case_folder
from latplan.imaging.io import write_seg
from latplan.imaging.volume import Volume


class ExportCase(Protocol):
    """What an export needs of a stored case (``latplan.store.models.CaseRecord`` has it)."""

    id: int
    patient_ref: str
    title: str | None
    status: str
    content_sha256: str
    summary: dict[str, Any]


def export_json(case: ExportCase, plan: dict[str, Any] | None, decisions: list[dict[str, Any]],
                job: dict[str, Any] | None, exported_by: str) -> dict[str, Any]:
    """The board's JSON export: the case, its job, plan.json as written and the decisions."""
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


def derived_ct_series(image: Volume, out_dir: Path) -> list[Path]:
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
