"""Y-90 radioembolization (TARE) activity for one or more lesions.

Perfused volume: the Couinaud segments holding the lesions (``perfusion="segments"``), the
lobe (right: 5–8, left: 2, 3, 4a/4b/4; segment 1 joins the lobe of most lesion voxels) or
the whole liver. Without segment labels the whole liver is used (caveat). Activity by the
partition model (when a tumour-to-normal ratio is known) or MIRD single compartment.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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


def plan_tare(case: Any, lesion_ids: Sequence[str] | str, measurements: Mapping[str, Any] | None = None, *,
              method: str | None = None, perfusion: str = "segments", lung_shunt_fraction: float | None = None,
              tumour_to_normal_ratio: float | None = None, target_dose_gy: float | None = None,
              normal_liver_limit_gy: float | None = None, lung_limit_gy: float | None = None,
              lung_cumulative_limit_gy: float | None = None, prior_lung_dose_gy: float = 0.0,
              tumour_goal_gy: float | None = None, density_g_per_ml: float | None = None,
              lesion_id: str | None = None, **_ignored: Any) -> TreatmentPlan:
    """Y-90 activity (GBq) → TreatmentPlan with metric ``activity_gbq``.

    Unknown LSF/TN are taken from the patient's ``tare`` record when present; with no LSF
    the activity assumes LSF = 0 and says so. Clinical limits default to knowledge/radiation/y90.yaml.
    """
    t0 = time.perf_counter()
    from latplan.knowledge import radiation as rk

    cfg = rk.y90_config()
    ids = [lesion_ids] if isinstance(lesion_ids, str) else list(lesion_ids or ([lesion_id] if lesion_id else []))
    if not ids:
        raise InvalidInputError("plan_tare needs at least one lesion id.")
    tare_rec = getattr(getattr(case, "patient", None), "tare", None)
    caveats: list[str] = []
    if lung_shunt_fraction is None and tare_rec is not None:
        lung_shunt_fraction = tare_rec.lung_shunt_fraction
    if tumour_to_normal_ratio is None and tare_rec is not None:
        tumour_to_normal_ratio = tare_rec.tumour_to_normal_ratio
    if lung_shunt_fraction is None:
        lung_shunt_fraction = 0.0
        caveats.append("lung shunt fraction unknown (no Tc-99m MAA scan): LSF = 0 assumed; lung dose not assessed")
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
    norm_ml = perf_ml - tum_ml
    to_kg = density / 1000.0
    method = method or ("partition" if tumour_to_normal_ratio else "mird")
    metrics: dict[str, Any] = {"perfused_volume_ml": round(perf_ml, 1), "tumour_volume_ml": round(tum_ml, 1),
                               "perfused_segments": [s.removeprefix("liver_segment_") for s in segs],
                               "lung_shunt_fraction": lung_shunt_fraction, "method": method}
    if method == "partition":
        if not tumour_to_normal_ratio:
            raise InvalidInputError("the partition model needs a tumour-to-normal ratio (from the MAA SPECT).")
        res = y90.partition_activity(
            tum_ml * to_kg, max(norm_ml, 1e-6) * to_kg, float(tumour_to_normal_ratio), float(lung_shunt_fraction),
            normal_liver_limit_gy=normal_liver_limit_gy or float(cfg["targets"]["partition_normal_liver_limit_gy"]["value"]),
            lung_limit_gy=lung_limit_gy, lung_cumulative_limit_gy=lung_cumulative_limit_gy,
            prior_lung_dose_gy=prior_lung_dose_gy, lung_mass_kg=float(cfg["lung"]["lung_mass_kg"]),
            tumour_goal_gy=tumour_goal_gy or float(cfg["targets"]["partition_tumour_goal_gy"]["value"]),
            gy_kg_per_gbq=float(cfg["mird"]["gy_kg_per_gbq"]))
        metrics.update({"activity_gbq": round(res.activity_gbq, 3), "tumour_dose_gy": round(res.tumour_dose_gy, 1),
                        "normal_liver_dose_gy": round(res.normal_liver_dose_gy, 1),
                        "lung_dose_gy": round(res.lung_dose_gy, 1), "limiting": res.limiting,
                        "tumour_to_normal_ratio": tumour_to_normal_ratio})
    elif method == "mird":
        dose = target_dose_gy or float(cfg["targets"]["mird_liver_dose_gy"]["value"])
        a = y90.mird_activity_gbq(dose, perf_ml * to_kg, float(lung_shunt_fraction), float(cfg["mird"]["gy_kg_per_gbq"]))
        lung = float(cfg["mird"]["gy_kg_per_gbq"]) * a * float(lung_shunt_fraction) / float(cfg["lung"]["lung_mass_kg"])
        limiting = "perfused_dose_goal"
        lung_cap = min(lung_limit_gy, lung_cumulative_limit_gy - prior_lung_dose_gy)
        if lung > lung_cap and lung_shunt_fraction > 0:
            a = lung_cap * float(cfg["lung"]["lung_mass_kg"]) / (float(cfg["mird"]["gy_kg_per_gbq"]) * lung_shunt_fraction)
            lung = lung_cap
            limiting = "lung_limit"
            caveats.append(f"activity reduced to keep the lung dose ≤ {lung_cap:g} Gy")
        metrics.update({"activity_gbq": round(a, 3), "perfused_dose_gy": round(
            y90.mird_dose_gy(a, perf_ml * to_kg, float(lung_shunt_fraction)), 1), "lung_dose_gy": round(lung, 1),
            "limiting": limiting, "target_dose_gy": dose})
    else:
        raise InvalidInputError(f"method must be 'partition' or 'mird'; got {method!r}.")
    caveats.append("Y-90 activity from MIRD/partition formulas (uniform uptake per compartment); clinical values "
                   "(limits, dose goals) are knowledge-base defaults to verify locally")
    return TreatmentPlan(
        modality="tare", lesion_id=ids[0], metrics=metrics, target=case.labels.with_array(perf), caveats=caveats,
        parameters={"lesion_ids": ids, "perfusion": perfusion, "density_g_per_ml": density, "lung_limit_gy": lung_limit_gy,
                    "lung_cumulative_limit_gy": lung_cumulative_limit_gy},
        engine="latplan.y90", engine_version="0.1",
        verification="MIRD and partition formulas against hand-computed values (tests/physics_radiation/test_y90_*.py)",
        runtime_s=time.perf_counter() - t0,
    )
