"""SBRT feasibility screen: an ESTIMATE of neighbour doses from a dose fall-off model.

This is not a treatment plan. Why a screen: whether a liver lesion can receive an ablative
SBRT schedule is decided mostly by how close the stomach, duodenum, bowel or heart lie to
the PTV and how much liver stays below the TG-101 critical-volume threshold. Without a
linac plan we estimate the dose outside the PTV from the distance to the PTV surface:

    D(x) = Rx                        inside the PTV
    D(x) = Rx · exp(−x / λ)          at distance x (mm) outside the PTV surface

λ (``falloff_lambda_mm``) is a model parameter; the SBRT planner calibrates it per PTV volume to the
R50% limit of the RTOG 0915/0813 conformity table (:func:`lambda_for_r50_mm`; lung protocols used as
a proxy for liver). Because the estimate is
proportional to the prescription, the largest dose per fraction meeting every constraint
follows by scaling, giving the BED reachable. Constraints arrive as parameters (TG-101
rows from :mod:`latplan.knowledge.radiation`); nothing clinical is hard-coded here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from latplan.errors import EmptyStructureError, InvalidInputError
from latplan.imaging.volume import Volume
from latplan.physics import lq

__all__ = ["SBRTScreenResult", "estimate_dose_gy", "falloff_dose_gy", "lambda_for_r50_mm", "model_conformity", "screen_sbrt"]

CAVEAT = ("ESTIMATE, not a treatment plan: neighbour doses come from an exponential dose fall-off model outside "
          "the PTV (no beam arrangement, no heterogeneity, no motion); a real SBRT plan must confirm feasibility.")


def falloff_dose_gy(distance_mm: np.ndarray, prescription_gy: float, lambda_mm: float) -> np.ndarray:
    """Dose (Gy) at distance ``distance_mm`` outside the PTV surface (0 inside): Rx·exp(−x/λ)."""
    if lambda_mm <= 0:
        raise InvalidInputError(f"fall-off length λ must be > 0 mm; got {lambda_mm}.")
    d = np.maximum(np.asarray(distance_mm, float), 0.0)
    dose: npt.NDArray[np.float64] = prescription_gy * np.exp(-d / lambda_mm)
    return dose


def estimate_dose_gy(ptv: Volume, prescription_gy: float, lambda_mm: float) -> Volume:
    """Estimated total dose (Gy) on the PTV's grid from the fall-off model."""
    arr = ptv.array.astype(bool)
    if not arr.any():
        raise EmptyStructureError("the PTV is empty; no SBRT estimate can be made.")
    dist = ndi.distance_transform_edt(~arr, sampling=ptv.spacing_kji_mm)
    return ptv.with_array(falloff_dose_gy(dist, prescription_gy, lambda_mm).astype(np.float32))


def lambda_for_r50_mm(ptv_volume_ml: float, r50: float) -> float:
    """Fall-off length λ (mm) for which a spherical PTV of ``ptv_volume_ml`` has the conformity ratio ``r50``.

    The 50 % isodose lies at x50 = λ·ln 2 outside the surface of a sphere of radius R, so
    R50% = ((R + λ ln 2)/R)³ ⇒ λ = R·(R50^(1/3) − 1)/ln 2.
    """
    if not (ptv_volume_ml > 0 and r50 > 1):
        raise InvalidInputError(f"need PTV volume > 0 ml and R50% > 1; got {ptv_volume_ml} ml, {r50}.")
    radius = (3.0 * ptv_volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    lam: float = radius * (r50 ** (1.0 / 3.0) - 1.0) / math.log(2.0)
    return lam


def model_conformity(ptv: Volume, lambda_mm: float) -> tuple[float, float]:
    """(R50%, D2cm in % of Rx) of the fall-off model on the PTV's grid (R50 voxel-counted; D2cm = Rx·e^(−20/λ))."""
    est = estimate_dose_gy(ptv, 1.0, lambda_mm).array
    r50 = float(np.sum(est >= 0.5) / max(int(np.sum(ptv.array.astype(bool))), 1))
    return r50, 100.0 * math.exp(-20.0 / lambda_mm)


@dataclass
class SBRTScreenResult:
    """Outcome of the screen; doses are totals over the course (Gy)."""

    feasible: bool
    limiting_organ: str | None
    fractions: int
    dose_per_fraction_gy: float
    bed_gy: float
    alpha_beta_gy: float
    max_dose_per_fraction_gy: float
    bed_reachable_gy: float  # BED of the largest dose per fraction meeting every constraint (≤ cap × planned)
    nearest_limit_organ: str | None = None
    bed_reachable_capped: bool = False
    organs: dict[str, dict[str, Any]] = field(default_factory=dict)
    caveat: str = CAVEAT


def _dv(dose: np.ndarray, voxel_ml: float, volume_ml: float) -> float:
    """Minimum dose to the hottest ``volume_ml`` (Gy)."""
    if dose.size == 0:
        return 0.0
    srt = np.sort(dose)[::-1]
    n = math.ceil(volume_ml / voxel_ml) - 1
    return float(srt[min(max(n, 0), srt.size - 1)])


def screen_sbrt(ptv: Volume, organs: Mapping[str, np.ndarray], constraints: Sequence[Mapping[str, Any]], *,
                fractions: int, dose_per_fraction_gy: float, falloff_lambda_mm: float = 9.0,
                alpha_beta_gy: float = 10.0, exclude_from_parallel: np.ndarray | None = None,
                reachable_cap_factor: float = 1.5) -> SBRTScreenResult:
    """Check a schedule against constraints with the fall-off estimate.

    ``organs``: {organ: boolean array on the PTV grid}; ``constraints``: rows with keys organ,
    kind ("serial" | "parallel"), threshold_gy, volume_ml (serial), max_point_gy (optional,
    checked on 0.035 ml), spared_ml (parallel: volume that must stay below threshold).
    ``exclude_from_parallel``: voxels not counted as functional organ (e.g. the GTV/PTV).
    ``reachable_cap_factor``: the BED reachable is reported up to this multiple of the planned
    dose per fraction (``bed_reachable_capped`` says when the cap, not an organ, set it).
    """
    if fractions < 1:
        raise InvalidInputError(f"fractions must be ≥ 1; got {fractions}.")
    if dose_per_fraction_gy <= 0:
        raise InvalidInputError(f"dose per fraction must be > 0 Gy; got {dose_per_fraction_gy}.")
    rx = fractions * dose_per_fraction_gy
    est = estimate_dose_gy(ptv, 1.0, falloff_lambda_mm).array.astype(float)  # per Gy of prescription
    vox = ptv.voxel_volume_ml
    scale_limit = math.inf  # largest prescription scale meeting every constraint
    limiting = None
    report: dict[str, dict[str, Any]] = {}
    for c in constraints:
        organ = str(c["organ"])
        m = organs.get(organ)
        if m is None or not np.any(m):
            continue
        kind = c.get("kind", "serial")
        thr = float(c["threshold_gy"])
        row: dict[str, Any] = {"kind": kind, "threshold_gy": thr}
        if kind == "parallel":
            mm = np.asarray(m, bool)
            if exclude_from_parallel is not None:
                mm = mm & ~exclude_from_parallel
            d = np.sort(est[mm])  # ascending, per Gy of Rx
            spared = float(c["spared_ml"])
            total = d.size * vox
            row.update({"spared_ml_required": spared, "organ_volume_ml": round(total, 1)})
            if total < spared:
                s_max = 0.0
                row["note"] = f"organ volume {total:.0f} ml is below the {spared:g} ml to spare"
            else:
                n_keep = math.ceil(spared / vox)
                # the n_keep coldest voxels must stay below thr: scale ≤ thr / d[n_keep-1]
                s_max = thr / d[n_keep - 1] if d[n_keep - 1] > 0 else math.inf
            spared_now = float(np.sum(d * rx < thr) * vox)
            row.update({"spared_ml_estimate": round(spared_now, 1), "ok": spared_now >= spared})
        else:
            vol = float(c.get("volume_ml") or 0.0)
            d_rel = est[np.asarray(m, bool)]
            dv = _dv(d_rel, vox, vol) if vol > 0 else float(d_rel.max())
            s_max = thr / dv if dv > 0 else math.inf
            row.update({"volume_ml": vol, "dose_estimate_gy": round(dv * rx, 2), "ok": dv * rx <= thr})
            mp = c.get("max_point_gy")
            if mp is not None:
                dmax = _dv(d_rel, vox, 0.035)
                row.update({"max_point_gy": float(mp), "max_point_estimate_gy": round(dmax * rx, 2)})
                row["ok"] = row["ok"] and dmax * rx <= float(mp)
                if dmax > 0:
                    s_max = min(s_max, float(mp) / dmax)
        row["max_prescription_gy"] = round(s_max, 2) if math.isfinite(s_max) else None
        key = organ if organ not in report else f"{organ}@{c.get('volume_ml') or c.get('spared_ml')}ml"
        report[key] = row
        if s_max < scale_limit:
            scale_limit = s_max
            limiting = organ
    max_total = scale_limit
    feasible = max_total >= rx * (1 - 1e-9)
    # the reachable BED is reported up to ``reachable_cap_factor`` × the planned dose per fraction:
    # beyond that the fall-off estimate says nothing useful
    cap_dpf = reachable_cap_factor * dose_per_fraction_gy
    max_dpf = max_total / fractions if math.isfinite(max_total) else math.inf
    bed = float(lq.bed_gy(dose_per_fraction_gy, fractions, alpha_beta_gy))
    bed_reach = float(lq.bed_gy(min(max_dpf, cap_dpf), fractions, alpha_beta_gy))
    return SBRTScreenResult(
        feasible=bool(feasible),
        limiting_organ=None if feasible else limiting,
        fractions=fractions,
        dose_per_fraction_gy=dose_per_fraction_gy,
        bed_gy=bed,
        alpha_beta_gy=alpha_beta_gy,
        max_dose_per_fraction_gy=float(max_dpf),
        bed_reachable_gy=bed_reach,
        nearest_limit_organ=limiting,
        bed_reachable_capped=bool(max_dpf > cap_dpf),
        organs=report,
    )
