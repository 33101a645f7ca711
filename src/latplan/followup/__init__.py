"""Follow-up and outcomes (issue 8): timepoints, registration, post-ablation margin check,
response (RECIST 1.1 / mRECIST / local tumour progression), re-presentation to the board,
cohort survival (Kaplan–Meier, Cox) and synthetic cohorts. See docs/followup.md.

Public entry points (imported lazily so ``import latplan.followup`` stays light):

* :func:`analyse_followup`, :func:`followup_summary` — one case, every timepoint
* :func:`load_timepoints`, :func:`load_treatments` — the follow-up files of a case folder
* :func:`register` — SimpleITK rigid/affine/tumour-rigid registration with quality
* :func:`margin_check`, :func:`compare_zones` — margin and predicted-vs-observed zone
* :func:`assess_response` — RECIST-type classification on diameters
* :func:`case_for_timepoint`, :func:`write_timepoint_case` — plan a follow-up timepoint
* :func:`run_outcomes`, :func:`load_cohort`, :func:`km_figure`, :func:`fit_km`, :func:`cox_lesions`
* :func:`generate_cohort`, :class:`SyntheticCohortSpec`, :func:`build_fig2_followup`
* :func:`response_figure` — report figure; :func:`record_treatment` — a delivered TreatmentPlan → treatments.yaml
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "analyse_followup": "latplan.followup.analysis",
    "followup_summary": "latplan.followup.analysis",
    "FollowupAnalysis": "latplan.followup.analysis",
    "load_timepoints": "latplan.followup.timepoints",
    "load_timepoint": "latplan.followup.timepoints",
    "load_treatments": "latplan.followup.timepoints",
    "Timepoint": "latplan.followup.timepoints",
    "register": "latplan.followup.registration",
    "RegistrationResult": "latplan.followup.registration",
    "resample_labels_to_baseline": "latplan.followup.registration",
    "margin_check": "latplan.followup.margin_check",
    "compare_zones": "latplan.followup.margin_check",
    "assess_response": "latplan.followup.response",
    "longest_axial_diameter_mm": "latplan.followup.response",
    "Response": "latplan.followup.response",
    "CirseGrade": "latplan.followup.models",
    "Complication": "latplan.followup.models",
    "TreatmentRecord": "latplan.followup.models",
    "TimepointSpec": "latplan.followup.models",
    "case_for_timepoint": "latplan.followup.representation",
    "write_timepoint_case": "latplan.followup.representation",
    "run_outcomes": "latplan.followup.cohort",
    "load_cohort": "latplan.followup.cohort",
    "km_figure": "latplan.followup.cohort",
    "fit_km": "latplan.followup.cohort",
    "cox_lesions": "latplan.followup.cohort",
    "reference_outcomes": "latplan.followup.cohort",
    "generate_cohort": "latplan.followup.synthetic",
    "SyntheticCohortSpec": "latplan.followup.synthetic",
    "build_fig2_followup": "latplan.followup.demo",
    "response_figure": "latplan.followup.figures",
    "record_treatment": "latplan.followup.records",
    "append_treatment": "latplan.followup.records",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'latplan.followup' has no attribute {name!r}")
