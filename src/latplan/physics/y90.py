"""Y-90 radioembolization activity: MIRD single compartment and the partition model.

Formulas (MIRD; Ho et al., Eur J Nucl Med 23:947, 1996; Kennedy et al., IJROBP 68:13, 2007):

* energy deposited: 1 GBq of Y-90 decaying completely in 1 kg gives ≈ 49.67 Gy, rounded
  to 50 Gy·kg/GBq (parameter ``gy_kg_per_gbq``);
* MIRD single compartment: D [Gy] = 50 · A [GBq] · (1 − LSF) / M [kg]
  ⇒ A = D · M / (50 · (1 − LSF));
* partition model (tumour T, normal liver N, lung L), tumour-to-normal uptake ratio TN:
  A_liver = A·(1 − LSF); D_N = 50·A_liver / (TN·M_T + M_N); D_T = TN·D_N;
  D_L = 50·A·LSF / M_L.

Limits (lung 30 Gy per treatment, 50 Gy cumulative; normal-liver limit) are parameters:
the clinical values live in knowledge/radiation/y90.yaml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from latplan.errors import InvalidInputError

__all__ = ["PartitionResult", "body_surface_area_m2", "bsa_activity_gbq", "mird_activity_gbq", "mird_dose_gy",
           "partition_activity", "partition_doses_gy"]

GY_KG_PER_GBQ = 50.0


def _pos(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise InvalidInputError(f"{name} must be > 0; got {value}.")


def _lsf(lsf: float) -> None:
    if not (0.0 <= lsf < 1.0):
        raise InvalidInputError(f"lung shunt fraction must be in [0, 1); got {lsf}.")


def mird_activity_gbq(target_dose_gy: float, mass_kg: float, lung_shunt_fraction: float = 0.0,
                      gy_kg_per_gbq: float = GY_KG_PER_GBQ) -> float:
    """Activity (GBq) giving ``target_dose_gy`` to a perfused mass ``mass_kg`` (kg): A = D·M / (50·(1 − LSF))."""
    _pos("target dose (Gy)", target_dose_gy)
    _pos("perfused mass (kg)", mass_kg)
    _lsf(lung_shunt_fraction)
    return target_dose_gy * mass_kg / (gy_kg_per_gbq * (1.0 - lung_shunt_fraction))


def mird_dose_gy(activity_gbq: float, mass_kg: float, lung_shunt_fraction: float = 0.0,
                 gy_kg_per_gbq: float = GY_KG_PER_GBQ) -> float:
    """Mean dose (Gy) to the perfused mass from ``activity_gbq``."""
    _pos("activity (GBq)", activity_gbq)
    _pos("perfused mass (kg)", mass_kg)
    _lsf(lung_shunt_fraction)
    return gy_kg_per_gbq * activity_gbq * (1.0 - lung_shunt_fraction) / mass_kg


@dataclass(frozen=True)
class PartitionResult:
    """Activity and the doses it gives (Gy); ``limiting`` names the constraint that set it."""

    activity_gbq: float
    tumour_dose_gy: float
    normal_liver_dose_gy: float
    lung_dose_gy: float
    limiting: str


def partition_doses_gy(activity_gbq: float, tumour_mass_kg: float, normal_mass_kg: float, tn_ratio: float,
                       lung_shunt_fraction: float, lung_mass_kg: float = 1.0,
                       gy_kg_per_gbq: float = GY_KG_PER_GBQ) -> tuple[float, float, float]:
    """(tumour, normal liver, lung) doses in Gy for an activity (partition model)."""
    if activity_gbq < 0:
        raise InvalidInputError(f"activity must be ≥ 0 GBq; got {activity_gbq}.")
    _pos("tumour mass (kg)", tumour_mass_kg)
    _pos("normal liver mass (kg)", normal_mass_kg)
    _pos("tumour-to-normal ratio", tn_ratio)
    _pos("lung mass (kg)", lung_mass_kg)
    _lsf(lung_shunt_fraction)
    a_liver = activity_gbq * (1.0 - lung_shunt_fraction)
    d_n = gy_kg_per_gbq * a_liver / (tn_ratio * tumour_mass_kg + normal_mass_kg)
    d_l = gy_kg_per_gbq * activity_gbq * lung_shunt_fraction / lung_mass_kg
    return tn_ratio * d_n, d_n, d_l


def partition_activity(tumour_mass_kg: float, normal_mass_kg: float, tn_ratio: float, lung_shunt_fraction: float, *,
                       normal_liver_limit_gy: float, lung_limit_gy: float, tumour_goal_gy: float | None = None,
                       lung_mass_kg: float = 1.0, prior_lung_dose_gy: float = 0.0,
                       lung_cumulative_limit_gy: float | None = None,
                       gy_kg_per_gbq: float = GY_KG_PER_GBQ) -> PartitionResult:
    """Activity (GBq) by the partition model: the tumour goal if given, capped by the normal-liver and lung limits.

    The lung limit is the smaller of ``lung_limit_gy`` (per treatment) and
    ``lung_cumulative_limit_gy − prior_lung_dose_gy``.
    """
    _pos("normal-liver limit (Gy)", normal_liver_limit_gy)
    _pos("lung limit (Gy)", lung_limit_gy)
    per_gbq = partition_doses_gy(1.0, tumour_mass_kg, normal_mass_kg, tn_ratio, lung_shunt_fraction, lung_mass_kg,
                                 gy_kg_per_gbq)
    caps: dict[str, float] = {"normal_liver_limit": normal_liver_limit_gy / per_gbq[1]}
    lung_lim = lung_limit_gy
    if lung_cumulative_limit_gy is not None:
        lung_lim = min(lung_lim, lung_cumulative_limit_gy - prior_lung_dose_gy)
        if lung_lim <= 0:
            return PartitionResult(0.0, 0.0, 0.0, 0.0, "lung_cumulative_limit")
    if per_gbq[2] > 0:
        caps["lung_limit"] = lung_lim / per_gbq[2]
    if tumour_goal_gy is not None:
        _pos("tumour dose goal (Gy)", tumour_goal_gy)
        caps["tumour_goal"] = tumour_goal_gy / per_gbq[0]
    limiting = min(caps, key=lambda k: caps[k])
    a = caps[limiting]
    d_t, d_n, d_l = partition_doses_gy(a, tumour_mass_kg, normal_mass_kg, tn_ratio, lung_shunt_fraction, lung_mass_kg,
                                       gy_kg_per_gbq)
    return PartitionResult(a, d_t, d_n, d_l, limiting)


def body_surface_area_m2(height_cm: float, weight_kg: float) -> float:
    """Body surface area (m²) by DuBois & DuBois (1916): 0.007184 · W[kg]^0.425 · H[cm]^0.725."""
    _pos("height (cm)", height_cm)
    _pos("weight (kg)", weight_kg)
    bsa: float = 0.007184 * weight_kg**0.425 * height_cm**0.725
    return bsa


def bsa_activity_gbq(bsa_m2: float, tumour_volume_ml: float, liver_volume_ml: float,
                     perfused_volume_ml: float | None = None) -> float:
    """Resin-sphere BSA activity (GBq): A = (BSA − 0.2) + V_T/V_L, × V_perfused/V_L for lobar/segmental treatment.

    (SIR-Spheres instructions for use; Kennedy et al., IJROBP 68:13, 2007.) ``tumour_volume_ml`` and
    ``liver_volume_ml`` are whole-liver volumes (liver includes tumour).
    """
    _pos("body surface area (m²)", bsa_m2)
    _pos("liver volume (ml)", liver_volume_ml)
    if tumour_volume_ml < 0 or tumour_volume_ml > liver_volume_ml:
        raise InvalidInputError(f"tumour volume must be in [0, liver volume]; got {tumour_volume_ml} ml.")
    a = (bsa_m2 - 0.2) + tumour_volume_ml / liver_volume_ml
    if perfused_volume_ml is not None:
        _pos("perfused volume (ml)", perfused_volume_ml)
        a *= min(perfused_volume_ml / liver_volume_ml, 1.0)
    return a
