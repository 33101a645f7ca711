"""Analyse a case's follow-up: registration, margin check, response and local progression per timepoint.

Pipeline for each timepoint (sorted by date):

1. register the timepoint image to the baseline (:func:`~latplan.followup.registration.register`;
   quality: final metric, TRE at ``landmarks.yaml`` ↔ ``timepoint.yaml:landmarks_mm``, liver Dice);
   the transform is stored as ``timepoints/<label>/registration.tfm`` + ``registration.json``;
2. resample the timepoint label map onto the baseline grid (nearest neighbour);
3. margin check for every ablation zone: baseline tumour vs the registered zone, and the
   treatment's predicted zone vs the observed one;
4. RECIST 1.1 (and mRECIST for HCC) — diameters are measured on the timepoint's own grid, so
   an affine registration never rescales a measurement;
5. local tumour status of every treated lesion (no viable tumour / residual / LTP) in baseline space.

:func:`followup_summary` is the JSON-serialisable view used by the CLI, reports ([E]) and the web app ([F]).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from latplan.case.model import Case
from latplan.case.vocabulary import Modality, PrimaryTumour, StructureRole
from latplan.errors import CaseFolderError, LatplanError
from latplan.followup._io import read_volume
from latplan.followup.margin_check import MarginCheck, margin_check
from latplan.followup.models import Complication, TreatmentRecord, criteria
from latplan.followup.registration import (
    RegistrationResult,
    register,
    resample_labels_to_baseline,
    save_transform,
)
from latplan.followup.response import (
    LesionBaseline,
    ResponseAssessment,
    assess_response,
    longest_axial_diameter_mm,
)
from latplan.followup.timepoints import (
    Timepoint,
    load_baseline,
    load_landmarks,
    load_timepoints,
    load_treatments,
)
from latplan.imaging.volume import Volume

__all__ = ["FollowupAnalysis", "TimepointResult", "analyse_followup", "followup_summary", "target_margin_mm"]

THERMAL = {Modality.RFA, Modality.MWA, Modality.CRYO, Modality.HIFU}
LIVER_ROLES = (StructureRole.LIVER, StructureRole.LIVER_SEGMENT)


@dataclass
class TimepointResult:
    label: str
    date: dt.date
    kind: str
    registration: RegistrationResult | None
    registration_note: str | None
    lesion_map: dict[str, str | None]
    margin_checks: list[MarginCheck] = field(default_factory=list)
    recist: ResponseAssessment | None = None
    mrecist: ResponseAssessment | None = None
    mrecist_note: str | None = None
    local_status: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_lesions: list[str] = field(default_factory=list)
    complications: list[Complication] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "date": self.date.isoformat(),
            "kind": self.kind,
            "registration": None if self.registration is None else self.registration.to_dict(),
            "registration_note": self.registration_note,
            "lesion_map": self.lesion_map,
            "margin_checks": [m.to_dict() for m in self.margin_checks],
            "recist": None if self.recist is None else self.recist.to_dict(),
            "mrecist": None if self.mrecist is None else self.mrecist.to_dict(),
            "mrecist_note": self.mrecist_note,
            "local_status": self.local_status,
            "new_lesions": self.new_lesions,
            "complications": [c.model_dump(mode="json") | {"definition": c.grade.definition} for c in self.complications],
            "notes": self.notes,
        }


@dataclass
class FollowupAnalysis:
    case_dir: Path
    patient_id: str
    primary: str
    baseline_lesions: list[LesionBaseline]
    treatments: list[TreatmentRecord]
    timepoints: list[TimepointResult]

    def to_dict(self) -> dict[str, Any]:
        comps = []
        for t in self.treatments:
            for c in t.complications or []:
                comps.append({"lesion": t.lesion, "modality": t.modality.value, "treatment_date": t.date.isoformat(),
                              **c.model_dump(mode="json"), "definition": c.grade.definition})
        for tp in self.timepoints:
            for c in tp.complications:
                comps.append({"timepoint": tp.label, **c.model_dump(mode="json"), "definition": c.grade.definition})
        return {
            "case": str(self.case_dir),
            "patient_id": self.patient_id,
            "primary": self.primary,
            "baseline_lesions": [{"lesion_id": b.lesion_id, "diameter_mm": round(b.diameter_mm, 2), "organ": b.organ}
                                 for b in self.baseline_lesions],
            "treatments": [t.model_dump(mode="json", exclude_none=True) for t in self.treatments],
            "timepoints": [t.to_dict() for t in self.timepoints],
            "complications": comps,
            "complication_citation": criteria()["cirse_complications"]["citation"],
            "timeline": self.timeline(),
        }

    def timeline(self) -> list[dict[str, Any]]:
        """Events by date (treatments and timepoints) for the web timeline ([F])."""
        ev: list[dict[str, Any]] = [{"date": t.date.isoformat(), "type": "treatment", "lesion": t.lesion,
                                     "modality": t.modality.value} for t in self.treatments]
        for tp in self.timepoints:
            ev.append({"date": tp.date.isoformat(), "type": "imaging", "label": tp.label, "kind": tp.kind,
                       "overall_response": None if tp.recist is None else tp.recist.overall.value,
                       "local_status": {k: v["status"] for k, v in tp.local_status.items()}})
        return sorted(ev, key=lambda e: e["date"])


def target_margin_mm(case: Case) -> float:
    """Margin the ablation aimed at (criteria.yaml 'target_margin', mirroring knowledge rules)."""
    tm = criteria()["target_margin"]
    mol = case.patient.molecular
    if case.patient.primary == PrimaryTumour.COLORECTAL and mol is not None and mol.ras == "mutant":
        return float(tm["ras_mutant_colorectal_mm"])
    return float(tm["default_mm"])


def _organ_of(case: Case, lesion: str) -> str:
    """Name of the structure that surrounds a lesion most (its 1-voxel shell); 'liver' for segments."""
    m = case.mask_array(lesion)
    shell = ndimage.binary_dilation(m, iterations=1) & ~m
    values, counts = np.unique(case.labels.array[shell], return_counts=True)
    best, best_n = "unknown", 0
    for v, n in zip(values.tolist(), counts.tolist(), strict=True):
        if v == 0:
            continue
        for e in case.label_table.entries:
            if e.value == v and e.role not in (StructureRole.LESION, StructureRole.ABLATION_ZONE) and n > best_n:
                best, best_n = ("liver" if e.role in LIVER_ROLES else e.name), n
    return best if best != "unknown" else "liver"


def _liver_mask(names_roles: list[tuple[str, StructureRole]], get: Any) -> np.ndarray | None:
    masks = [get(n) for n, r in names_roles if r in LIVER_ROLES]
    if not masks:
        return None
    out = np.zeros_like(masks[0], bool)
    for m in masks:
        out |= m
    return out if out.any() else None


def _dist_mm(region: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    return ndimage.distance_transform_edt(~region, sampling=spacing)


def analyse_followup(
    case_dir: str | Path,
    *,
    mode: str = "affine",
    metric: str = "mattes_mi",
    save_transforms: bool = True,
    register_images: bool = True,
) -> FollowupAnalysis:
    """Registration quality, margin check, response and local status for every timepoint of a case."""
    case_dir = Path(case_dir)
    baseline = load_baseline(case_dir)
    treatments = load_treatments(case_dir)
    timepoints = load_timepoints(case_dir)
    landmarks = load_landmarks(case_dir)
    base_lesions_ids = baseline.label_table.lesion_names()
    base_lesions_ids = [n for n in base_lesions_ids if not n.endswith("_enhancing") and baseline.has(n)]
    for t in treatments:
        if t.lesion not in base_lesions_ids:
            raise CaseFolderError(
                f"{case_dir}/treatments.yaml: lesion {t.lesion!r} is not a lesion of the baseline "
                f"(lesions: {', '.join(base_lesions_ids) or 'none'})."
            )
    spacing = baseline.image.spacing_kji_mm
    baseline_lesions = [
        LesionBaseline(lid, longest_axial_diameter_mm(baseline.mask(lid)), _organ_of(baseline, lid))
        for lid in base_lesions_ids
    ]
    hcc = baseline.patient.primary == PrimaryTumour.HCC
    base_viable = {}
    if hcc:
        for lid in base_lesions_ids:
            en = f"{lid}_enhancing"
            m = baseline.mask(en) if en in baseline.label_table and baseline.has(en) else baseline.mask(lid)
            base_viable[lid] = LesionBaseline(lid, longest_axial_diameter_mm(m), _organ_of(baseline, lid))
    base_liver = _liver_mask([(e.name, e.role) for e in baseline.label_table.entries], baseline.mask_array)
    treated_first: dict[str, TreatmentRecord] = {}
    for t in treatments:
        treated_first.setdefault(t.lesion, t)

    def latest(lid: str, tp: Timepoint) -> TreatmentRecord | None:
        """Latest treatment of ``lid`` this scan can show: before its date, or the same day for a
        post-procedure scan."""
        recs = [t for t in treatments if t.lesion == lid and (
            t.date < tp.spec.date or (t.date == tp.spec.date and tp.spec.kind.value == "post_procedure"))]
        return recs[-1] if recs else None
    ltp_crit = criteria()["local_tumour_progression"]
    edge_mm = float(ltp_crit["edge_distance_mm"])

    results: list[TimepointResult] = []
    history: list[dict[str, float]] = []
    history_viable: list[dict[str, float]] = []
    last_zone: dict[str, np.ndarray] = {}
    seen_clear: dict[str, bool] = {}
    current_treatment: dict[str, TreatmentRecord] = {}
    for tp in timepoints:
        notes: list[str] = []
        reg: RegistrationResult | None = None
        reg_note = None
        matrix = None
        if register_images:
            tp_liver = _liver_mask([(e.name, e.role) for e in tp.label_table.entries], tp.mask_array)
            tumour = None
            if mode == "tumour_rigid":
                tm = np.zeros(baseline.image.shape, bool)
                for lid in treated_first or dict.fromkeys(base_lesions_ids):
                    tm |= baseline.mask_array(lid)
                tumour = baseline.image.with_array(tm)
            try:
                reg = register(
                    baseline.image, tp.image, mode=mode, metric=metric, tumour_mask=tumour,  # type: ignore[arg-type]
                    landmarks_baseline_mm=landmarks,
                    landmarks_followup_mm={k: np.asarray(v) for k, v in (tp.spec.landmarks_mm or {}).items()},
                    liver_baseline=None if base_liver is None else baseline.image.with_array(base_liver),
                    liver_followup=None if tp_liver is None else tp.image.with_array(tp_liver),
                )
                matrix = reg.matrix
                if save_transforms:
                    save_transform(reg, tp.folder)
            except LatplanError as exc:
                reg_note = f"registration failed ({exc}); labels mapped by scanner coordinates (identity)"
        else:
            reg_note = "registration not run; labels mapped by scanner coordinates (identity)"
        if reg is not None and not reg.tre_mm:
            notes.append("no paired landmarks (landmarks.yaml + timepoint.yaml landmarks_mm): TRE not reported")
        labels_b = resample_labels_to_baseline(tp.labels, baseline.image, matrix)

        def in_base(name: str, _tp: Timepoint = tp, _lb: Volume = labels_b) -> np.ndarray:
            return np.isin(_lb.array, _tp.label_table.values_for(name))

        # lesion identity
        lesion_map = {n: tp.baseline_id(n, base_lesions_ids) for n in tp.lesion_names()}
        present = {n for n in lesion_map if tp.has(n)}
        # zones → lesions (baseline space)
        zones: dict[str, np.ndarray] = {}
        for zname, zlid in tp.spec.zone_lesions().items():
            zmask = in_base(zname)
            if not zmask.any():
                notes.append(f"ablation zone {zname!r} is empty after registration")
                continue
            if zlid is None:
                cands = list(treated_first) or base_lesions_ids
                overlaps = {c: int(np.count_nonzero(zmask & baseline.mask_array(c))) for c in cands}
                zlid = max(overlaps, key=lambda c: overlaps[c]) if overlaps and max(overlaps.values()) > 0 else None
                if zlid is None:
                    notes.append(f"ablation zone {zname!r} overlaps no baseline lesion; give its lesion in timepoint.yaml")
                    continue
            zones[zlid] = zones.get(zlid, np.zeros_like(zmask)) | zmask
        # margin check
        checks: list[MarginCheck] = []
        for lid, zmask in zones.items():
            # the margin is judged on the post-procedure scan (or the first scan showing the zone):
            # later zones involute and no longer describe the ablation
            first_zone = lid not in last_zone
            last_zone[lid] = zmask
            if not (tp.spec.kind.value == "post_procedure" or first_zone):
                continue
            rec = latest(lid, tp) or treated_first.get(lid)
            predicted = None
            if rec is not None and rec.predicted_zone:
                pz_path = case_dir / rec.predicted_zone
                if pz_path.is_file():
                    pz = read_volume(pz_path)
                    pz = pz.with_array(pz.array != 0)
                    predicted = resample_labels_to_baseline(pz, baseline.image, None) if not pz.same_geometry(
                        baseline.image) else pz
                else:
                    notes.append(f"predicted zone {rec.predicted_zone} of {lid} not found; comparison skipped")
            target = target_margin_mm(baseline) if rec is None or rec.modality in THERMAL else None
            try:
                checks.append(margin_check(lid, baseline.mask(lid), baseline.image.with_array(zmask), predicted, target))
            except LatplanError as exc:
                notes.append(f"margin check of {lid} not possible: {exc}")
        # response (diameters on the timepoint's own grid)
        current = {}
        for lid in base_lesions_ids:
            tp_name = tp.name_for(lid)
            current[lid] = longest_axial_diameter_mm(tp.labels.with_array(tp.mask_array(tp_name))) if tp_name and tp_name in present else 0.0
        # local status of treated lesions
        status: dict[str, dict[str, Any]] = {}
        reassigned: set[str] = set()
        for lid in treated_first:
            rec = latest(lid, tp)
            if rec is None:
                continue
            if current_treatment.get(lid) is not rec:
                # a (re-)treatment since the last scan: residual vs progression is judged anew, and
                # zones seen before it no longer describe the treated region
                current_treatment[lid] = rec
                seen_clear[lid] = False
                if lid not in zones:
                    last_zone.pop(lid, None)
            region = zones.get(lid, last_zone.get(lid))
            source = "ablation zone" if lid in zones else ("earlier ablation zone" if lid in last_zone else None)
            if region is None and rec.predicted_zone and (case_dir / rec.predicted_zone).is_file():
                pz = read_volume(case_dir / rec.predicted_zone)
                region = resample_labels_to_baseline(pz.with_array(pz.array != 0), baseline.image, None).array
                source = "predicted/irradiated zone"
            if region is None:
                region = baseline.mask_array(lid)
                source = "baseline tumour (no zone known)"
            dist = _dist_mm(region, spacing)
            viable = np.zeros(baseline.image.shape, bool)
            tp_name = tp.name_for(lid)
            if tp_name and tp_name in present:
                enh = tp.enhancing_name(tp_name)
                viable |= in_base(enh) if enh and tp.has(enh) else in_base(tp_name)
            for n, mapped in lesion_map.items():
                if mapped is None and n in present:
                    mk = in_base(n)
                    if mk.any() and float(dist[mk].min()) <= edge_mm:
                        viable |= mk
                        reassigned.add(n)
            if viable.any():
                kind = "local_tumour_progression" if seen_clear.get(lid) else "residual_tumour"
                d_min = float(dist[viable].min())
            else:
                kind, d_min = "no_viable_tumour", None
                seen_clear[lid] = True
            status[lid] = {
                "status": kind,
                "viable_volume_ml": round(float(viable.sum()) * baseline.image.voxel_volume_ml, 3),
                "distance_to_treated_region_mm": None if d_min is None else round(d_min, 2),
                "treated_region": source,
                "modality": rec.modality.value,
            }
        new_lesions = sorted(n for n, mapped in lesion_map.items() if mapped is None and n in present and n not in reassigned)
        recist = assess_response(baseline_lesions, history, current, new_lesions) if baseline_lesions else None
        history.append(current)
        mrec, mnote = None, None
        if hcc:
            viable_now: dict[str, float] = {}
            ok = True
            for lid in base_lesions_ids:
                tp_name = tp.name_for(lid)
                if not tp_name or tp_name not in present:
                    viable_now[lid] = 0.0
                    continue
                enh = tp.enhancing_name(tp_name)
                if enh:
                    viable_now[lid] = longest_axial_diameter_mm(tp.labels.with_array(tp.mask_array(enh)))
                elif tp.spec.enhancement_threshold is not None:
                    mk = tp.mask_array(tp_name) & (tp.image.array >= tp.spec.enhancement_threshold)
                    viable_now[lid] = longest_axial_diameter_mm(tp.labels.with_array(mk))
                else:
                    ok = False
            if ok:
                mrec = assess_response(list(base_viable.values()), history_viable, viable_now, new_lesions, "mRECIST")
                history_viable.append(viable_now)
            else:
                mnote = ("mRECIST not assessable: no lesion_N_enhancing label and no enhancement_threshold "
                         "in timepoint.yaml")
        else:
            mnote = "mRECIST applies to HCC only"
        results.append(TimepointResult(
            tp.label, tp.spec.date, tp.spec.kind.value, reg, reg_note, lesion_map, checks, recist, mrec, mnote,
            status, new_lesions, list(tp.spec.complications or []), notes,
        ))
    return FollowupAnalysis(case_dir, baseline.patient.id, baseline.patient.primary.value, baseline_lesions,
                            treatments, results)


def followup_summary(case_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """JSON-serialisable follow-up summary of a case (for reports [E] and the web app [F])."""
    return analyse_followup(case_dir, **kwargs).to_dict()
