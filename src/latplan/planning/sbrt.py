"""SBRT screen for one lesion: PTV = GTV + margin, fall-off estimate vs TG-101 constraints.

Never a treatment plan (caveat on every result): see :mod:`latplan.physics.sbrt_screen`.
Constraints arrive as a parameter (TG-101 rows for the number of fractions, from
:func:`latplan.knowledge.radiation.tg101_constraints`; when None they are read there).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from latplan.errors import InvalidInputError
from latplan.physics import sbrt_screen
from latplan.planning.ibt import liver_mask, structure_names_cached
from latplan.planning.types import TreatmentPlan

__all__ = ["plan_sbrt"]


def plan_sbrt(case: Any, lesion_id: str, measurements: Mapping[str, Any] | None = None, *, fractions: int = 3,
              dose_per_fraction_gy: float = 15.0, constraints: Sequence[Mapping[str, Any]] | None = None,
              ptv_margin_mm: float = 5.0, falloff_lambda_mm: float | None = None, alpha_beta_gy: float = 10.0,
              **_ignored: Any) -> TreatmentPlan:
    """Screen an SBRT schedule for a lesion → TreatmentPlan with metrics ``feasible``, ``limiting_organ``, ``bed_gy``.

    ``bed_gy`` is the BED of the schedule with ``alpha_beta_gy`` (default 10 Gy);
    ``bed10_gy`` always uses α/β = 10 Gy (the local-control anchor's convention).
    """
    t0 = time.perf_counter()
    from latplan.knowledge import radiation as rk
    from latplan.physics import lq

    if ptv_margin_mm < 0:
        raise InvalidInputError(f"PTV margin must be ≥ 0 mm; got {ptv_margin_mm}.")
    if constraints is None:
        constraints = rk.tg101_constraints(fractions)
    if falloff_lambda_mm is None:
        falloff_lambda_mm = float(rk.sbrt_config()["dose_falloff"]["lambda_mm"])
    gtv = case.lesion_mask(lesion_id)
    sp = gtv.spacing_kji_mm
    g = gtv.array.astype(bool)
    ptv = ndi.distance_transform_edt(~g, sampling=sp) <= ptv_margin_mm if ptv_margin_mm > 0 else g.copy()
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
            m = np.zeros(g.shape, bool)
            for n in names:
                m |= case.mask_array(n)
            organs[organ] = m
    res = sbrt_screen.screen_sbrt(gtv.with_array(ptv), organs, constraints, fractions=fractions,
                                  dose_per_fraction_gy=dose_per_fraction_gy, falloff_lambda_mm=falloff_lambda_mm,
                                  alpha_beta_gy=alpha_beta_gy, exclude_from_parallel=g)
    bed10 = float(lq.bed_gy(dose_per_fraction_gy, fractions, 10.0))
    metrics: dict[str, Any] = {
        "feasible": res.feasible,
        "limiting_organ": res.limiting_organ,
        "bed_gy": round(res.bed_gy, 2),
        "alpha_beta_gy": alpha_beta_gy,
        "bed10_gy": round(bed10, 2),
        "eqd2_gy": round(float(lq.eqd2_gy(dose_per_fraction_gy, fractions, alpha_beta_gy)), 2),
        "bed_reachable_gy": round(res.bed_reachable_gy, 2),
        "bed_reachable_capped": res.bed_reachable_capped,
        "max_dose_per_fraction_gy": round(res.max_dose_per_fraction_gy, 2) if np.isfinite(res.max_dose_per_fraction_gy) else None,
        "nearest_limit_organ": res.nearest_limit_organ,
        "fractions": fractions,
        "dose_per_fraction_gy": dose_per_fraction_gy,
        "ptv_volume_ml": round(float(ptv.sum() * gtv.voxel_volume_ml), 2),
        "organs": res.organs,
        "estimate": True,
    }
    try:
        lc = rk.sbrt_local_control(bed10, 12.0, getattr(getattr(case, "patient", None), "primary", None))
        metrics["local_control_12m_percent_estimate"] = round(lc["local_control_percent"], 1)
        metrics["local_control_source"] = lc["source"]
    except Exception:
        pass
    caveats = [res.caveat,
               f"fall-off model: D = Rx·exp(−x/{falloff_lambda_mm:g} mm) outside the PTV (knowledge/radiation/sbrt.yaml)",
               "LQ/BED is unreliable above about 10 Gy per fraction; BED10 is shown for the local-control anchor "
               "(Chang 2011, α/β = 10 Gy)"]
    if not res.feasible:
        caveats.append(f"schedule {fractions} × {dose_per_fraction_gy:g} Gy infeasible by the estimate: limiting organ "
                       f"{res.limiting_organ}; the largest dose per fraction meeting every constraint is "
                       f"{res.max_dose_per_fraction_gy:.1f} Gy")
    return TreatmentPlan(
        modality="sbrt", lesion_id=lesion_id, metrics=metrics, target=gtv.with_array(ptv), caveats=caveats,
        parameters={"fractions": fractions, "dose_per_fraction_gy": dose_per_fraction_gy, "ptv_margin_mm": ptv_margin_mm,
                    "falloff_lambda_mm": falloff_lambda_mm, "alpha_beta_gy": alpha_beta_gy,
                    "constraints": [dict(c) for c in constraints]},
        engine="latplan.sbrt_screen", engine_version="0.1",
        verification="fall-off estimate with TG-101 constraints (knowledge data); scaling and BED tested "
                     "(tests/physics_radiation/test_sbrt_screen.py); not a dose calculation",
        runtime_s=time.perf_counter() - t0,
    )
