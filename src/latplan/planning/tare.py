"""Y-90 radioembolization (TARE) activity for one or more lesions.

Perfused volume: the Couinaud segments holding the lesions (``perfusion="segments"``), the
lobe (right: 5–8, left: 2, 3, 4a/4b/4; segment 1 joins the lobe of most lesion voxels) or
the whole liver. Without segment labels the whole liver is used (caveat). Activity by the
partition model (when a tumour-to-normal ratio is known) or MIRD single compartment.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latplan.anatomy.geometry import CaseGeometry, geometry_for
from latplan.errors import EmptyStructureError, InvalidInputError
from latplan.physics import y90
from latplan.planning.ibt import liver_mask, structure_names_cached
from latplan.planning.types import TreatmentPlan

__all__ = ["perfused_mask", "plan_tare"]

_RIGHT = {"5", "6", "7", "8"}
_LEFT = {"2", "3", "4", "4a", "4b"}


def perfused_mask(case: Any, lesion_ids: Sequence[str], perfusion: str = "segments") -> tuple[np.ndarray, list[str], list[str]]:
    """(perfused liver mask, segment names used, caveats) for the lesions."""
    liver = liver_mask(case)
    if liver is None:
        raise EmptyStructureError("no liver mask in the case: the perfused volume for Y-90 cannot be determined.")
    lesions = np.zeros(liver.shape, bool)
    for lid in lesion_ids:
        lesions |= case.lesion_mask(lid).array
    seg_names = [n for n in structure_names_cached(case) if n.startswith("liver_segment_")]
    caveats: list[str] = []
    if perfusion == "whole" or not seg_names:
        if perfusion != "whole":
            caveats.append("no Couinaud segment labels: the whole liver is taken as perfused volume")
        return liver, [], caveats
    if perfusion not in ("segments", "lobe"):
        raise InvalidInputError(f"perfusion must be 'segments', 'lobe' or 'whole'; got {perfusion!r}.")
    from scipy import ndimage as ndi

    near = ndi.binary_dilation(lesions, iterations=1)
    hit = [n for n in seg_names if np.any(case.mask_array(n) & near)]
    if not hit:
        caveats.append("the lesions touch no labelled segment: the whole liver is taken as perfused volume")
        return liver, [], caveats
    if perfusion == "lobe":
        codes = {n.removeprefix("liver_segment_") for n in hit}
        right = sum(int(np.sum(case.mask_array(f"liver_segment_{c}") & lesions)) for c in codes & _RIGHT)
        left = sum(int(np.sum(case.mask_array(f"liver_segment_{c}") & lesions)) for c in codes & _LEFT)
        lobe = _RIGHT if right >= left else _LEFT
        hit = [n for n in seg_names if n.removeprefix("liver_segment_") in lobe]
        if codes & (_LEFT if lobe is _RIGHT else _RIGHT):
            caveats.append("lesions in both lobes: only the lobe holding most lesion volume is perfused")
    m = lesions.copy()
    for n in hit:
        m |= case.mask_array(n)
    return m & (liver | lesions), hit, caveats


@dataclass(frozen=True)
class _Y90Protocol:
    sphere: str
    tumour_type: str
    cirrhosis: bool | None
    tumour_goal_gy: float
    normal_liver_limit_gy: float
    segmentectomy_perfused_gy: float
    mird_lobar_perfused_gy: float
    citations: tuple[str, ...]
    caveats: tuple[str, ...]


def _y90_protocol(case: Any, sphere: str | None, cirrhosis: bool | None, tumour_goal_gy: float | None,
                  normal_liver_limit_gy: float | None) -> _Y90Protocol:
    """EANM 2022 targets by sphere type and tumour type; the normal-liver limit by cirrhosis (unknown → cirrhotic)."""
    from latplan.knowledge import radiation as rk

    cfg = rk.y90_config()["eanm2022"]
    patient = getattr(case, "patient", None)
    primary = str(getattr(getattr(patient, "primary", None), "value", getattr(patient, "primary", None)) or "").lower()
    caveats: list[str] = []
    if sphere is None:
        sphere = "glass" if primary == "hcc" else "resin"
        caveats.append(f"sphere type not given: {sphere} assumed (glass for HCC, resin otherwise)")
    if sphere not in ("glass", "resin"):
        raise InvalidInputError(f"sphere must be 'glass' or 'resin'; got {sphere!r}.")
    tumour_type = "hcc" if primary == "hcc" else "other"
    if cirrhosis is None:
        cirrhosis = getattr(patient, "cirrhosis", None)
    t = cfg["targets"][sphere]
    nl = t["normal_liver_gy"]
    if cirrhosis is None:
        caveats.append("cirrhosis status unknown: the cirrhotic normal-liver limit is used (conservative)")
    limit = float(nl["non_cirrhotic"] if cirrhosis is False else nl["cirrhotic"])
    return _Y90Protocol(
        sphere, tumour_type, cirrhosis,
        float(t[tumour_type]["tumour_gy"]) if tumour_goal_gy is None else float(tumour_goal_gy),
        limit if normal_liver_limit_gy is None else float(normal_liver_limit_gy),
        float(t["segmentectomy_perfused_gy"]["value"]), float(t["mird_lobar_perfused_gy"]["value"]),
        (cfg["citation_text"], t[tumour_type]["citation_text"], nl["citation_text"]), tuple(caveats))


def _lung_cap_gbq(lung_cap_gy: float, lsf: float, lung_mass_kg: float, gy_kg_per_gbq: float) -> float:
    return lung_cap_gy * lung_mass_kg / (gy_kg_per_gbq * lsf) if lsf > 0 else float("inf")


def plan_tare(case: Any, lesion_ids: Sequence[str] | str, measurements: Mapping[str, Any] | None = None, *,
              geometry: CaseGeometry | None = None,
              method: str | None = None, perfusion: str = "segments", lung_shunt_fraction: float | None = None,
              tumour_to_normal_ratio: float | None = None, target_dose_gy: float | None = None,
              normal_liver_limit_gy: float | None = None, lung_limit_gy: float | None = None,
              lung_cumulative_limit_gy: float | None = None, prior_lung_dose_gy: float = 0.0,
              tumour_goal_gy: float | None = None, density_g_per_ml: float | None = None,
              sphere: str | None = None, intent: str | None = None, height_cm: float | None = None,
              weight_kg: float | None = None, cirrhosis: bool | None = None,
              lesion_id: str | None = None, **_ignored: Any) -> TreatmentPlan:
    """Y-90 activity (GBq) by EANM 2022 → TreatmentPlan with metric ``activity_gbq``.

    ``method``: "partition" (tumour-to-normal ratio known; glass and resin), "mird" (single compartment;
    glass and resin), "bsa" (resin only; needs ``height_cm`` and ``weight_kg``); None → partition when TN is
    known, else BSA for resin with height/weight, else MIRD. ``sphere``: "glass" | "resin" (None: glass for
    HCC, resin otherwise, stated). ``intent``: "segmentectomy" | "lobar" (None: segmentectomy for ≤ 2
    perfused segments). The normal-liver limit depends on ``cirrhosis`` (None → the patient's record;
    unknown → the cirrhotic limit). Unknown lung shunt → the activity cannot be assessed (never LSF = 0).
    ``geometry``: the case's :class:`~latplan.anatomy.geometry.CaseGeometry`, computed once by the pipeline.
    """
    t0 = time.perf_counter()
    geometry_for(case, geometry)  # the pipeline's CaseGeometry of this case (its maps are the case's maps)
    from latplan.knowledge import radiation as rk

    cfg = rk.y90_config()
    ids = [lesion_ids] if isinstance(lesion_ids, str) else list(lesion_ids or ([lesion_id] if lesion_id else []))
    if not ids:
        raise InvalidInputError("plan_tare needs at least one lesion id.")
    tare_rec = getattr(getattr(case, "patient", None), "tare", None)
    if lung_shunt_fraction is None and tare_rec is not None:
        lung_shunt_fraction = tare_rec.lung_shunt_fraction
    if tumour_to_normal_ratio is None and tare_rec is not None:
        tumour_to_normal_ratio = tare_rec.tumour_to_normal_ratio
    proto = _y90_protocol(case, sphere, cirrhosis, tumour_goal_gy, normal_liver_limit_gy)
    caveats: list[str] = list(proto.caveats)
    density = density_g_per_ml or float(cfg["tissue_density_g_per_ml"])
    lung_limit_gy = lung_limit_gy or float(cfg["lung"]["limit_per_treatment_gy"])
    lung_cumulative_limit_gy = lung_cumulative_limit_gy or float(cfg["lung"]["limit_cumulative_gy"])
    perf, segs, cav = perfused_mask(case, ids, perfusion)
    caveats += cav
    vox_ml = case.labels.voxel_volume_ml
    tumour = np.zeros(perf.shape, bool)
    for lid in ids:
        tumour |= case.lesion_mask(lid).array
    tumour &= perf
    perf_ml = float(perf.sum() * vox_ml)
    tum_ml = float(tumour.sum() * vox_ml)
    intent = intent or ("segmentectomy" if perfusion == "segments" and 0 < len(segs) <= 2 else "lobar")
    if intent not in ("segmentectomy", "lobar"):
        raise InvalidInputError(f"intent must be 'segmentectomy' or 'lobar'; got {intent!r}.")
    if method is None:
        method = "partition" if tumour_to_normal_ratio else (
            "bsa" if proto.sphere == "resin" and height_cm and weight_kg else "mird")
    metrics: dict[str, Any] = {
        "perfused_volume_ml": round(perf_ml, 1), "tumour_volume_ml": round(tum_ml, 1),
        "perfused_segments": [s.removeprefix("liver_segment_") for s in segs],
        "lung_shunt_fraction": lung_shunt_fraction, "method": method, "sphere": proto.sphere, "intent": intent,
        "tumour_type": proto.tumour_type, "cirrhosis": proto.cirrhosis, "guideline": "EANM 2022 (Weber 2022)",
        "tumour_goal_gy": proto.tumour_goal_gy, "normal_liver_limit_gy": proto.normal_liver_limit_gy}
    if lung_shunt_fraction is None:
        metrics.update({"activity_gbq": None, "assessable": False, "constraints_met": None,
                        "limiting": "lung_shunt_unknown", "cannot_assess": cfg["eanm2022"]["lung_shunt_unknown"]})
        caveats.append(str(cfg["eanm2022"]["lung_shunt_unknown"]))
    else:
        liver = liver_mask(case)
        liver_ml = float(liver.sum() * vox_ml) if liver is not None else perf_ml
        all_tum_ml = float(sum(case.lesion_mask(n).array.sum() for n in case.lesion_ids) * vox_ml)
        metrics["assessable"] = True
        metrics.update(_activity(method, proto, intent, float(lung_shunt_fraction), tumour_to_normal_ratio,
                                 perf_ml, tum_ml, liver_ml, all_tum_ml, density, target_dose_gy, lung_limit_gy,
                                 lung_cumulative_limit_gy, prior_lung_dose_gy, height_cm, weight_kg, cfg, caveats))
    caveats.append("Y-90 activity from EANM 2022 compartment models (uniform uptake per compartment); targets and "
                   "limits are knowledge-base values (knowledge/radiation/y90.yaml, several marked verify)")
    return TreatmentPlan(
        modality="tare", lesion_id=ids[0], metrics=metrics, target=case.labels.with_array(perf), caveats=caveats,
        parameters={"lesion_ids": ids, "perfusion": perfusion, "density_g_per_ml": density, "lung_limit_gy": lung_limit_gy,
                    "lung_cumulative_limit_gy": lung_cumulative_limit_gy, "sphere": proto.sphere, "intent": intent,
                    "citations": list(proto.citations)},
        engine="latplan.y90", engine_version="0.2",
        verification="BSA, MIRD and partition formulas against hand-computed values (tests/physics/test_y90.py, tests/planning/test_tare.py)",
        runtime_s=time.perf_counter() - t0,
    )


def _activity(method: str, proto: _Y90Protocol, intent: str, lsf: float, tn: float | None, perf_ml: float,
              tum_ml: float, liver_ml: float, all_tum_ml: float, density: float, target_dose_gy: float | None,
              lung_limit_gy: float, lung_cumulative_limit_gy: float, prior_lung_dose_gy: float,
              height_cm: float | None, weight_kg: float | None, cfg: Mapping[str, Any],
              caveats: list[str]) -> dict[str, Any]:
    """Activity and doses for one method; the lung cap (per treatment and cumulative) applies to all."""
    to_kg = density / 1000.0
    k = float(cfg["mird"]["gy_kg_per_gbq"])
    lung_mass = float(cfg["lung"]["lung_mass_kg"])
    lung_cap = min(lung_limit_gy, lung_cumulative_limit_gy - prior_lung_dose_gy)
    norm_kg = max(perf_ml - tum_ml, 1e-6) * to_kg
    out: dict[str, Any] = {"lung_limit_gy": lung_cap}
    if method == "partition":
        if not tn:
            raise InvalidInputError("the partition model needs a tumour-to-normal ratio (from the MAA SPECT).")
        res = y90.partition_activity(
            max(tum_ml, 1e-6) * to_kg, norm_kg, float(tn), lsf, normal_liver_limit_gy=proto.normal_liver_limit_gy,
            lung_limit_gy=lung_limit_gy, lung_cumulative_limit_gy=lung_cumulative_limit_gy,
            prior_lung_dose_gy=prior_lung_dose_gy, lung_mass_kg=lung_mass, tumour_goal_gy=proto.tumour_goal_gy,
            gy_kg_per_gbq=k)
        out.update({"activity_gbq": round(res.activity_gbq, 3), "tumour_dose_gy": round(res.tumour_dose_gy, 1),
                    "normal_liver_dose_gy": round(res.normal_liver_dose_gy, 1), "lung_dose_gy": round(res.lung_dose_gy, 1),
                    "limiting": res.limiting, "tumour_to_normal_ratio": tn,
                    "constraints_met": True, "tumour_goal_reached": res.limiting == "tumour_goal"})
        return out
    if method == "bsa":
        if proto.sphere != "resin":
            raise InvalidInputError("the BSA method is defined for resin spheres only; use method='mird' or "
                                    "'partition' for glass.")
        if not (height_cm and weight_kg):
            raise InvalidInputError("the BSA method needs height_cm and weight_kg (patient record or parameters).")
        bsa = y90.body_surface_area_m2(float(height_cm), float(weight_kg))
        a = y90.bsa_activity_gbq(bsa, min(all_tum_ml, liver_ml), liver_ml, perf_ml)
        out.update({"body_surface_area_m2": round(bsa, 3)})
        limiting = "bsa"
    elif method == "mird":
        dose = target_dose_gy or (proto.segmentectomy_perfused_gy if intent == "segmentectomy"
                                  else proto.mird_lobar_perfused_gy)
        a = y90.mird_activity_gbq(dose, perf_ml * to_kg, lsf, k)
        out["target_dose_gy"] = dose
        limiting = "perfused_dose_goal"
    else:
        raise InvalidInputError(f"method must be 'partition', 'mird' or 'bsa'; got {method!r}.")
    cap = _lung_cap_gbq(lung_cap, lsf, lung_mass, k)
    if a > cap:
        a = cap
        limiting = "lung_limit"
        caveats.append(f"activity reduced to keep the lung dose ≤ {lung_cap:g} Gy")
    perfused = y90.mird_dose_gy(a, perf_ml * to_kg, lsf, k)
    ok = True
    if intent != "segmentectomy" and perfused > proto.normal_liver_limit_gy * (1 + 1e-6):
        ok = False
        caveats.append(f"single-compartment perfused dose {perfused:.0f} Gy exceeds the normal-liver limit "
                       f"{proto.normal_liver_limit_gy:g} Gy")
    out.update({"activity_gbq": round(a, 3), "perfused_dose_gy": round(perfused, 1),
                "normal_liver_dose_gy": round(perfused, 1), "lung_dose_gy": round(k * a * lsf / lung_mass, 1),
                "limiting": limiting, "constraints_met": ok, "dose_goal_reached": limiting != "lung_limit"})
    return out
