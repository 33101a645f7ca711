"""DICOM RT objects of a board proposal: RTSTRUCT, SEG of the zones, RTDOSE, RTPLAN (brachytherapy).

Written with pydicom (RTSTRUCT, RTDOSE, RTPLAN: highdicom has no builders for them) and
highdicom (SEG). Attribute sets follow DICOM PS3.3: RT Structure Set IOD (A.19), RT Dose IOD
(A.18), RT Brachy Plan: RT General Plan (C.8.8.9), RT Prescription (C.8.8.10), RT Fraction Scheme
(C.8.8.13), RT Brachy Application Setups (C.8.8.15), RT Approval (C.8.8.16).

Research marking: RT Plan Intent RESEARCH, Approval Status UNAPPROVED, "not for clinical use" in
every series description. The SBRT screen is an estimate, not a plan: it gets no RTDOSE.

Contours: per slice of the case grid, :func:`skimage.measure.find_contours` at level 0.5 of the
binary mask; the polygon runs half-way between inside and outside voxel centres, so a reader that
fills polygons by voxel centre (dicompyler-core, Slicer) recovers the mask voxel for voxel.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from latplan.case import Case
from latplan.errors import LatplanError
from latplan.export.dicom_image import RESEARCH_NOTE, ImageSeries, base_dataset, save
from latplan.imaging.volume import Volume
from latplan.planning.types import TreatmentPlan

__all__ = ["ExportError", "RoiSpec", "write_rtdose", "write_rtplan_brachy", "write_rtstruct", "write_zone_seg"]

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RTDOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RTPLAN_BRACHY_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
#: Ir-192 half-life (days): NNDC / DDEP recommended value 73.829 d
IR192_HALF_LIFE_DAYS = 73.829


class ExportError(LatplanError):
    """A result file could not be exported (DICOM/NIfTI writer or missing plan data)."""


@dataclass
class RoiSpec:
    """One RTSTRUCT ROI: name, RT ROI Interpreted Type (GTV, CTV, PTV, TREATED_VOLUME, ORGAN), mask, colour."""

    name: str
    kind: str
    mask: Volume
    colour_hex: str


def _rgb(hex_colour: str) -> list[int]:
    h = hex_colour.lstrip("#")
    return [int(h[i:i + 2], 16) for i in (0, 2, 4)]


def _contours(mask: np.ndarray, affine: np.ndarray, k: int, offset_ji: tuple[int, int] = (0, 0)) -> list[np.ndarray]:
    """Closed polygons (LPS mm, (n, 3)) of one slice of a binary mask (no repeated closing point).

    ``mask`` may be a crop of the slice whose first row and column are ``offset_ji`` of the full slice
    (the polygons are the same: every mask voxel lies in the crop and the pad is outside)."""
    from skimage.measure import find_contours

    out = []
    for c in find_contours(np.pad(mask.astype(np.float32), 1), 0.5):
        rc = c[:-1] - 1.0 if np.allclose(c[0], c[-1]) else c - 1.0
        if len(rc) < 3:
            continue
        ijk = np.column_stack([rc[:, 1] + offset_ji[1], rc[:, 0] + offset_ji[0], np.full(len(rc), float(k))])
        out.append(ijk @ affine[:3, :3].T + affine[:3, 3])
    return out


#: (3006,0050) Contour Data
_CONTOUR_DATA = Tag(0x3006, 0x0050)
#: (3006,0016) Contour Image Sequence, (3006,0042) Contour Geometric Type, (3006,0046) Number of Contour Points
_CONTOUR_IMAGE_SEQ, _GEOMETRIC_TYPE, _N_POINTS = Tag(0x3006, 0x0016), Tag(0x3006, 0x0042), Tag(0x3006, 0x0046)
#: (0008,1150) Referenced SOP Class UID, (0008,1155) Referenced SOP Instance UID
_REF_SOP_CLASS, _REF_SOP_INSTANCE = Tag(0x0008, 0x1150), Tag(0x0008, 0x1155)


def _contour_data(poly: np.ndarray) -> RawDataElement:
    """Contour Data (DS, x\\y\\z… in mm, 3 decimals) encoded once as its DICOM bytes.

    pydicom turns each value of a DS list into a validated ``DSfloat`` object and back into text when
    it writes the file; a structure set holds some 10⁵–10⁶ values (measured: 30 s of the demo export),
    so the text is made here with one format per value and stored as a raw element (written as is,
    decoded only if read back). Each value is ≤ 16 characters, padded to even length (PS3.5 6.2).
    """
    values = poly.reshape(-1).tolist()
    text = "\\".join(("%.3f",) * len(values)) % tuple(values)  # one formatting pass; the same text as f"{x:.3f}"
    raw = (text if len(text) % 2 == 0 else text + " ").encode("ascii")
    return RawDataElement(_CONTOUR_DATA, "DS", len(raw), raw, 0, False, True)


def _roi_contour_item(roi_number: int, spec: RoiSpec, sops: dict[int, tuple[str, str]]) -> Dataset:
    item = Dataset()
    item.ReferencedROINumber = roi_number
    item.ROIDisplayColor = _rgb(spec.colour_hex)
    contours = []
    arr = np.asarray(spec.mask.array) > 0
    aff = np.asarray(spec.mask.affine, float)
    # the mask's bounding box: find_contours then scans a few voxels around the ROI, not whole slices
    j_any, i_any = np.nonzero(arr.any(axis=(0, 2)))[0], np.nonzero(arr.any(axis=(0, 1)))[0]
    box = arr[:, j_any[0]:j_any[-1] + 1, i_any[0]:i_any[-1] + 1]
    for k in np.nonzero(box.any(axis=(1, 2)))[0]:
        sop = sops.get(int(k))
        for poly in _contours(box[k], aff, int(k), (int(j_any[0]), int(i_any[0]))):
            c = Dataset()
            # the item is written in the file's encoding (explicit VR little endian) and its own character set
            # (Contour Data is ASCII): saying so lets pydicom write the raw value as it is, not decode it first
            c.set_original_encoding(False, True, c._character_set)
            # elements set by tag (DataElement), not by keyword: the same values without the keyword lookup
            # and checks of Dataset.__setattr__ (some 10^4 contours per structure set)
            if sop is not None:
                img = Dataset()
                img[_REF_SOP_CLASS] = DataElement(_REF_SOP_CLASS, "UI", sop[0])
                img[_REF_SOP_INSTANCE] = DataElement(_REF_SOP_INSTANCE, "UI", sop[1])
                c[_CONTOUR_IMAGE_SEQ] = DataElement(_CONTOUR_IMAGE_SEQ, "SQ", DicomSequence([img]))
            c[_GEOMETRIC_TYPE] = DataElement(_GEOMETRIC_TYPE, "CS", "CLOSED_PLANAR")
            c[_N_POINTS] = DataElement(_N_POINTS, "IS", len(poly))
            c[_CONTOUR_DATA] = _contour_data(poly)
            contours.append(c)
    item.ContourSequence = DicomSequence(contours)
    return item


def write_rtstruct(case: Case, ref: ImageSeries, rois: Sequence[RoiSpec], path: Path) -> tuple[Path, dict[str, int]]:
    """One RTSTRUCT of ``rois`` on ``ref``; returns the path and ``{roi name: ROI number}``."""
    ds = base_dataset(ref, case, RTSTRUCT_STORAGE, "RTSTRUCT", "structures", 901)
    now = dt.datetime.now(dt.UTC)
    ds.StructureSetLabel = "latplan"
    ds.StructureSetName = "latplan research"
    ds.StructureSetDescription = f"lesions, CTVs, predicted zones, organs - {RESEARCH_NOTE}"
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.FrameOfReferenceUID = ref.for_uid
    ds.PositionReferenceIndicator = ""
    images = []
    for d in ref.datasets:
        img = Dataset()
        img.ReferencedSOPClassUID, img.ReferencedSOPInstanceUID = str(d.SOPClassUID), str(d.SOPInstanceUID)
        images.append(img)
    series = Dataset()
    series.SeriesInstanceUID = ref.series_uid
    series.ContourImageSequence = DicomSequence(images)
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired, as PS3.3 asks)
    study.ReferencedSOPInstanceUID = ref.study_uid
    study.RTReferencedSeriesSequence = DicomSequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = ref.for_uid
    frame.RTReferencedStudySequence = DicomSequence([study])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])
    rois_seq, contour_seq, obs_seq, numbers = [], [], [], {}
    rois = [r for r in rois if np.asarray(r.mask.array).any()]  # an empty ROI would have no contour: left out
    sops = ref.sop_by_k()
    for n, spec in enumerate(rois, start=1):
        roi = Dataset()
        roi.ROINumber = n
        roi.ReferencedFrameOfReferenceUID = ref.for_uid
        roi.ROIName = spec.name[:64]
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        rois_seq.append(roi)
        contour_seq.append(_roi_contour_item(n, spec, sops))
        obs = Dataset()
        obs.ObservationNumber = n
        obs.ReferencedROINumber = n
        obs.RTROIInterpretedType = spec.kind
        obs.ROIInterpreter = ""
        obs_seq.append(obs)
        numbers[spec.name] = n
    ds.StructureSetROISequence = DicomSequence(rois_seq)
    ds.ROIContourSequence = DicomSequence(contour_seq)
    ds.RTROIObservationsSequence = DicomSequence(obs_seq)
    ds.ApprovalStatus = "UNAPPROVED"
    return save(ds, path), numbers


def write_zone_seg(case: Case, ref: ImageSeries, zones: Sequence[tuple[str, Volume]], path: Path) -> Path:
    """One BINARY DICOM SEG (highdicom), a segment per predicted zone (zones may overlap)."""
    import warnings

    import highdicom as hd
    from pydicom.sr.codedict import codes

    from latplan._version import __version__

    frames = np.zeros((len(ref.datasets), *np.asarray(zones[0][1].array).shape[1:], len(zones)), dtype=bool)
    for s, (_, mask) in enumerate(zones):
        arr = np.asarray(mask.array) > 0
        for f, k in enumerate(ref.k_of):
            frames[f, :, :, s] = arr[k]
    descriptions = [hd.seg.SegmentDescription(
        segment_number=s + 1, segment_label=name[:64], segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Necrosis, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="latplan ablation zone model", version=__version__, family=codes.cid7162.ArtificialIntelligence),
        tracking_uid=generate_uid(), tracking_id=name[:64]) for s, (name, _) in enumerate(zones)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=ref.datasets, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=902,
            sop_instance_uid=generate_uid(), instance_number=1, manufacturer="latplan",
            manufacturer_model_name="latplan", software_versions=__version__, device_serial_number="0",
            omit_empty_frames=True, content_label="ZONES",
            content_description=f"predicted treated zones - {RESEARCH_NOTE}"[:64])
    seg.SeriesDescription = f"latplan predicted zones - {RESEARCH_NOTE}"[:64]
    seg.save_as(str(path))
    return path


def _crop_to_dose(dose: Volume) -> Volume:
    arr = np.asarray(dose.array)
    nz = np.argwhere(arr > 0)
    if not len(nz):
        raise ExportError("the plan's dose grid is zero everywhere on the case grid: no RTDOSE written.")
    lo, hi = nz.min(0), nz.max(0) + 1
    return dose.crop((int(lo[0]), int(lo[1]), int(lo[2])), (int(hi[0]), int(hi[1]), int(hi[2])))


def write_rtdose(case: Case, ref: ImageSeries, dose_gy: Volume, path: Path, *, plan_sop: tuple[str, str] | None,
                 description: str) -> Path:
    """RTDOSE (PHYSICAL, Gy, 16-bit with DoseGridScaling) of ``dose_gy`` (on the case grid, cropped to where dose > 0)."""
    dose = _crop_to_dose(dose_gy)
    ds = base_dataset(ref, case, RTDOSE_STORAGE, "RTDOSE", description, 903)
    aff = np.asarray(dose.affine, float)
    sp = np.linalg.norm(aff[:3, :3], axis=0)
    row_dir, col_dir = aff[:3, 0] / sp[0], aff[:3, 1] / sp[1]
    normal = np.cross(row_dir, col_dir)
    arr = np.asarray(dose.array, dtype=np.float64)
    ds.FrameOfReferenceUID = ref.for_uid
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = [float(f"{x:.4f}") for x in aff[:3, 3]]
    ds.ImageOrientationPatient = [float(f"{x:.6f}") for x in (*row_dir, *col_dir)]
    ds.PixelSpacing = [float(f"{sp[1]:.6f}"), float(f"{sp[0]:.6f}")]
    ds.SliceThickness = float(f"{sp[2]:.6f}")
    ds.GridFrameOffsetVector = [float(f"{k * float(aff[:3, 2] @ normal):.4f}") for k in range(arr.shape[0])]
    ds.NumberOfFrames = int(arr.shape[0])
    ds.FrameIncrementPointer = (0x3004, 0x000C)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[2])
    # 16-bit: dciodvfy (dicom3tools) stops on an assertion for 32-bit pixel data; at 16 bits the step is
    # max/65535 (≈ 0.01 Gy for a 600 Gy hot spot beside a dwell), far below the 0.3 Gy export tolerance
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    scale = float(arr.max()) / 65535.0 if arr.max() > 0 else 1.0
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "PLAN"
    ds.DoseGridScaling = f"{scale:.10g}"
    if plan_sop is not None:
        ref_plan = Dataset()
        ref_plan.ReferencedSOPClassUID, ref_plan.ReferencedSOPInstanceUID = plan_sop
        ds.ReferencedRTPlanSequence = DicomSequence([ref_plan])
    ds.PixelData = np.clip(np.rint(arr / float(ds.DoseGridScaling)), 0, 65535).astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    return save(ds, path)


def _channel(n: int, applicator: dict[str, Any], step_mm: float) -> Dataset:
    pos = np.asarray(applicator.get("dwell_positions_mm") or [], float).reshape(-1, 3)
    times = np.asarray(applicator.get("dwell_times_s") or [], float)
    if len(times) != len(pos):
        raise ExportError(f"catheter {n}: {len(pos)} dwell positions but {len(times)} dwell times; "
                          "an RTPLAN needs a time for every dwell position.")
    tip = np.asarray(applicator.get("tip_mm", pos[-1] if len(pos) else [0, 0, 0]), float)
    ch = Dataset()
    ch.ChannelNumber = n
    ch.ChannelLength = float(f"{float(applicator.get('length_mm') or 0.0):.1f}")
    ch.ChannelTotalTime = float(f"{float(times.sum()):.3f}")
    ch.SourceMovementType = "STEPWISE"
    ch.ReferencedSourceNumber = 1
    ch.SourceApplicatorNumber = n
    ch.SourceApplicatorID = f"catheter {n}"
    ch.SourceApplicatorType = "FLEXIBLE"
    ch.SourceApplicatorStepSize = float(f"{step_mm:.2f}")
    ch.ReferencedROINumber = None  # the catheter is not an ROI of the structure set
    ch.SourceApplicatorLength = ch.ChannelLength
    ch.TransferTubeNumber = None
    points: list[Dataset] = []
    cum = 0.0
    for p, t in zip(pos, times, strict=True):
        for step in (0.0, float(t)):  # arrival and departure control points of one dwell
            cum += step
            cp = Dataset()
            cp.ControlPointIndex = len(points)
            cp.CumulativeTimeWeight = float(f"{cum:.4f}")
            cp.ControlPointRelativePosition = float(f"{float(np.linalg.norm(tip - p)):.2f}")
            cp.ControlPoint3DPosition = [float(f"{x:.2f}") for x in p]
            points.append(cp)
    ch.NumberOfControlPoints = len(points)
    ch.FinalCumulativeTimeWeight = float(f"{cum:.4f}")
    ch.BrachyControlPointSequence = DicomSequence(points)
    return ch


def write_rtplan_brachy(case: Case, ref: ImageSeries, plan: TreatmentPlan, path: Path, *,
                        structure_set_sop: tuple[str, str], ctv_roi_number: int | None) -> Path:
    """RTPLAN (brachy) of an IBT plan: one application setup, a channel per catheter, a pair of control
    points per dwell (cumulative time weights in seconds), the source model and its air-kerma strength."""
    from latplan.physics import tg43

    catheters = [a for a in plan.applicators if a.get("dwell_positions_mm") is not None]
    if not catheters:
        raise ExportError(f"the IBT plan of {plan.lesion_id} has no catheters with dwell positions: no RTPLAN.")
    params = plan.parameters or {}
    sk_u = float(params.get("sk_u") or 0.0)
    if sk_u <= 0:
        raise ExportError(f"the IBT plan of {plan.lesion_id} names no air-kerma strength (parameters.sk_u).")
    src = tg43.default_source()
    now = dt.datetime.now(dt.UTC)
    ds = base_dataset(ref, case, RTPLAN_BRACHY_STORAGE, "RTPLAN", f"IBT plan {plan.lesion_id}", 904)
    ds.FrameOfReferenceUID = ref.for_uid
    ds.PositionReferenceIndicator = ""
    ds.RTPlanLabel = f"IBT {plan.lesion_id}"[:16]
    ds.RTPlanName = f"IBT {plan.lesion_id} research"[:64]
    ds.RTPlanDescription = f"latplan IBT plan - {RESEARCH_NOTE}"
    ds.RTPlanDate, ds.RTPlanTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.RTPlanGeometry = "PATIENT"
    ds.PlanIntent = "RESEARCH"
    ref_ss = Dataset()
    ref_ss.ReferencedSOPClassUID, ref_ss.ReferencedSOPInstanceUID = structure_set_sop
    ds.ReferencedStructureSetSequence = DicomSequence([ref_ss])
    if plan.prescription_gy and ctv_roi_number is not None:
        dref = Dataset()
        dref.DoseReferenceNumber = 1
        dref.DoseReferenceUID = generate_uid()
        dref.DoseReferenceStructureType = "VOLUME"
        dref.ReferencedROINumber = ctv_roi_number
        dref.DoseReferenceDescription = "CTV D100 >= prescription"
        dref.DoseReferenceType = "TARGET"
        dref.TargetPrescriptionDose = float(plan.prescription_gy)
        ds.DoseReferenceSequence = DicomSequence([dref])
    step_mm = float(params.get("dwell_step_mm") or 5.0)
    channels = [_channel(n, a, step_mm) for n, a in enumerate(catheters, start=1)]
    total_s = sum(float(c.ChannelTotalTime) for c in channels)
    source = Dataset()
    source.SourceNumber = 1
    source.SourceType = "LINE"
    source.SourceManufacturer = src.name.split(" ")[0]
    name = str(params.get("source") or src.name)
    words = name.split()
    source.SourceModelID = re.sub(r"[^A-Za-z0-9]", "", words[1] if len(words) > 1 else name)[:16]  # SH: 16 chars
    source.SourceDescription = f"{name}; TG-43 data: {params.get('source_dataset') or src.dataset}"[:64]
    source.ActiveSourceLength = float(f"{src.active_length_cm * 10.0:.2f}")
    source.SourceIsotopeName = str(src.nuclide or "Ir-192")
    source.SourceIsotopeHalfLife = IR192_HALF_LIFE_DAYS
    source.SourceStrengthUnits = "AIR_KERMA_RATE"
    source.ReferenceAirKermaRate = sk_u  # µGy h⁻¹ at 1 m = U (µGy m² h⁻¹)
    source.SourceStrengthReferenceDate, source.SourceStrengthReferenceTime = ds.RTPlanDate, ds.RTPlanTime
    ds.SourceSequence = DicomSequence([source])
    ds.BrachyTreatmentTechnique = "INTERSTITIAL"
    ds.BrachyTreatmentType = "HDR"
    machine = Dataset()
    machine.TreatmentMachineName = "HDR afterloader"
    machine.Manufacturer = ""
    ds.TreatmentMachineSequence = DicomSequence([machine])
    setup = Dataset()
    setup.ApplicationSetupType = "INTERSTITIAL"
    setup.ApplicationSetupNumber = 1
    setup.ApplicationSetupName = f"IBT {plan.lesion_id}"[:64]
    setup.TotalReferenceAirKerma = float(f"{sk_u * total_s / 3600.0:.4f}")
    setup.ChannelSequence = DicomSequence(channels)
    ds.ApplicationSetupSequence = DicomSequence([setup])
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = 1
    group.NumberOfBeams = 0
    group.NumberOfBrachyApplicationSetups = 1
    ref_setup = Dataset()
    ref_setup.ReferencedBrachyApplicationSetupNumber = 1
    if plan.prescription_gy:
        ref_setup.BrachyApplicationSetupDose = float(plan.prescription_gy)
    group.ReferencedBrachyApplicationSetupSequence = DicomSequence([ref_setup])
    ds.FractionGroupSequence = DicomSequence([group])
    ds.ApprovalStatus = "UNAPPROVED"
    return save(ds, path)
