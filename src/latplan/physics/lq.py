"""Linear-quadratic model: BED, EQD2, and the Lea–Catcheside dose-protraction factor G.

Why a module of its own: SBRT schedules (3 × 15 Gy, 5 × 10 Gy) and single-fraction HDR
doses are compared through BED; α/β must always be a parameter (10 Gy by convention for
tumour, 20 Gy and ≈ 43 Gy fitted for liver/colorectal metastases by Klement et al.,
Radiother Oncol 123:218, 2017). The LQ model is unreliable above ≈ 10 Gy per fraction;
callers must say so when they display it (Kirkpatrick, Meyer & Marks, Semin Radiat Oncol 2008;18:240, PMID 18725110; Brenner, Semin Radiat Oncol 2008, PMC2750078: LQ validated to ≈ 10 Gy/fraction).

Formulas (Fowler, Br J Radiol 62:679, 1989; Lea & Catcheside, J Genet 44:216, 1942):

* BED = n·d·(1 + G·d/(α/β)), G = 1 for acute fractions;
* EQD2 = BED / (1 + 2/(α/β));
* G(T) for a constant dose rate over T with mono-exponential repair μ = ln 2 / T½:
  G = 2·(μT − 1 + e^(−μT)) / (μT)².
"""

from __future__ import annotations

import math

import numpy as np

from latplan.errors import InvalidInputError

__all__ = [
    "ALPHA_BETA_COLORECTAL_KLEMENT_GY",
    "ALPHA_BETA_DEFAULT_GY",
    "ALPHA_BETA_LIVER_METS_GY",
    "bed_gy",
    "dose_per_fraction_for_bed",
    "eqd2_gy",
    "fractions_for_bed",
    "lea_catcheside_g",
]

#: conventional tumour α/β (Gy)
ALPHA_BETA_DEFAULT_GY = 10.0
#: α/β within the 16–28 Gy range fitted for liver metastases (Klement 2017); 20 Gy exposed as an option
ALPHA_BETA_LIVER_METS_GY = 20.0
#: α/β fitted for colorectal liver metastases (Klement 2017, ≈ 43 Gy)
ALPHA_BETA_COLORECTAL_KLEMENT_GY = 43.0


def _check(alpha_beta_gy: float) -> None:
    if not (np.isfinite(alpha_beta_gy) and alpha_beta_gy > 0):
        raise InvalidInputError(f"α/β must be a positive number of Gy; got {alpha_beta_gy}.")


def lea_catcheside_g(duration_s: float, repair_half_time_s: float = 1800.0) -> float:
    """Dose-protraction factor G (dimensionless, 0 < G ≤ 1) for constant-rate delivery over ``duration_s``.

    Default repair half-time 0.5 h (a common tumour value; a parameter). G → 1 for an
    instantaneous fraction, so an HDR fraction of a few minutes has G ≈ 0.99.
    """
    if duration_s < 0 or not np.isfinite(duration_s):
        raise InvalidInputError(f"delivery duration must be ≥ 0 s; got {duration_s}.")
    if repair_half_time_s <= 0:
        raise InvalidInputError(f"repair half-time must be > 0 s; got {repair_half_time_s}.")
    x = math.log(2.0) / repair_half_time_s * duration_s
    if x < 1e-6:
        return 1.0 - x / 3.0
    return 2.0 * (x - 1.0 + math.exp(-x)) / (x * x)


def bed_gy(dose_per_fraction_gy: float | np.ndarray, fractions: int = 1, alpha_beta_gy: float = ALPHA_BETA_DEFAULT_GY,
           g_factor: float = 1.0) -> float | np.ndarray:
    """Biologically effective dose (Gy) of ``fractions`` × ``dose_per_fraction_gy``.

    3 × 15 Gy with α/β = 10 → 112.5 Gy; 1 × 20 Gy → 60 Gy (tested).
    """
    _check(alpha_beta_gy)
    if fractions < 1:
        raise InvalidInputError(f"the number of fractions must be ≥ 1; got {fractions}.")
    d = np.asarray(dose_per_fraction_gy, dtype=float)
    if np.any(d < 0):
        raise InvalidInputError("dose per fraction must be ≥ 0 Gy.")
    out = fractions * d * (1.0 + g_factor * d / alpha_beta_gy)
    return float(out) if out.ndim == 0 else out


def eqd2_gy(dose_per_fraction_gy: float | np.ndarray, fractions: int = 1,
            alpha_beta_gy: float = ALPHA_BETA_DEFAULT_GY, g_factor: float = 1.0) -> float | np.ndarray:
    """Equivalent dose in 2 Gy fractions (Gy) = BED / (1 + 2/(α/β))."""
    return bed_gy(dose_per_fraction_gy, fractions, alpha_beta_gy, g_factor) / (1.0 + 2.0 / alpha_beta_gy)


def dose_per_fraction_for_bed(bed_target_gy: float, fractions: int, alpha_beta_gy: float = ALPHA_BETA_DEFAULT_GY) -> float:
    """Dose per fraction (Gy) giving ``bed_target_gy`` in ``fractions`` (positive root of the LQ quadratic)."""
    _check(alpha_beta_gy)
    if bed_target_gy < 0 or fractions < 1:
        raise InvalidInputError("BED must be ≥ 0 Gy and fractions ≥ 1.")
    # n d²/ab + n d − BED = 0
    a = fractions / alpha_beta_gy
    return (-fractions + math.sqrt(fractions * fractions + 4 * a * bed_target_gy)) / (2 * a)


def fractions_for_bed(bed_target_gy: float, dose_per_fraction_gy: float,
                      alpha_beta_gy: float = ALPHA_BETA_DEFAULT_GY) -> float:
    """Number of fractions (real) of ``dose_per_fraction_gy`` reaching ``bed_target_gy``."""
    per = bed_gy(dose_per_fraction_gy, 1, alpha_beta_gy)
    if per <= 0:
        raise InvalidInputError("dose per fraction must be > 0 Gy.")
    return float(bed_target_gy / per)
