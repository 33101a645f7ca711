"""Radiation: interstitial HDR brachytherapy (IBT), SBRT and radioembolisation (TARE, Y-90).

Planners: :mod:`latplan.planning.ibt`, :mod:`~latplan.planning.sbrt`, :mod:`~latplan.planning.tare`;
their clinical parameters (CTV margin, OAR limits, dwell settings, schedule, Y-90 limits) come from
:mod:`latplan.knowledge.radiation`. The IBT CTV margin is the knowledge base's, not the rules'
ablative target margin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from latplan.anatomy.geometry import CaseGeometry
from latplan.case import Case
from latplan.case.vocabulary import Modality
from latplan.knowledge import radiation as rk
from latplan.modalities.spec import ModalitySpec, TherapyFamily, Verdict
from latplan.planning.ibt import plan_ibt
from latplan.planning.sbrt import plan_sbrt
from latplan.planning.tare import plan_tare
from latplan.planning.types import TreatmentPlan

__all__ = ["IBT", "SBRT", "SPECS", "TARE", "ibt_verdict", "sbrt_verdict", "tare_verdict"]


def _plan_ibt(case: Case, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
              geometry: CaseGeometry | None = None, target_margin_mm: float = 5.0) -> TreatmentPlan:
    p = rk.ibt_parameters()
    # the protocol's cited CTV margin, widened to the rules' ablative target margin when larger ([K] 2)
    return plan_ibt(case, lesion_id, measurements, geometry=geometry, ctv_margin_mm=float(p["ctv_margin_mm"]),
                    target_margin_mm=target_margin_mm, dwell_step_mm=float(p["dwell_step_mm"]), dwell_extension_mm=float(p["dwell_extension_mm"]),
                    max_modulation=float(p["max_modulation"]), sk_u=float(p["sk_u"]))


def _plan_sbrt(case: Case, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
               geometry: CaseGeometry | None = None, target_margin_mm: float = 5.0) -> TreatmentPlan:
    p = rk.sbrt_parameters()
    return plan_sbrt(case, lesion_id, measurements, geometry=geometry, fractions=int(p["fractions"]),
                     dose_per_fraction_gy=float(p["dose_per_fraction_gy"]), ptv_margin_mm=float(p["ptv_margin_mm"]),
                     alpha_beta_gy=float(p["alpha_beta_gy"]))  # fall-off calibrated to RTOG 0915 R50%


def _plan_tare(case: Case, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
               geometry: CaseGeometry | None = None, target_margin_mm: float = 5.0) -> TreatmentPlan:
    p = rk.tare_parameters()
    return plan_tare(case, [lesion_id], measurements, geometry=geometry, lesion_id=lesion_id, lung_limit_gy=float(p["lung_limit_gy"]),
                     lung_cumulative_limit_gy=float(p["lung_cumulative_limit_gy"]),
                     normal_liver_limit_gy=float(p["normal_liver_limit_gy"]))


def ibt_verdict(plan: TreatmentPlan, target_margin_mm: float | None) -> Verdict:
    """D100 reaches the prescription (0.5 % rounding tolerance) and no organ-at-risk limit is exceeded."""
    m = plan.metrics
    d100, presc = m.get("d100_gy"), plan.prescription_gy
    oar_ok = m.get("constraints_met", m.get("oar_constraints_met"))
    if d100 is None:
        return "unclear", "the simulation reports no D100"
    if presc is not None and d100 < presc * 0.995:
        return "fails", f"D100 {d100:.1f} Gy is below the {presc:g} Gy prescription"
    if oar_ok is False:
        return "fails", "an organ-at-risk limit is exceeded"
    return "achieves", f"D100 {d100:.1f} Gy reaches the prescription" + ("" if oar_ok is None else ", OAR limits met")


def sbrt_verdict(plan: TreatmentPlan, target_margin_mm: float | None) -> Verdict:
    """The schedule is feasible under the organ constraints."""
    m = plan.metrics
    feasible = m.get("feasible")
    if feasible is None:
        return "unclear", "the simulation does not say whether the schedule is feasible"
    if not feasible:
        return "fails", f"infeasible, limiting organ: {m.get('limiting_organ') or 'not named'}"
    return "achieves", f"feasible, BED {m.get('bed_gy', 'n/a')} Gy"


def tare_verdict(plan: TreatmentPlan, target_margin_mm: float | None) -> Verdict:
    """An activity exists; a lung-dose limit means the dose goal is not reached."""
    m = plan.metrics
    act = m.get("activity_gbq")
    if act is None:
        return "unclear", "the simulation reports no activity"
    limiting = str(m.get("limiting") or "")
    if "lung" in limiting:
        return "fails", f"activity {act:g} GBq is limited by the lung dose; the dose goal is not reached"
    return "achieves", f"activity {act:g} GBq" + (f" (limited by {limiting})" if limiting else "")


IBT = ModalitySpec(Modality.IBT, TherapyFamily.RADIATION, 7, "interstitial HDR brachytherapy", _plan_ibt,
                   ibt_verdict, rk.ibt_parameters, expected_cost=9.0)
SBRT = ModalitySpec(Modality.SBRT, TherapyFamily.RADIATION, 8, "stereotactic body radiotherapy", _plan_sbrt,
                    sbrt_verdict, rk.sbrt_parameters, expected_cost=1.5)
TARE = ModalitySpec(Modality.TARE, TherapyFamily.RADIATION, 10, "radioembolisation (Y-90)", _plan_tare,
                    tare_verdict, rk.tare_parameters, expected_cost=0.1)

SPECS = (IBT, SBRT, TARE)
