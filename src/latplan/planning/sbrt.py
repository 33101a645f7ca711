"""SBRT screen for one lesion: PTV = (ITV or CTV) + set-up margin, fall-off estimate vs constraints.

Never a treatment plan (caveat on every result): see :mod:`latplan.physics.sbrt_screen`.
Constraints: TG-101 rows for the number of fractions (:func:`latplan.knowledge.radiation.tg101_constraints`)
plus chest wall/rib and central bile-duct rows (:func:`~latplan.knowledge.radiation.sbrt_extra_constraints`),
reduced by prior radiotherapy to the same organ (EQD2, α/β 3 Gy, no recovery). The fall-off length is
calibrated per PTV volume to the R50% limit of the RTOG 0915 conformity table (a lung protocol, used as a
proxy for liver, said on the plan).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from latplan.anatomy.geometry import CaseGeometry, geometry_for
from latplan.errors import InvalidInputError
from latplan.knowledge import radiation as rk
from latplan.physics import lq, sbrt_screen
from latplan.planning.fov import fov_check
from latplan.planning.ibt import liver_mask, structure_names_cached
from latplan.planning.types import TreatmentPlan

__all__ = ["dose_region_reach_mm", "extra_constraints", "plan_sbrt", "prior_rt_adjusted", "unsegmented_organs"]

#: a limit used up by prior radiotherapy (0 Gy) would put the dose region at infinity: it is taken to the
#: distance where the estimate falls to this fraction of the prescription (assumption, latplan)
DOSE_REGION_FLOOR_FRACTION = 0.05


def extra_constraints(fractions: int) -> list[dict[str, Any]]:
    """Chest-wall/rib and central bile-duct rows for ``fractions``; BED10 rows (Osmundson 2015) converted to the
    total dose of ``fractions`` equal fractions with that BED10 (LQ)."""
    out = []
    for c in rk.sbrt_extra_constraints(fractions):
        row = dict(c)
        if row.get("bed10_gy") is not None:
            row["threshold_gy"] = fractions * lq.dose_per_fraction_for_bed(float(row["bed10_gy"]), fractions, 10.0)
        out.append(row)
    return out


def _itv(ctv: np.ndarray, spacing_kji_mm: np.ndarray, motion_mm: float) -> np.ndarray:
    """ITV = CTV swept along the superior–inferior axis (k) over the breathing motion (peak to peak, mm)."""
    if motion_mm <= 0:
        return ctv.copy()
    steps = int(np.ceil(0.5 * motion_mm / spacing_kji_mm[0]))
    out = ctv.copy()
    for s in range(1, steps + 1):
        out[s:] |= ctv[:-s]
        out[:-s] |= ctv[s:]
    return out


def prior_rt_adjusted(constraints: Sequence[Mapping[str, Any]], prior: Sequence[Any], fractions: int
                      ) -> tuple[list[dict[str, Any]], list[str]]:
    """Constraints with the prior dose to the same organ subtracted in EQD2 (α/β 3 Gy, no recovery).

    A prior course of D Gy in n fractions to site S uses EQD2 = D(1 + D/n/3)/(1 + 2/3) of every organ whose
    name appears in S ("liver" matches the liver constraint, "stomach" the stomach row...). The remaining EQD2
    is converted back to a total dose in ``fractions`` equal fractions.
    """
    cfg = rk.sbrt_config()["prior_rt"]
    ab = float(cfg["alpha_beta_gy"])
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for c in constraints:
        row = dict(c)
        organ = str(c["organ"]).split("_")[0]
        used = 0.0
        for p in prior:
            site, dose, n = str(getattr(p, "site", "")).lower(), getattr(p, "dose_gy", None), getattr(p, "fractions", None)
            if dose and organ in site:
                used += float(lq.eqd2_gy(float(dose) / float(n or 1), int(n or 1), ab)) * (1 - float(cfg["recovery_fraction"]))
        if used > 0:
            for key in ("threshold_gy", "max_point_gy"):
                if row.get(key) is None:
                    continue
                total = float(row[key])
                left = float(lq.eqd2_gy(total / fractions, fractions, ab)) - used
                row[key] = 0.0 if left <= 0 else fractions * lq.dose_per_fraction_for_bed(left * (1 + 2 / ab), fractions, ab)
            notes.append(f"{c['organ']}: prior radiotherapy EQD2 {used:.1f} Gy (α/β {ab:g} Gy, no recovery) "
                         f"leaves {row['threshold_gy']:.1f} Gy in {fractions} fractions")
        out.append(row)
    return out, notes


def _local_control(bed10_gy: float, primary: Any) -> dict[str, Any]:
    """Local-control estimates for the lesion's population, never another population's figures.

    * 12/24 months: the two-anchor logistic of knowledge ``local_control`` (colorectal: Chang 2011 +
      Klement 2017; other metastases) — left out for primary liver tumours (no published anchor encoded;
      ``local_control_note`` says so);
    * 6 months: the published population-specific dose–response (HCC or colorectal, Br J Radiol 2014)
      where one exists.
    """
    out: dict[str, Any] = {}
    try:
        lc12 = rk.sbrt_local_control(bed10_gy, 12.0, primary)
        lc24 = rk.sbrt_local_control(bed10_gy, 24.0, primary)
        out["local_control_12m_percent_estimate"] = round(lc12["local_control_percent"], 1)
        out["local_control_24m_percent_estimate"] = round(lc24["local_control_percent"], 1)
        out["local_control_source"] = lc12["source"]
        out["local_control_population"] = lc12["population"]
        out["local_control_extrapolated"] = lc12["extrapolated"]
    except InvalidInputError as exc:
        out["local_control_note"] = str(exc)
    dr = rk.sbrt_dose_response(bed10_gy, primary)
    if dr is not None:
        out["local_control_6m_percent_estimate"] = round(dr["local_control_percent"], 1)
        out["local_control_6m_source"] = dr["source"]
        out["local_control_6m_population"] = dr["population"]
        out["local_control_6m_extrapolated"] = dr["extrapolated"]
    return out


def dose_region_reach_mm(constraints: Sequence[Mapping[str, Any]], falloff_lambda_mm: float,
                         prescription_gy: float) -> tuple[float, float]:
    """(x mm, D Gy): outside the PTV the fall-off estimate Rx·exp(−x/λ) exceeds D, the lowest limit of a serial
    organ in ``constraints`` (a volume threshold or a point maximum), out to x = λ·ln(Rx/D). An organ within x
    of the PTV that the image does not show could break a limit the screen never checked, so the field-of-view
    check covers the PTV + x (found on a real CT cropped at the liver dome: the PTV was inside the image, the
    heart beyond it, and the screen called the schedule deliverable). Parallel organs (liver, kidneys) are left
    out: tissue the image does not show is counted as not spared, which is conservative."""
    limits = [float(c[k]) for c in constraints if c.get("kind") == "serial"
              for k in ("threshold_gy", "max_point_gy") if c.get(k) is not None]
    if not limits or prescription_gy <= 0:
        return 0.0, float("nan")
    d_min = max(min(limits), DOSE_REGION_FLOOR_FRACTION * prescription_gy)
    if d_min >= prescription_gy:
        return 0.0, d_min
    return falloff_lambda_mm * math.log(prescription_gy / d_min), d_min


def unsegmented_organs(constraints: Sequence[Mapping[str, Any]], found: Mapping[str, np.ndarray]) -> list[str]:
    """The organs of ``constraints`` with no structure in the case (``found``: :func:`_organ_masks`): their limits
    were not checked (never assumed met). One name per structure set (the second row of an organ is not repeated)."""
    seen: set[tuple[str, ...]] = set()
    out: list[str] = []
    for c in constraints:
        organ = str(c["organ"])
        key = tuple(c.get("structures", [organ]))
        if organ in found or key in seen:
            continue
        seen.add(key)
        base, _, row = organ.rpartition("_") if re.fullmatch(r".+_v?\d+", organ) else (organ, "", "")
        if base in found:  # another row of the organ was checked on other structures (chest wall: ribs)
            out.append(f"{base} ({' or '.join(key)}, for its {row.upper()} row)")
        elif base not in out:
            out.append(base)
    return out


def _organ_masks(case: Any, constraints: Sequence[Mapping[str, Any]], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    organs: dict[str, np.ndarray] = {}
    for c in constraints:
        organ = str(c["organ"])
        if organ == "liver":
            lm = liver_mask(case)
            if lm is not None:
                organs[organ] = lm
            continue
        names = [n for n in c.get("structures", [organ]) if n in structure_names_cached(case)]
        if names:
            m = np.zeros(shape, bool)
            for n in names:
                m |= case.mask_array(n)
            organs[organ] = m
    return organs


def _fov_metrics(case: Any, lesion: np.ndarray, margin_mm: float, motion_mm: float,
                 constraints: Sequence[Mapping[str, Any]], falloff_lambda_mm: float, prescription_gy: float
                 ) -> dict[str, Any]:
    """The ``fov_*`` keys of the plan for the PTV grown by the dose region of :func:`dose_region_reach_mm`
    (``fov_dose_region_mm``, ``fov_dose_region_limit_gy``): what the screen must see lies within it."""
    x_mm, d_gy = dose_region_reach_mm(constraints, falloff_lambda_mm, prescription_gy)
    reach = margin_mm + 0.5 * motion_mm + x_mm
    what = (f"the region where the dose estimate exceeds {d_gy:.1f} Gy, the lowest organ limit (the PTV + "
            f"{x_mm:.0f} mm, lesion + {reach:.0f} mm)" if x_mm > 0 else f"the PTV (lesion + {reach:g} mm)")
    out = fov_check(case, lesion, reach, what)
    out.update({"fov_dose_region_mm": round(x_mm, 1),
                "fov_dose_region_limit_gy": round(d_gy, 2) if math.isfinite(d_gy) else None})
    return out


def plan_sbrt(case: Any, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
              geometry: CaseGeometry | None = None, fractions: int = 3,
              dose_per_fraction_gy: float = 15.0, constraints: Sequence[Mapping[str, Any]] | None = None,
              ptv_margin_mm: float | None = None, breathing_motion_mm: float | None = None,
              falloff_lambda_mm: float | None = None, calibrate_falloff: bool = True, alpha_beta_gy: float = 10.0,
              prior_radiotherapy: Sequence[Any] | None = None, **_ignored: Any) -> TreatmentPlan:
    """Screen an SBRT schedule for a lesion → TreatmentPlan with metrics ``feasible``, ``limiting_organ``, ``bed_gy``.

    CTV = the lesion; ITV = CTV swept over ``breathing_motion_mm`` (superior–inferior, peak to peak) when
    given; PTV = ITV (or CTV) + ``ptv_margin_mm`` (None → the knowledge set-up margin). The fall-off length
    is calibrated to the RTOG 0915 R50% table for the PTV volume unless ``calibrate_falloff`` is False
    (then ``falloff_lambda_mm`` is used). ``prior_radiotherapy``: records with
    site, dose_gy, fractions (None → the patient's ``prior_radiotherapy``). ``bed_gy`` uses
    ``alpha_beta_gy``; ``bed10_gy`` always α/β = 10 Gy. ``geometry``: the case's
    :class:`~latplan.anatomy.geometry.CaseGeometry`, computed once by the pipeline.
    """
    t0 = time.perf_counter()
    geometry_for(case, geometry)  # the pipeline's CaseGeometry of this case (its maps are the case's maps)
    cfg = rk.sbrt_config()
    margin = float(cfg["setup_margin_mm"]["value"]) if ptv_margin_mm is None else float(ptv_margin_mm)
    if margin < 0:
        raise InvalidInputError(f"PTV margin must be ≥ 0 mm; got {margin}.")
    if constraints is None:
        constraints = rk.tg101_constraints(fractions) + extra_constraints(fractions)
    prior = list(prior_radiotherapy if prior_radiotherapy is not None else
                 (getattr(getattr(case, "patient", None), "prior_radiotherapy", None) or []))
    constraints, prior_notes = prior_rt_adjusted(constraints, prior, fractions)
    gtv = case.lesion_mask(lesion_id)
    sp = gtv.spacing_kji_mm
    g = gtv.array.astype(bool)
    itv = _itv(g, sp, float(breathing_motion_mm or 0.0))
    ptv = ndi.distance_transform_edt(~itv, sampling=sp) <= margin if margin > 0 else itv.copy()
    ptv_ml = float(ptv.sum() * gtv.voxel_volume_ml)
    r50_table, d2cm_table = rk.sbrt_conformity_limits(ptv_ml)
    lam_cal = sbrt_screen.lambda_for_r50_mm(ptv_ml, r50_table)
    calibrated = calibrate_falloff or falloff_lambda_mm is None
    lam = lam_cal if calibrated else float(falloff_lambda_mm or lam_cal)
    r50_model, d2cm_model = sbrt_screen.model_conformity(gtv.with_array(ptv), lam)
    organs = _organ_masks(case, constraints, g.shape)
    res = sbrt_screen.screen_sbrt(gtv.with_array(ptv), organs, constraints, fractions=fractions,
                                  dose_per_fraction_gy=dose_per_fraction_gy, falloff_lambda_mm=lam,
                                  alpha_beta_gy=alpha_beta_gy, exclude_from_parallel=g)
    bed10 = float(lq.bed_gy(dose_per_fraction_gy, fractions, 10.0))
    metrics: dict[str, Any] = {
        "feasible": res.feasible, "constraints_met": res.feasible, "limiting_organ": res.limiting_organ,
        "bed_gy": round(res.bed_gy, 2), "alpha_beta_gy": alpha_beta_gy, "bed10_gy": round(bed10, 2),
        "eqd2_gy": round(float(lq.eqd2_gy(dose_per_fraction_gy, fractions, alpha_beta_gy)), 2),
        "bed_reachable_gy": round(res.bed_reachable_gy, 2), "bed_reachable_capped": res.bed_reachable_capped,
        "max_dose_per_fraction_gy": round(res.max_dose_per_fraction_gy, 2) if np.isfinite(res.max_dose_per_fraction_gy) else None,
        "nearest_limit_organ": res.nearest_limit_organ, "fractions": fractions,
        "dose_per_fraction_gy": dose_per_fraction_gy, "ptv_volume_ml": round(ptv_ml, 2),
        "ptv_margin_mm": margin, "itv": bool(breathing_motion_mm), "breathing_motion_mm": breathing_motion_mm,
        "falloff_lambda_mm": round(lam, 2), "falloff_calibrated": calibrated,
        "r50_model": round(r50_model, 2), "r50_table": round(r50_table, 2),
        "d2cm_model_percent": round(d2cm_model, 1), "d2cm_table_max_percent": round(d2cm_table, 1),
        "prior_radiotherapy_courses": len(prior), "organs": res.organs, "estimate": True,
    }
    metrics.update(_local_control(bed10, getattr(getattr(case, "patient", None), "primary", None)))
    metrics.update(_fov_metrics(case, g, margin, float(breathing_motion_mm or 0.0), constraints, lam,
                                fractions * dose_per_fraction_gy))
    metrics["unsegmented_organs"] = unsegmented_organs(constraints, organs)
    caveats = [res.caveat,
               f"fall-off model: D = Rx·exp(−x/{lam:.1f} mm) outside the PTV, λ calibrated to the R50% limit "
               f"({r50_table:.1f}) of the RTOG 0915 conformity table for a {ptv_ml:.0f} ml PTV — a LUNG SBRT "
               "protocol used as a proxy for liver" if calibrated else
               f"fall-off model: D = Rx·exp(−x/{lam:g} mm) outside the PTV (λ given)",
               f"PTV = {'ITV (CTV swept over the breathing motion)' if breathing_motion_mm else 'CTV'} + {margin:g} mm",
               "LQ/BED is unreliable above about 10 Gy per fraction; BED10 (α/β = 10 Gy) is shown for the "
               "local-control estimates (colorectal/metastases: Chang 2011 + Klement 2017 anchors at 12/24 months; "
               "HCC and colorectal: a published 6-month dose-response fitted mostly on hypofractionated doses)"]
    caveats += prior_notes
    if metrics["fov_limited"]:
        caveats.append(str(metrics["fov_limited_note"]))
    if metrics["unsegmented_organs"]:
        caveats.append("not segmented, limits not checked: " + ", ".join(metrics["unsegmented_organs"]))
    if not res.feasible:
        caveats.append(f"schedule {fractions} × {dose_per_fraction_gy:g} Gy infeasible by the estimate: limiting organ "
                       f"{res.limiting_organ}; the largest dose per fraction meeting every constraint is "
                       f"{res.max_dose_per_fraction_gy:.1f} Gy")
    return TreatmentPlan(
        modality="sbrt", lesion_id=lesion_id, metrics=metrics, target=gtv.with_array(ptv), caveats=caveats,
        parameters={"fractions": fractions, "dose_per_fraction_gy": dose_per_fraction_gy, "ptv_margin_mm": margin,
                    "falloff_lambda_mm": lam, "alpha_beta_gy": alpha_beta_gy,
                    "breathing_motion_mm": breathing_motion_mm, "constraints": [dict(c) for c in constraints]},
        engine="latplan.sbrt_screen", engine_version="0.2",
        verification="fall-off estimate calibrated to the RTOG 0915 R50% table; TG-101 constraints (knowledge data); "
                     "scaling and BED tested (tests/physics/test_sbrt_screen.py); not a dose calculation",
        runtime_s=time.perf_counter() - t0,
    )
