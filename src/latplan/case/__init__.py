"""Domain model: patient, structures, lesions, cases, coded concepts."""

from latplan.case.labels import TOTALSEGMENTATOR_TO_CANONICAL, LabelTable
from latplan.case.model import Case, Structure
from latplan.case.patient import Patient
from latplan.case.vocabulary import (
    COUINAUD_SEGMENTS,
    Eligibility,
    Modality,
    PrimaryTumour,
    StructureRole,
)

__all__ = [
    "COUINAUD_SEGMENTS",
    "TOTALSEGMENTATOR_TO_CANONICAL",
    "Case",
    "Eligibility",
    "LabelTable",
    "Modality",
    "Patient",
    "PrimaryTumour",
    "Structure",
    "StructureRole",
]
