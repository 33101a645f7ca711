"""latplan.export: every result as a file a planning system, 3D Slicer or a viewer opens.

Public API::

    write_result_files(proposal, out_dir) -> dict[str, Path]

writes under ``out_dir``::

    volumes/                     NIfTI zones (uint8), doses (float32 Gy), CTVs on the case grid; STL meshes;
                                 README.md naming each file and its colour (a folder 3D Slicer loads)
    dicom/image/*.dcm            the CT/MR series written from the volume (only when the input is not DICOM)
    dicom/rtstruct.dcm           lesions, CTVs/PTVs, predicted zones, organs at risk
    dicom/seg-zones.dcm          DICOM SEG of the predicted zones (when any plan has a zone)
    dicom/rtdose-<lesion>-<modality>.dcm   per radiation plan with a dose grid (not the SBRT screen)
    dicom/rtplan-<lesion>-ibt.dcm          per IBT plan (brachy application setup, channels, dwells)

Every DICOM object refers to the input series when the case was read from DICOM, otherwise to
the series in ``dicom/image``; all are marked for research (see :mod:`latplan.export.dicom_rt`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latplan.case import Case
from latplan.case.vocabulary import StructureRole
from latplan.export.dicom_image import ImageSeries, image_series
from latplan.export.dicom_rt import (
    ExportError,
    RoiSpec,
    write_rtdose,
    write_rtplan_brachy,
    write_rtstruct,
    write_zone_seg,
)
from latplan.export.volumes import ResultVolumes, result_volumes, write_volume_files
from latplan.planning.types import TreatmentPlan
from latplan.report.colours import OVERLAY_COLOURS, colour_for

__all__ = ["ExportError", "write_dicom_files", "write_result_files"]

#: roles not exported as RTSTRUCT organs (segments tile the liver; lesions are GTVs)
_NOT_ORGANS = frozenset({StructureRole.LIVER_SEGMENT, StructureRole.LESION})


def _rois(case: Case, results: list[ResultVolumes]) -> list[RoiSpec]:
    rois = [RoiSpec(lid, "GTV", case.lesion_mask(lid), colour_for(lid, StructureRole.LESION)) for lid in case.lesion_ids]
    for rv in results:
        if rv.target is not None:
            kind = rv.target_name.upper()
            rois.append(RoiSpec(f"{rv.lesion_id} {rv.modality.upper()} {kind}", kind, rv.target,
                                OVERLAY_COLOURS["target"]))
        if rv.zone is not None:
            rois.append(RoiSpec(f"{rv.lesion_id} {rv.modality.upper()} zone", "TREATED_VOLUME", rv.zone,
                                OVERLAY_COLOURS["zone"]))
    for name in case.structure_names():
        role = case.role(name)
        if role not in _NOT_ORGANS:
            rois.append(RoiSpec(name, "EXTERNAL" if role == StructureRole.BODY else "ORGAN", case.mask(name),
                                colour_for(name, role)))
    return rois


def write_dicom_files(case: Case, plans: dict[tuple[str, str], TreatmentPlan], out_dir: Path,
                      volumes: Mapping[tuple[str, str], ResultVolumes] | None = None) -> dict[str, Path]:
    """Write ``OUT/dicom`` (see the module docstring); return ``{key: path}``.

    ``volumes``: the plans' volumes on the case grid when the caller has them already (else resampled here)."""
    folder = out_dir / "dicom"
    folder.mkdir(parents=True, exist_ok=True)
    ref: ImageSeries = image_series(case, folder)
    files: dict[str, Path] = {}
    if ref.written or ref.repaired:
        files["dicom_image"] = folder / "image"
    notes: list[str] = []
    ordered = sorted(plans.items())
    results = [volumes[key] if volumes is not None else result_volumes(case, plan) for key, plan in ordered]
    rtstruct, roi_numbers = write_rtstruct(case, ref, _rois(case, results), folder / "rtstruct.dcm")
    files["dicom_rtstruct"] = rtstruct
    ss_sop = _sop(rtstruct)
    zones = [(f"{rv.lesion_id} {rv.modality.upper()} zone", rv.zone) for rv in results if rv.zone is not None]
    if zones:
        files["dicom_seg"] = write_zone_seg(case, ref, [(n, z) for n, z in zones if z is not None],
                                            folder / "seg-zones.dcm")
    for ((lid, _), plan), rv in zip(ordered, results, strict=True):
        code = rv.modality
        plan_sop = None
        if code == "ibt":
            ctv = roi_numbers.get(f"{lid} IBT CTV")
            try:
                p = write_rtplan_brachy(case, ref, plan, folder / f"rtplan-{lid}-ibt.dcm", structure_set_sop=ss_sop,
                                        ctv_roi_number=ctv)
            except ExportError as exc:  # a plan without dwell data: the other files still come out, and say why
                notes.append(f"rtplan-{lid}-ibt.dcm not written: {exc}")
            else:
                files[f"dicom_rtplan/{lid}/ibt"] = p
                plan_sop = _sop(p)
        if rv.dose_gy is not None and plan_sop is None:
            notes.append(f"rtdose-{lid}-{code}.dcm not written: an RTDOSE of a plan must reference its RTPLAN, "
                         f"which could not be written; the dose is in volumes/{lid}/{code}-dose.nii.gz")
        elif rv.dose_gy is not None:
            files[f"dicom_rtdose/{lid}/{code}"] = write_rtdose(
                case, ref, rv.dose_gy, folder / f"rtdose-{lid}-{code}.dcm", plan_sop=plan_sop,
                description=f"{code.upper()} dose {lid}")
    files["dicom_readme"] = _write_readme(folder / "README.md", ref, files, notes)
    return files


def _write_readme(path: Path, ref: ImageSeries, files: dict[str, Path], notes: list[str]) -> Path:
    if ref.written:
        source = "a CT/MR series written from the case volume (dicom/image/, new study)"
    elif ref.repaired:
        source = ("a copy of the input DICOM series in dicom/image/: the input blanks UIDs (de-identified), so the "
                  "copy fills them in (SOP UIDs from the file meta, new study/series UID); pixels unchanged")
    else:
        source = f"the input DICOM series {ref.series_uid} (not copied)"
    lines = ["# latplan DICOM export (research use, not for clinical use)", "",
             f"Every object refers to {source}, frame of reference {ref.for_uid}.",
             "RT Plan Intent RESEARCH, Approval Status UNAPPROVED; the SBRT screen has no RTDOSE (it is not a plan).", ""]
    lines += [f"- `{p.relative_to(path.parent) if p.is_relative_to(path.parent) else p}`: {k}"
              for k, p in files.items()]
    lines += [""] + [f"- {n}" for n in notes]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _sop(path: Path) -> tuple[str, str]:
    import pydicom

    ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def write_result_files(proposal: Any, out_dir: str | Path) -> dict[str, Path]:
    """Every result of a board proposal as files under ``out_dir`` (volumes/, dicom/); returns ``{key: path}``.

    ``proposal``: a :class:`latplan.board.proposal.BoardProposal` (``case`` and ``plans`` are used).
    The pipeline's write step calls this after the reports.
    """
    out = Path(out_dir)
    case: Case = proposal.case
    plans: dict[tuple[str, str], TreatmentPlan] = dict(getattr(proposal, "plans", {}) or {})
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the output folder {out}: {exc.strerror}. Choose a writable --out.") from exc
    # each plan's zone, dose and target resampled onto the case grid once, for the volumes and the DICOM files
    volumes = {key: result_volumes(case, plan) for key, plan in plans.items()}
    files = write_volume_files(case, plans, out, volumes)
    files.update(write_dicom_files(case, plans, out, volumes))
    return files
