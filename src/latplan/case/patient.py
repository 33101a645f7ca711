"""The patient's clinical data as read from ``case.yaml`` (issue [A]; field names normative).

Only ``id`` and ``primary`` are required. Every other field may be absent, and *absent
means unknown* to every downstream rule: no field has a default that pretends to know
(lists default to ``None``, not ``[]``). Unknown keys are an error naming the key; the
``extra`` mapping holds site-specific fields.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from latplan.case.vocabulary import PrimaryTumour


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Molecular(_Strict):
    """Tumour molecular markers (colorectal: RAS/BRAF/MSI). ``None`` = not tested/unknown."""

    ras: Literal["mutant", "wildtype"] | None = None
    braf: Literal["mutant", "wildtype"] | None = None
    msi: Literal["msi", "mss", "msi-h", "msi-l"] | None = None
    her2: Literal["positive", "negative"] | None = None


class MetastaticSite(_Strict):
    """An organ with metastases and how many lesions it holds (oligometastatic status)."""

    organ: str
    lesion_count: int | None = Field(default=None, ge=0)


class Labs(_Strict):
    bilirubin_mg_dl: float | None = Field(default=None, ge=0)
    albumin_g_dl: float | None = Field(default=None, ge=0)
    inr: float | None = Field(default=None, ge=0)
    platelets_g_l: float | None = Field(default=None, ge=0)
    egfr_ml_min: float | None = Field(default=None, ge=0)
    afp_ng_ml: float | None = Field(default=None, ge=0)
    cea_ng_ml: float | None = Field(default=None, ge=0)
    creatinine_mg_dl: float | None = Field(default=None, ge=0)
    creatinine_clearance_ml_min: float | None = Field(default=None, ge=0)


class Biliary(_Strict):
    """Biliary history: each raises liver-abscess risk after TACE/ablation.

    Sources: Kim W et al., J Vasc Interv Radiol 2001;12:965-968 (TACE); Shibata T et al., J Vasc
    Interv Radiol 2003;14:1535-1542 (ablation); Lv WF et al., Medicine 2016;95:e3503 (57 % of
    post-TACE abscesses had a bilioenteric anastomosis or biliary stent); sphincterotomy as a
    compromised sphincter of Oddi (Agahi KN et al., Curr Oncol 2022;29:7051-7058, after Y-90; the
    Kim 2001 risk-factor list is unverified here)."""

    bilioenteric_anastomosis: bool | None = None
    stent: bool | None = None
    sphincterotomy: bool | None = None


class PriorRadiotherapy(_Strict):
    site: str
    dose_gy: float | None = Field(default=None, ge=0)
    fractions: int | None = Field(default=None, ge=1)
    date: dt.date | None = None
    modality: str | None = None


class PriorTherapy(_Strict):
    kind: Literal[
        "resection", "rfa", "mwa", "cryo", "ect", "ire", "ibt", "sbrt", "tace", "tare", "hai", "systemic",
        "radiotherapy", "transplant", "other",
    ]
    date: dt.date | None = None
    site: str | None = None
    line: int | None = Field(default=None, ge=1)
    regimen: str | None = None
    response: Literal["complete", "partial", "stable", "progression", "unknown"] | None = None
    bleomycin_cumulative_mg: float | None = Field(default=None, ge=0)


class Tare(_Strict):
    lung_shunt_fraction: float | None = Field(default=None, ge=0, le=1)
    tumour_to_normal_ratio: float | None = Field(default=None, gt=0)


class Preferences(_Strict):
    """Importance 0–5 of each criterion to the patient (shared decision-making)."""

    local_control: float | None = Field(default=None, ge=0, le=5)
    invasiveness: float | None = Field(default=None, ge=0, le=5)
    recovery_time: float | None = Field(default=None, ge=0, le=5)
    side_effects: float | None = Field(default=None, ge=0, le=5)
    sessions: float | None = Field(default=None, ge=0, le=5)
    repeatability: float | None = Field(default=None, ge=0, le=5)
    hospital_stay: float | None = Field(default=None, ge=0, le=5)


class Patient(_Strict):
    """Pseudonymous patient record. See docs/case-format.md for every field."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    primary: PrimaryTumour
    age: int | None = Field(default=None, ge=0, le=120)
    sex: Literal["M", "F", "X"] | None = None
    ecog: int | None = Field(default=None, ge=0, le=4)
    asa: int | None = Field(default=None, ge=1, le=6)
    histology: str | None = None
    molecular: Molecular | None = None
    child_pugh: Literal["A", "B", "C"] | None = None
    child_pugh_score: int | None = Field(default=None, ge=5, le=15)
    bclc_stage: Literal["0", "A", "B", "C", "D"] | None = None
    extrahepatic_sites: list[str] | None = None
    primary_status: Literal["resected", "resectable", "in_place", "unknown"] | None = None
    metastatic_sites: list[MetastaticSite] | None = None
    labs: Labs | None = None
    ascites: bool | None = None
    portal_vein_thrombosis: bool | None = None
    portal_hypertension: bool | None = None
    cirrhosis: bool | None = None
    biliary: Biliary | None = None
    pacemaker: bool | None = None
    arrhythmia: bool | None = None
    metal_implants_near_liver: bool | None = None
    anticoagulation: bool | None = None
    prior_radiotherapy: list[PriorRadiotherapy] | None = None
    prior_therapies: list[PriorTherapy] | None = None
    chemotherapy_cycles: int | None = Field(default=None, ge=0)
    tare: Tare | None = None
    preferences: Preferences | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    # board fields ([I]): Child-Pugh components, portal vein thrombosis extent, centre/follow-up context
    ascites_grade: Literal["none", "mild", "moderate_severe"] | None = None
    encephalopathy: Literal["none", "grade_1_2", "grade_3_4"] | None = None
    portal_vein_thrombosis_extent: Literal["segmental", "branch", "main"] | None = None
    icd: bool | None = None
    vascular_invasion: bool | None = None

    @field_validator("primary", mode="before")
    @classmethod
    def _lower_primary(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    # --- derived facts (None = unknown) --------------------------------------------------
    @property
    def is_metastatic(self) -> bool:
        """Liver metastases of another primary (oligometastatic concept applies), not HCC/CCA."""
        return self.primary not in (PrimaryTumour.HCC, PrimaryTumour.CHOLANGIOCARCINOMA)

    def systemic_lines(self) -> list[PriorTherapy]:
        return [t for t in (self.prior_therapies or []) if t.kind == "systemic"]
