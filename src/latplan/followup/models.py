"""Strict pydantic models of the follow-up files in a case folder.

Layout (docs/followup.md)::

    case_dir/
      case.yaml, image.nii.gz, labels.nii.gz, labels.yaml      baseline (issue [A])
      treatments.yaml                                          what was delivered, per lesion
      landmarks.yaml                  optional {name: [x, y, z]} LPS mm on the baseline image
      outcomes.yaml                   optional survival data (last contact, death, LTP dates)
      timepoints/<label>/
        timepoint.yaml                date, kind, lesion identity, ablation-zone label names
        image.nii.gz, labels.nii.gz, labels.yaml

Why strict (``extra="forbid"``): a misspelt key in a follow-up record would otherwise be
silently ignored and a margin or a progression would go unreported.
"""

from __future__ import annotations

import datetime as dt
from enum import IntEnum, StrEnum
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from latplan.case.vocabulary import Modality

__all__ = [
    "CirseGrade",
    "Complication",
    "LesionOutcome",
    "Outcomes",
    "TimepointKind",
    "TimepointSpec",
    "TreatmentRecord",
    "TreatmentsFile",
    "criteria",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@lru_cache(maxsize=1)
def criteria() -> dict[str, Any]:
    """Response / LTP / CIRSE thresholds with their citations (``criteria.yaml``)."""
    text = resources.files("latplan.followup").joinpath("criteria.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


class CirseGrade(IntEnum):
    """CIRSE classification of complications (Filippiadis et al., CVIR 2017;40:1141–1146)."""

    #: complication during the procedure, solved in the same session; no additional therapy,
    #: no post-procedure sequelae, no deviation from the normal post-therapeutic course
    GRADE_1 = 1
    #: prolonged observation including overnight stay (deviation from the normal course < 48 h);
    #: no additional post-procedure therapy, no post-procedure sequelae
    GRADE_2 = 2
    #: additional post-procedure therapy or prolonged hospital stay (> 48 h) required;
    #: no post-procedure sequelae
    GRADE_3 = 3
    #: complication causing a permanent mild sequela (resuming work and independent living)
    GRADE_4 = 4
    #: complication causing a permanent severe sequela (requiring ongoing assistance in daily life)
    GRADE_5 = 5
    #: death
    GRADE_6 = 6

    @property
    def definition(self) -> str:
        return CIRSE_DEFINITIONS[self]

    @property
    def citation(self) -> str:
        return str(criteria()["cirse_complications"]["citation"])


CIRSE_DEFINITIONS: dict[CirseGrade, str] = {
    CirseGrade.GRADE_1: "Complication during the procedure which could be solved within the same session; "
    "no additional therapy, no post-procedure sequelae, no deviation from the normal post-therapeutic course.",
    CirseGrade.GRADE_2: "Prolonged observation including overnight stay (as a deviation from the normal "
    "post-therapeutic course < 48 h); no additional post-procedure therapy, no post-procedure sequelae.",
    CirseGrade.GRADE_3: "Additional post-procedure therapy or prolonged hospital stay (> 48 h) required; "
    "no post-procedure sequelae.",
    CirseGrade.GRADE_4: "Complication causing a permanent mild sequela (resuming work and independent living).",
    CirseGrade.GRADE_5: "Complication causing a permanent severe sequela (requiring ongoing assistance in daily life).",
    CirseGrade.GRADE_6: "Death.",
}


class Complication(_Strict):
    """One complication of a procedure, graded with the CIRSE classification."""

    grade: CirseGrade
    description: str = Field(min_length=1)
    date: dt.date | None = None

    @field_validator("grade", mode="before")
    @classmethod
    def _grade(cls, v: object) -> object:
        if isinstance(v, str):
            s = v.strip().lower().replace("grade", "").strip()
            return int(s) if s.isdigit() else v
        return v


class TreatmentRecord(_Strict):
    """One delivered treatment of one lesion (``treatments.yaml``).

    ``applicators``: positions actually used ({tip_mm: [x,y,z], entry_mm: [x,y,z], device, ...}, LPS mm).
    ``dwell_plan``: the delivered dwell plan (IBT), free-form but JSON-serialisable.
    ``predicted_zone``: path (relative to the case folder) of the predicted zone (bool NIfTI on the
    baseline grid), e.g. exported from the TreatmentPlan of [C]; for radiation, the prescription isodose volume.
    """

    lesion: str = Field(min_length=1)
    modality: Modality
    date: dt.date
    site: str | None = None
    applicators: list[dict[str, Any]] | None = None
    dwell_plan: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    prescription_gy: float | None = Field(default=None, ge=0)
    fractions: int | None = Field(default=None, ge=1)
    diameter_mm: float | None = Field(default=None, gt=0)
    predicted_zone: str | None = None
    complications: list[Complication] | None = None
    notes: str | None = None

    @field_validator("modality", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @property
    def is_radiation(self) -> bool:
        return self.modality in (Modality.IBT, Modality.SBRT, Modality.TARE)


class TreatmentsFile(_Strict):
    treatments: list[TreatmentRecord] = Field(default_factory=list)


class TimepointKind(StrEnum):
    POST_PROCEDURE = "post_procedure"
    FOLLOW_UP = "follow_up"


class TimepointSpec(_Strict):
    """``timepoint.yaml`` of one follow-up timepoint.

    ``lesions`` maps a lesion label name at this timepoint to the baseline lesion id it is
    (``"new"`` for a new lesion). A lesion name not listed keeps its identity when the
    baseline holds the same name, and is new otherwise. ``ablation_zone`` lists the label
    names of ablation zones and, optionally, which baseline lesion each belongs to
    (``{zone_name: lesion_id}``; a plain list means: the single treated lesion, or all).
    """

    date: dt.date
    kind: TimepointKind = TimepointKind.FOLLOW_UP
    image_modality: str | None = None
    lesions: dict[str, str] = Field(default_factory=dict)
    ablation_zone: list[str] | dict[str, str] = Field(default_factory=list)
    enhancement_threshold: float | None = None
    landmarks_mm: dict[str, list[float]] | None = None
    complications: list[Complication] | None = None
    notes: str | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, v: object) -> object:
        return v.strip().lower().replace("-", "_") if isinstance(v, str) else v

    @field_validator("landmarks_mm")
    @classmethod
    def _points(cls, v: dict[str, list[float]] | None) -> dict[str, list[float]] | None:
        for name, p in (v or {}).items():
            if len(p) != 3:
                raise ValueError(f"landmark {name!r} needs 3 coordinates (x, y, z LPS mm); got {len(p)}")
        return v

    def zone_lesions(self) -> dict[str, str | None]:
        """Ablation-zone label name → baseline lesion id (None = not stated)."""
        if isinstance(self.ablation_zone, dict):
            return dict(self.ablation_zone)
        return {z: None for z in self.ablation_zone}


class LesionOutcome(_Strict):
    """Per-lesion outcome data (``outcomes.yaml``): local tumour progression and covariates."""

    ltp_date: dt.date | None = None
    min_margin_mm: float | None = None
    diameter_mm: float | None = Field(default=None, gt=0)


class Outcomes(_Strict):
    """``outcomes.yaml``: survival data not visible on images (last contact, death)."""

    last_follow_up: dt.date
    death_date: dt.date | None = None
    lesions: dict[str, LesionOutcome] = Field(default_factory=dict)


