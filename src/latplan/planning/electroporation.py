"""Electroporation planners: ECT (reversible, with bleomycin) and IRE (irreversible).

Decisions
---------
* Needles run parallel along the safe trajectory of :func:`latplan.planning.applicators.find_trajectory`
  (liver ECT/IRE use individually placed long needles; parallel placement is the standard).
* Candidate arrays: a 4-needle square (6 pairs; side 10 or 15 mm for ECT, 15 mm for IRE)
  and the hexagonal 7-needle array (12 pairs; 15 or 20 mm); the planner starts with the
  first whose span reaches the target and tries at most two (speed); the active length spans the target along the needles
  (+5 mm, 10–40 mm). Voltage = ratio × needle distance (ECT 1000 V/cm for pairs, 730 V/cm
  for the hexagonal array — ESOPE SOP; IRE 1500 V/cm capped at 3000 V — NanoKnife).
* Field: :func:`latplan.physics.electroporation.solve_field` on a crop of the case at ≥ 2 mm
  (labels resampled by striding), 3 conductivity iterations. Zone = voxels where the max
  field over pairs reaches the tissue's threshold (reversible for ECT, irreversible for
  IRE; tumour thresholds in lesions, liver elsewhere).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from latplan.case import Case, StructureRole
from latplan.case.vocabulary import VESSEL_ROLES
from latplan.errors import InvalidInputError
from latplan.physics import electroporation as ep
from latplan.physics.ablation_zones import perpendicular_axes
from latplan.physics.margins import ablative_margin_arrays
from latplan.planning.applicators import (
    collateral_structures,
    crop_around,
    find_trajectory,
    heat_sink_vessels,
    structure_role,
    target_mask,
)
from latplan.planning.types import TreatmentPlan

__all__ = ["plan_ect", "plan_electroporation", "plan_ire"]

ENGINE_VERSION = "electroporation-planner-1.0"
VERIFICATION = ("field solver vs the analytic two-line-charge solution for a parallel needle pair (3 %), "
                "monotonic coverage curve, configurable thresholds (tests/physics_ablation/test_ablation_field.py)")


def _tissue_table() -> tuple[list[ep.ElectroTissue], dict[str, int]]:
    t = ep.default_electro_tissues()
    order = ["soft_tissue", "liver", "tumour", "blood"]
    return [t[n] for n in order], {n: i for i, n in enumerate(order)}


def _labels(case: Case, sl: tuple[slice, ...], stride: int) -> np.ndarray:
    _, idx = _tissue_table()
    lab_case = case.labels.array[sl]
    out = np.full(lab_case.shape, idx["soft_tissue"], np.int64)
    for n in case.structure_names():
        r = structure_role(case, n)
        vals = case.label_table.values_for(n)
        if r in (StructureRole.LIVER, StructureRole.LIVER_SEGMENT, StructureRole.BILE_DUCT):
            out[np.isin(lab_case, vals)] = idx["liver"]
        elif r == StructureRole.LESION:
            out[np.isin(lab_case, vals)] = idx["tumour"]
        elif r in VESSEL_ROLES:
            out[np.isin(lab_case, vals)] = idx["blood"]
    return np.ascontiguousarray(out[::stride, ::stride, ::stride])


def _configs(kind: str, target_across_mm: float) -> list[tuple[str, float]]:
    """Arrays to try, smallest first, starting near the target size (side ≈ target radius)."""
    allc = [("square4", 10.0), ("square4", 15.0), ("hexagonal7", 15.0), ("hexagonal7", 20.0)]
    if kind == "ire":
        allc = allc[1:]
    reach = {"square4": 0.7, "hexagonal7": 2.0}  # array span ≈ factor × spacing (+ ~5 mm field reach)
    start = next((i for i, (lay, sp_) in enumerate(allc) if reach[lay] * sp_ + 10.0 >= target_across_mm),
                 len(allc) - 1)
    return allc[start:start + 2]


def _needles(layout: str, centre_kji: np.ndarray, d_kji: np.ndarray, spacing: float, active: float,
             radius: float) -> tuple[list[ep.Needle], list[tuple[int, int]]]:
    if layout == "hexagonal7":
        nd = ep.hexagonal_array(tuple(centre_kji), tuple(d_kji), spacing, active_length_mm=active, radius_mm=radius)
        return nd, ep.hexagonal_pairs()
    u, v = perpendicular_axes(d_kji)
    c = centre_kji + 0.5 * active * d_kji
    offs = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]
    nd = [ep.Needle(tuple((c + spacing * (a * u + b * v)).tolist()), tuple(d_kji.tolist()), active, radius)
          for a, b in offs]
    return nd, [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3)]


def plan_electroporation(
    kind: str,
    case: Case,
    lesion_id: str,
    measurements: Mapping[str, Any] | None = None,
    *,
    target_margin_mm: float = 5.0,
    threshold_v_per_cm: float | None = None,
    iterations: int = 3,
    grid_mm: float = 2.0,
) -> TreatmentPlan:
    """ECT (``kind="ect"``) or IRE (``"ire"``) plan for one lesion; see module doc.

    ``threshold_v_per_cm`` overrides the tissue-specific thresholds with one value.
    """
    t_start = time.perf_counter()
    if kind not in ("ect", "ire"):
        raise InvalidInputError(f"electroporation kind must be 'ect' or 'ire'; got {kind!r}.")
    consts = ep.electroporation_constants()
    pulses = consts["pulses"][kind]
    radius = float(consts["needle"]["radius_mm"])
    lesion_full = case.lesion_mask(lesion_id).array
    h = case.labels.spacing_kji_mm
    stride = max(1, int(np.floor(grid_mm / float(h.min()) + 1e-9)))
    traj = find_trajectory(case, lesion_id)
    lo, hi = crop_around(lesion_full, target_margin_mm + 25.0, h)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    ref = case.labels.crop(lo, hi)
    lesion = lesion_full[sl]
    target = target_mask(lesion, target_margin_mm + 0.5 * float(h.max()), h)
    lab = _labels(case, sl, stride)
    h_sim = h * stride
    tissues, _idx = _tissue_table()
    inv = np.linalg.inv(ref.affine)[:3, :3]
    d_kji = (inv @ traj.direction)[::-1] * h
    d_kji /= np.linalg.norm(d_kji)
    tpts = np.argwhere(target) * h
    centre_kji = tpts.mean(axis=0)
    along = tpts @ d_kji
    active = float(np.clip(np.ceil((along.max() - along.min() + 5.0) / 5.0) * 5.0, 10.0, 40.0))
    centre_kji = centre_kji + (0.5 * (along.max() + along.min()) - float(centre_kji @ d_kji)) * d_kji

    thr_table = np.array([t.reversible_v_per_cm if kind == "ect" else t.irreversible_v_per_cm for t in tissues])
    thr = thr_table[lab] if threshold_v_per_cm is None else np.full(lab.shape, float(threshold_v_per_cm))
    best: dict[str, Any] | None = None
    tried = []
    across = float((np.ptp(tpts, axis=0)).max() + h.max())
    for layout, spacing in _configs(kind, across):
        needles, pairs = _needles(layout, centre_kji, d_kji, spacing, active, radius)
        ratio = float(pulses["voltage_to_distance_v_per_cm"]["hexagonal" if layout == "hexagonal7" else "pair"])
        res = ep.solve_field(lab, tissues, h_sim, needles, pairs, voltage_to_distance_v_per_cm=ratio,
                             iterations=iterations, rtol=1e-5)
        if "max_voltage_v" in pulses:
            cap = float(pulses["max_voltage_v"])
            if max(res.voltages_v) > cap:
                volts = [min(v, cap) for v in res.voltages_v]
                res = ep.solve_field(lab, tissues, h_sim, needles, pairs, volts, iterations=iterations, rtol=1e-5)
        zone_sim = res.field_v_per_cm >= thr
        zone = _upsample(zone_sim, stride, ref.shape)
        field = _upsample(res.field_v_per_cm, stride, ref.shape)
        margin = ablative_margin_arrays(lesion, zone, h) if zone.any() else None
        mm = margin.min_margin_mm if margin is not None else -1e3
        cov = margin.coverage_percent if margin is not None else 0.0
        tried.append(f"{layout} {spacing:g} mm: margin {mm:.1f} mm, coverage {cov:.1f} %")
        cand = {"layout": layout, "spacing": spacing, "needles": needles, "res": res, "zone": zone, "field": field,
                "margin": margin, "min": mm, "cov": cov}
        if best is None or (cov, mm) > (best["cov"], best["min"]):
            best = cand
        if mm >= target_margin_mm:
            best = cand
            break
    assert best is not None
    margin = best["margin"]
    covered = bool(best["min"] >= target_margin_mm - 1e-6)
    # needles in LPS mm
    apps = []
    for nd in best["needles"]:
        tip_kji = np.asarray(nd.tip_kji_mm) / h  # fractional index on ref
        tip_mm = ref.index_to_mm(tip_kji)
        entry = tip_mm - (traj.depth_mm + float(np.dot(tip_mm - traj.target_mm, traj.direction))) * traj.direction
        apps.append({"type": kind, "device": "needle electrode", "tip_mm": [round(float(x), 2) for x in tip_mm],
                     "direction": [round(float(x), 4) for x in traj.direction],
                     "entry_mm": [round(float(x), 2) for x in entry],
                     "settings": {"active_length_mm": active, "radius_mm": radius, "layout": best["layout"],
                                  "spacing_mm": best["spacing"], "pulses": pulses["pulses"],
                                  "pulse_width_us": pulses["pulse_width_us"]}})
    th, curve = ep.coverage_curve(best["field"], lesion)
    zone_vol = ref.with_array(best["zone"])
    reasons = []
    if not covered:
        reasons.append(f"no needle array tried reaches the {target_margin_mm:g} mm margin ({'; '.join(tried)})")
    if not traj.safe:
        reasons.append(traj.note or "no safe straight path")
    caveats = [
        "field thresholds are literature values (Go-Smart; 460/700 V/cm also quoted): the zone depends on them",
        "needles not in the pulsed pair are modelled as tissue; metal clips/stents distort the field",
    ]
    if kind == "ect":
        caveats.append("ECT spares vessels and collagenous structures (vessels > 5 mm preserved); "
                       "bleomycin dose limits apply")
    sinks = heat_sink_vessels(case, lesion_id, measurements=_lesion_meas(measurements, lesion_id))
    metrics: dict[str, Any] = {
        "min_margin_mm": round(float(best["min"]), 2),
        "coverage_percent": round(float(best["cov"]), 2),
        "applicator_count": len(best["needles"]),
        "covered": covered,
        "target_margin_mm": float(target_margin_mm),
        "pairs": len(best["res"].pairs),
        "voltages_v": [round(v, 0) for v in best["res"].voltages_v],
        "threshold_v_per_cm": "tissue-specific" if threshold_v_per_cm is None else float(threshold_v_per_cm),
        "coverage_curve": {"threshold_v_per_cm": th[::4].tolist(), "coverage_percent": np.round(curve[::4], 2).tolist()},
        "zone_volume_ml": round(float(best["zone"].sum()) * case.labels.voxel_volume_ml, 2),
        "heat_sink_vessels": sinks,
        "collateral_structures": collateral_structures(case, zone_vol, lo),
        "trajectory_safe": bool(traj.safe),
        "reason": "; ".join(reasons) if reasons else f"{best['layout']} array, {best['spacing']:g} mm spacing covers "
                                                     "lesion + target margin",
    }
    plan = TreatmentPlan(
        modality=kind,
        lesion_id=lesion_id,
        metrics=metrics,
        applicators=apps,
        zone=zone_vol,
        field_v_per_cm=ref.with_array(best["field"].astype(np.float32)),
        target=ref.with_array(target_mask(lesion, target_margin_mm, h)),
        margin_histogram={k: round(v, 2) for k, v in margin.histogram_percent.items()} if margin else None,
        caveats=caveats,
        parameters={"target_margin_mm": float(target_margin_mm), "iterations": iterations,
                    "grid_spacing_mm": [float(x) for x in h_sim], "tried": tried},
        engine="latplan.physics.electroporation",
        engine_version=ENGINE_VERSION,
        verification=VERIFICATION,
    )
    plan.runtime_s = time.perf_counter() - t_start
    return plan


def _upsample(a: np.ndarray, stride: int, shape: tuple[int, ...]) -> np.ndarray:
    if stride == 1:
        return a
    out = np.repeat(np.repeat(np.repeat(a, stride, 0), stride, 1), stride, 2)[: shape[0], : shape[1], : shape[2]]
    pad = [(0, max(0, s - o)) for s, o in zip(shape, out.shape, strict=True)]
    return np.pad(out, pad, mode="edge")


def _lesion_meas(measurements: Mapping[str, Any] | None, lesion_id: str) -> dict[str, Any] | None:
    if not measurements:
        return None
    if isinstance(measurements.get("lesions"), list):
        for e in measurements["lesions"]:
            if isinstance(e, Mapping) and e.get("id") == lesion_id:
                return dict(e)
        return None
    return dict(measurements)


def plan_ect(case: Case, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
             target_margin_mm: float = 5.0, threshold_v_per_cm: float | None = None,
             iterations: int = 3) -> TreatmentPlan:
    """Electrochemotherapy plan (reversible-electroporation zone ⊇ lesion + margin)."""
    return plan_electroporation("ect", case, lesion_id, measurements, target_margin_mm=target_margin_mm,
                                threshold_v_per_cm=threshold_v_per_cm, iterations=iterations)


def plan_ire(case: Case, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
             target_margin_mm: float = 5.0, threshold_v_per_cm: float | None = None,
             iterations: int = 3) -> TreatmentPlan:
    """Irreversible electroporation plan (irreversible zone ⊇ lesion + margin)."""
    return plan_electroporation("ire", case, lesion_id, measurements, target_margin_mm=target_margin_mm,
                                threshold_v_per_cm=threshold_v_per_cm, iterations=iterations)
