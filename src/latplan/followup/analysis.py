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
from collections.abc import Callable
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


@dataclass
class _FollowupContext:
    """What every timepoint is analysed against: the baseline, its lesions and the treatments."""

    case_dir: Path
    baseline: Case
    treatments: list[TreatmentRecord]
    landmarks: Any
    base_lesions_ids: list[str]
    baseline_lesions: list[LesionBaseline]
    base_viable: dict[str, LesionBaseline]
    base_liver: np.ndarray | None
    treated_first: dict[str, TreatmentRecord]
    hcc: bool
    edge_mm: float


@dataclass
class _FollowupState:
    """What carries from one timepoint to the next (sorted by date)."""

    history: list[dict[str, float]] = field(default_factory=list)
    history_viable: list[dict[str, float]] = field(default_factory=list)
    last_zone: dict[str, np.ndarray] = field(default_factory=dict)
    seen_clear: dict[str, bool] = field(default_factory=dict)
    current_treatment: dict[str, TreatmentRecord] = field(default_factory=dict)


def analyse_followup(
    case_dir: str | Path,
    *,
    mode: str = "affine",
    metric: str = "mattes_mi",
    save_transforms: bool = True,
    register_images: bool = True,
) -> FollowupAnalysis:
    """Registration quality, margin check, response and local status for every timepoint of a case."""
    ctx, timepoints = _load_context(Path(case_dir))
    state = _FollowupState()
    results = [_analyse_timepoint(ctx, state, tp, mode, metric, save_transforms, register_images)
               for tp in timepoints]
    return FollowupAnalysis(ctx.case_dir, ctx.baseline.patient.id, ctx.baseline.patient.primary.value,
                            ctx.baseline_lesions, ctx.treatments, results)


def _load_context(case_dir: Path) -> tuple[_FollowupContext, list[Timepoint]]:
    """Baseline, treatments, landmarks and timepoints of the case; a treatment of an unknown lesion is
    refused."""
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
    ltp_crit = criteria()["local_tumour_progression"]
    ctx = _FollowupContext(case_dir, baseline, treatments, landmarks, base_lesions_ids, baseline_lesions,
                           base_viable, base_liver, treated_first, hcc, float(ltp_crit["edge_distance_mm"]))
    return ctx, timepoints


def _latest(treatments: list[TreatmentRecord], lid: str, tp: Timepoint) -> TreatmentRecord | None:
    """Latest treatment of ``lid`` this scan can show: before its date, or the same day for a
    post-procedure scan."""
    recs = [t for t in treatments if t.lesion == lid and (
        t.date < tp.spec.date or (t.date == tp.spec.date and tp.spec.kind.value == "post_procedure"))]
    return recs[-1] if recs else None


def _analyse_timepoint(ctx: _FollowupContext, state: _FollowupState, tp: Timepoint, mode: str, metric: str,
                       save_transforms: bool, register_images: bool) -> TimepointResult:
    """Steps 1–5 of the module docstring for one timepoint (updates ``state``)."""
    notes: list[str] = []
    reg, reg_note, matrix = _register_timepoint(ctx, tp, mode, metric, save_transforms, register_images)
    if reg is not None and not reg.tre_mm:
        notes.append("no paired landmarks (landmarks.yaml + timepoint.yaml landmarks_mm): TRE not reported")
    labels_b = resample_labels_to_baseline(tp.labels, ctx.baseline.image, matrix)

    def in_base(name: str, _tp: Timepoint = tp, _lb: Volume = labels_b) -> np.ndarray:
        return np.isin(_lb.array, _tp.label_table.values_for(name))

    # lesion identity
    lesion_map = {n: tp.baseline_id(n, ctx.base_lesions_ids) for n in tp.lesion_names()}
    present = {n for n in lesion_map if tp.has(n)}
    zones = _zones(ctx, tp, in_base, notes)
    checks = _margin_checks(ctx, state, tp, zones, notes)
    # response (diameters on the timepoint's own grid)
    current = {}
    for lid in ctx.base_lesions_ids:
        tp_name = tp.name_for(lid)
        current[lid] = longest_axial_diameter_mm(tp.labels.with_array(tp.mask_array(tp_name))) if tp_name and tp_name in present else 0.0
    status, reassigned = _local_status(ctx, state, tp, zones, lesion_map, present, in_base)
    new_lesions = sorted(n for n, mapped in lesion_map.items() if mapped is None and n in present and n not in reassigned)
    recist = assess_response(ctx.baseline_lesions, state.history, current, new_lesions) if ctx.baseline_lesions else None
    state.history.append(current)
    mrec, mnote = _mrecist(ctx, state, tp, present, new_lesions)
    return TimepointResult(
        tp.label, tp.spec.date, tp.spec.kind.value, reg, reg_note, lesion_map, checks, recist, mrec, mnote,
        status, new_lesions, list(tp.spec.complications or []), notes,
    )


def _register_timepoint(ctx: _FollowupContext, tp: Timepoint, mode: str, metric: str, save_transforms: bool,
                        register_images: bool) -> tuple[RegistrationResult | None, str | None, Any]:
    """Step 1: register the timepoint to the baseline; (result, note when identity is used, matrix)."""
    baseline = ctx.baseline
    reg: RegistrationResult | None = None
    reg_note = None
    matrix = None
    if register_images:
        tp_liver = _liver_mask([(e.name, e.role) for e in tp.label_table.entries], tp.mask_array)
        tumour = None
        if mode == "tumour_rigid":
            tm = np.zeros(baseline.image.shape, bool)
            for lid in ctx.treated_first or dict.fromkeys(ctx.base_lesions_ids):
                tm |= baseline.mask_array(lid)
            tumour = baseline.image.with_array(tm)
        try:
            reg = register(
                baseline.image, tp.image, mode=mode, metric=metric, tumour_mask=tumour,  # type: ignore[arg-type]
                landmarks_baseline_mm=ctx.landmarks,
                landmarks_followup_mm={k: np.asarray(v) for k, v in (tp.spec.landmarks_mm or {}).items()},
                liver_baseline=None if ctx.base_liver is None else baseline.image.with_array(ctx.base_liver),
                liver_followup=None if tp_liver is None else tp.image.with_array(tp_liver),
            )
            matrix = reg.matrix
            if save_transforms:
                save_transform(reg, tp.folder)
        except LatplanError as exc:
            reg_note = f"registration failed ({exc}); labels mapped by scanner coordinates (identity)"
    else:
        reg_note = "registration not run; labels mapped by scanner coordinates (identity)"
    return reg, reg_note, matrix


def _zones(ctx: _FollowupContext, tp: Timepoint, in_base: Callable[[str], np.ndarray],
           notes: list[str]) -> dict[str, np.ndarray]:
    """Ablation zones of the timepoint in baseline space, by the lesion they treat."""
    zones: dict[str, np.ndarray] = {}
    for zname, zlid in tp.spec.zone_lesions().items():
        zmask = in_base(zname)
        if not zmask.any():
            notes.append(f"ablation zone {zname!r} is empty after registration")
            continue
        if zlid is None:
            cands = list(ctx.treated_first) or ctx.base_lesions_ids
            overlaps = {c: int(np.count_nonzero(zmask & ctx.baseline.mask_array(c))) for c in cands}
            zlid = max(overlaps, key=lambda c: overlaps[c]) if overlaps and max(overlaps.values()) > 0 else None
            if zlid is None:
                notes.append(f"ablation zone {zname!r} overlaps no baseline lesion; give its lesion in timepoint.yaml")
                continue
        zones[zlid] = zones.get(zlid, np.zeros_like(zmask)) | zmask
    return zones


def _margin_checks(ctx: _FollowupContext, state: _FollowupState, tp: Timepoint, zones: dict[str, np.ndarray],
                   notes: list[str]) -> list[MarginCheck]:
    """Step 3: margin check of every zone on the post-procedure scan (or the first scan showing it)."""
    baseline = ctx.baseline
    checks: list[MarginCheck] = []
    for lid, zmask in zones.items():
        # the margin is judged on the post-procedure scan (or the first scan showing the zone):
        # later zones involute and no longer describe the ablation
        first_zone = lid not in state.last_zone
        state.last_zone[lid] = zmask
        if not (tp.spec.kind.value == "post_procedure" or first_zone):
            continue
        rec = _latest(ctx.treatments, lid, tp) or ctx.treated_first.get(lid)
        predicted = None
        if rec is not None and rec.predicted_zone:
            pz_path = ctx.case_dir / rec.predicted_zone
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
    return checks


def _local_status(ctx: _FollowupContext, state: _FollowupState, tp: Timepoint, zones: dict[str, np.ndarray],
                  lesion_map: dict[str, str | None], present: set[str], in_base: Callable[[str], np.ndarray]
                  ) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Step 5: local status of every treated lesion, and the unmatched lesions counted as its tumour."""
    baseline = ctx.baseline
    spacing = baseline.image.spacing_kji_mm
    status: dict[str, dict[str, Any]] = {}
    reassigned: set[str] = set()
    for lid in ctx.treated_first:
        rec = _latest(ctx.treatments, lid, tp)
        if rec is None:
            continue
        if state.current_treatment.get(lid) is not rec:
            # a (re-)treatment since the last scan: residual vs progression is judged anew, and
            # zones seen before it no longer describe the treated region
            state.current_treatment[lid] = rec
            state.seen_clear[lid] = False
            if lid not in zones:
                state.last_zone.pop(lid, None)
        region = zones.get(lid, state.last_zone.get(lid))
        source = "ablation zone" if lid in zones else ("earlier ablation zone" if lid in state.last_zone else None)
        if region is None and rec.predicted_zone and (ctx.case_dir / rec.predicted_zone).is_file():
            pz = read_volume(ctx.case_dir / rec.predicted_zone)
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
                if mk.any() and float(dist[mk].min()) <= ctx.edge_mm:
                    viable |= mk
                    reassigned.add(n)
        if viable.any():
            kind = "local_tumour_progression" if state.seen_clear.get(lid) else "residual_tumour"
            d_min = float(dist[viable].min())
        else:
            kind, d_min = "no_viable_tumour", None
            state.seen_clear[lid] = True
        status[lid] = {
            "status": kind,
            "viable_volume_ml": round(float(viable.sum()) * baseline.image.voxel_volume_ml, 3),
            "distance_to_treated_region_mm": None if d_min is None else round(d_min, 2),
            "treated_region": source,
            "modality": rec.modality.value,
        }
    return status, reassigned


def _mrecist(ctx: _FollowupContext, state: _FollowupState, tp: Timepoint, present: set[str],
             new_lesions: list[str]) -> tuple[ResponseAssessment | None, str | None]:
    """Step 4 for HCC: mRECIST on the enhancing (viable) tumour; (assessment, note when not assessable)."""
    if not ctx.hcc:
        return None, "mRECIST applies to HCC only"
    viable_now: dict[str, float] = {}
    ok = True
    for lid in ctx.base_lesions_ids:
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
    if not ok:
        return None, ("mRECIST not assessable: no lesion_N_enhancing label and no enhancement_threshold "
                      "in timepoint.yaml")
    mrec = assess_response(list(ctx.base_viable.values()), state.history_viable, viable_now, new_lesions, "mRECIST")
    state.history_viable.append(viable_now)
    return mrec, None


def followup_summary(case_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """JSON-serialisable follow-up summary of a case (for reports [E] and the web app [F])."""
    return analyse_followup(case_dir, **kwargs).to_dict()
