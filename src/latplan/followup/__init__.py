"""Follow-up and outcomes (issue 8): timepoints, registration, post-ablation margin check,
response (RECIST 1.1 / mRECIST / local tumour progression), re-presentation to the board,
cohort survival (Kaplan–Meier, Cox) and synthetic cohorts. See docs/followup.md.

Public entry points:

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

from latplan.followup.analysis import FollowupAnalysis, analyse_followup, followup_summary
from latplan.followup.cohort import (
    cox_lesions,
    fit_km,
    km_figure,
    load_cohort,
    reference_outcomes,
    run_outcomes,
)
from latplan.followup.demo import build_fig2_followup
from latplan.followup.figures import response_figure
from latplan.followup.margin_check import compare_zones, margin_check
from latplan.followup.models import CirseGrade, Complication, TimepointSpec, TreatmentRecord
from latplan.followup.records import append_treatment, record_treatment
from latplan.followup.registration import RegistrationResult, register, resample_labels_to_baseline
from latplan.followup.representation import case_for_timepoint, write_timepoint_case
from latplan.followup.response import Response, assess_response, longest_axial_diameter_mm
from latplan.followup.synthetic import SyntheticCohortSpec, generate_cohort
from latplan.followup.timepoints import Timepoint, load_timepoint, load_timepoints, load_treatments

__all__ = [
    "CirseGrade",
    "Complication",
    "FollowupAnalysis",
    "RegistrationResult",
    "Response",
    "SyntheticCohortSpec",
    "Timepoint",
    "TimepointSpec",
    "TreatmentRecord",
    "analyse_followup",
    "append_treatment",
    "assess_response",
    "build_fig2_followup",
    "case_for_timepoint",
    "compare_zones",
    "cox_lesions",
    "fit_km",
    "followup_summary",
    "generate_cohort",
    "km_figure",
    "load_cohort",
    "load_timepoint",
    "load_timepoints",
    "load_treatments",
    "longest_axial_diameter_mm",
    "margin_check",
    "record_treatment",
    "reference_outcomes",
    "register",
    "resample_labels_to_baseline",
    "response_figure",
    "run_outcomes",
    "write_timepoint_case",
]
