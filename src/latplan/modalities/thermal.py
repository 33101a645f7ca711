"""Thermal ablation: RFA, MWA, cryoablation (planners: :mod:`latplan.planning.thermal`) and HIFU
(rules only). Verdict: the simulated zone must cover the lesion and reach the target margin."""

from __future__ import annotations

from latplan.case.vocabulary import Modality
from latplan.modalities.spec import ModalitySpec, TherapyFamily, Verdict
from latplan.planning.applicators import shared_trajectory
from latplan.planning.thermal import plan_cryo, plan_mwa, plan_rfa
from latplan.planning.types import TreatmentPlan

__all__ = ["COVERAGE_TOLERANCE_PERCENT", "CRYO", "HIFU", "MWA", "RFA", "SPECS", "ablative_verdict"]

#: coverage below this (percent of the target) counts as incomplete; a numerical tolerance of the
#: voxelised comparison, not a clinical threshold (one boundary voxel layer of a 1 cm lesion ≈ 1 %)
COVERAGE_TOLERANCE_PERCENT = 99.0


def ablative_verdict(plan: TreatmentPlan, target_margin_mm: float | None) -> Verdict:
    """Covers the lesion (≥ tolerance) and the minimal margin reaches the target margin."""
    m = plan.metrics
    cov = m.get("coverage_percent")
    margin = m.get("min_margin_mm")
    if cov is None:
        return "unclear", "the simulation reports no coverage"
    if cov < COVERAGE_TOLERANCE_PERCENT:
        return "fails", f"simulated zone covers {cov:.1f} % of the lesion (incomplete)"
    if target_margin_mm is not None and margin is not None and margin < target_margin_mm:
        return "fails", f"simulated minimal margin {margin:.1f} mm is below the {target_margin_mm:g} mm target"
    if margin is None:
        return "achieves", f"simulated zone covers {cov:.1f} % of the lesion (margin not reported)"
    return "achieves", f"covers {cov:.1f} %, minimal margin {margin:.1f} mm ≥ {target_margin_mm or 0:g} mm target"


RFA = ModalitySpec(Modality.RFA, TherapyFamily.THERMAL, 1, "radiofrequency ablation", plan_rfa, ablative_verdict,
                   shared=shared_trajectory, expected_cost=31.0)
MWA = ModalitySpec(Modality.MWA, TherapyFamily.THERMAL, 2, "microwave ablation", plan_mwa, ablative_verdict,
                   shared=shared_trajectory, expected_cost=25.0)
CRYO = ModalitySpec(Modality.CRYO, TherapyFamily.THERMAL, 3, "cryoablation", plan_cryo, ablative_verdict,
                    shared=shared_trajectory, expected_cost=1.4)
HIFU = ModalitySpec(Modality.HIFU, TherapyFamily.THERMAL, 4, "high-intensity focused ultrasound",
                    None, ablative_verdict)

SPECS = (RFA, MWA, CRYO, HIFU)
