"""Liver function and HCC staging computed from the patient's components, never guessed.

Why: the board reads Child-Pugh, ALBI, BCLC stage and the transplant criteria to gate and
order options (EASL 2018, BCLC 2022). A recorded score is the clinician's and wins; a
computed one is shown beside it and a disagreement is flagged. An unknown component gives
a range (each unknown component scores 1–3), never a silent normal value.

References (point tables, not latplan choices):
- Child-Pugh (Pugh RN et al., Br J Surg 1973;60:646-649): bilirubin < 2 / 2–3 / > 3 mg/dl,
  albumin > 3.5 / 2.8–3.5 / < 2.8 g/dl, INR < 1.7 / 1.7–2.3 / > 2.3, ascites none / mild /
  moderate–severe, encephalopathy none / grade 1–2 / grade 3–4 → 1 / 2 / 3 points each;
  class A 5–6, B 7–9, C 10–15.
- ALBI (Johnson PJ et al., J Clin Oncol 2015;33:550-558): (log10 bilirubin µmol/l × 0.66)
  + (albumin g/l × −0.085); grade 1 ≤ −2.60, grade 2 ≤ −1.39, grade 3 above.
- BCLC 2022 (Reig M et al., J Hepatol 2022;76:681-693): 0 single ≤ 2 cm, preserved liver
  function, ECOG 0; A single, or ≤ 3 nodules each ≤ 3 cm, ECOG 0; B multinodular, ECOG 0;
  C portal invasion / extrahepatic spread or ECOG 1–2; D end-stage liver function
  (Child-Pugh C here) or ECOG > 2.
- Milan (Mazzaferro V et al., N Engl J Med 1996;334:693-699): single ≤ 5 cm or 2–3 nodules
  ≤ 3 cm, no vascular invasion or extrahepatic spread. Up-to-7 (Mazzaferro V et al., Lancet
  Oncol 2009;10:35-43): largest diameter (cm) + number of nodules ≤ 7, no vascular invasion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from latplan.case.patient import Patient

BILIRUBIN_UMOL_PER_MG_DL = 17.1


@dataclass(frozen=True)
class ChildPugh:
    score_low: int | None          # computed score with unknown components at 1 point
    score_high: int | None         # ... and at 3 points (equal to score_low when all are known)
    missing: tuple[str, ...]
    recorded_class: str | None
    recorded_score: int | None

    @property
    def computed_class(self) -> str | None:
        if self.score_low is None or self.score_high is None:
            return None
        lo, hi = _cp_class(self.score_low), _cp_class(self.score_high)
        return lo if lo == hi else f"{lo}-{hi}"

    @property
    def effective_score(self) -> int | None:
        """Recorded score wins; else the computed score when every component is known."""
        if self.recorded_score is not None:
            return self.recorded_score
        if self.score_low is not None and self.score_low == self.score_high:
            return self.score_low
        return None

    @property
    def effective_class(self) -> str | None:
        if self.recorded_class is not None:
            return self.recorded_class
        if self.recorded_score is not None:
            return _cp_class(self.recorded_score)
        c = self.computed_class
        return c if c in ("A", "B", "C") else None

    @property
    def disagreement(self) -> str | None:
        c = self.computed_class
        if c is None or "-" in c:
            return None
        rec = self.recorded_class or (_cp_class(self.recorded_score) if self.recorded_score is not None else None)
        if rec is not None and rec != c:
            return f"recorded Child-Pugh {rec} but components give {c} ({self.score_low} points)"
        if self.recorded_score is not None and self.score_low is not None and self.recorded_score != self.score_low:
            return f"recorded Child-Pugh score {self.recorded_score} but components give {self.score_low}"
        return None

    def to_json(self) -> dict[str, object]:
        rng = None if self.score_low is None else [self.score_low, self.score_high]
        return {"recorded_class": self.recorded_class, "recorded_score": self.recorded_score,
                "computed_score_range": rng, "computed_class": self.computed_class,
                "missing_components": list(self.missing), "effective_class": self.effective_class,
                "effective_score": self.effective_score, "disagreement": self.disagreement,
                "source": "Pugh RN et al. Br J Surg 1973;60:646-649 (recorded value wins)"}


def _cp_class(score: int) -> str:
    return "A" if score <= 6 else ("B" if score <= 9 else "C")


def _band(v: float, low_is_good: bool, cut1: float, cut2: float) -> int:
    if low_is_good:
        return 1 if v < cut1 else (2 if v <= cut2 else 3)
    return 1 if v > cut2 else (2 if v >= cut1 else 3)


def child_pugh(patient: Patient) -> ChildPugh:
    labs = patient.labs
    points: list[int] = []
    missing: list[str] = []
    bili = labs.bilirubin_mg_dl if labs else None
    alb = labs.albumin_g_dl if labs else None
    inr = labs.inr if labs else None
    for name, pts in (
        ("labs.bilirubin_mg_dl", None if bili is None else _band(bili, True, 2.0, 3.0)),
        ("labs.albumin_g_dl", None if alb is None else _band(alb, False, 2.8, 3.5)),
        ("labs.inr", None if inr is None else _band(inr, True, 1.7, 2.3)),
    ):
        if pts is None:
            missing.append(name)
        else:
            points.append(pts)
    asc = patient.ascites_grade
    if asc is None and patient.ascites is False:
        asc = "none"
    if asc is None:
        missing.append("ascites_grade")
    else:
        points.append({"none": 1, "mild": 2, "moderate_severe": 3}[asc])
    enc = patient.encephalopathy
    if enc is None:
        missing.append("encephalopathy")
    else:
        points.append({"none": 1, "grade_1_2": 2, "grade_3_4": 3}[enc])
    if not points:
        return ChildPugh(None, None, tuple(missing), patient.child_pugh, patient.child_pugh_score)
    low = sum(points) + len(missing)
    high = sum(points) + 3 * len(missing)
    return ChildPugh(low, high, tuple(missing), patient.child_pugh, patient.child_pugh_score)


def albi(patient: Patient) -> tuple[float | None, int | None]:
    """ALBI score and grade (None when bilirubin or albumin is unknown)."""
    labs = patient.labs
    if labs is None or labs.bilirubin_mg_dl is None or labs.albumin_g_dl is None or labs.bilirubin_mg_dl <= 0:
        return None, None
    score = math.log10(labs.bilirubin_mg_dl * BILIRUBIN_UMOL_PER_MG_DL) * 0.66 + labs.albumin_g_dl * 10 * -0.085
    grade = 1 if score <= -2.60 else (2 if score <= -1.39 else 3)
    return round(score, 2), grade


def bclc_stage(n_nodules: int | None, diameters_mm: Sequence[float | None], child_pugh_class: str | None,
               ecog: int | None, vascular_invasion: bool | None, extrahepatic: bool | None) -> str | None:
    """BCLC 2022 stage from burden, liver function and ECOG; None when an input that decides it is unknown."""
    if ecog is not None and ecog > 2:
        return "D"
    if child_pugh_class == "C":
        return "D"
    if vascular_invasion or extrahepatic:
        return "C"
    if ecog is not None and ecog in (1, 2):
        return "C"
    if ecog is None or child_pugh_class is None or vascular_invasion is None or extrahepatic is None:
        return None
    if not n_nodules or any(d is None for d in diameters_mm):
        return None
    ds = [float(d) for d in diameters_mm if d is not None]
    if n_nodules == 1 and ds[0] <= 20 and child_pugh_class == "A":
        return "0"
    if n_nodules == 1 or (n_nodules <= 3 and max(ds) <= 30):
        return "A"
    return "B"


def milan(n_nodules: int | None, diameters_mm: Sequence[float | None], vascular_invasion: bool | None,
          extrahepatic: bool | None) -> bool | None:
    if not n_nodules or any(d is None for d in diameters_mm):
        return None
    if vascular_invasion or extrahepatic:
        return False
    ds = [float(d) for d in diameters_mm if d is not None]
    inside = (n_nodules == 1 and ds[0] <= 50) or (n_nodules <= 3 and max(ds) <= 30)
    if not inside:
        return False
    return None if vascular_invasion is None or extrahepatic is None else True


def up_to_seven(n_nodules: int | None, diameters_mm: Sequence[float | None], vascular_invasion: bool | None) -> bool | None:
    if not n_nodules or any(d is None for d in diameters_mm):
        return None
    if vascular_invasion:
        return False
    inside = max(float(d) for d in diameters_mm if d is not None) / 10.0 + n_nodules <= 7
    if not inside:
        return False
    return None if vascular_invasion is None else True


#: parenchyma-sparing resection margin around each lesion (mm) for the planned-remnant estimate
RESECTION_MARGIN_MM = 10.0


def planned_remnant_percent(liver_volume_ml: float | None, diameters_mm: Sequence[float | None]) -> float | None:
    """Remnant after a parenchyma-sparing (wedge) resection of every lesion with a 1 cm margin, % of liver.

    Each wedge is modelled as a sphere of diameter lesion + 2 × 10 mm (a lower bound of what stays;
    a surgeon's volumetry replaces it). None when the liver volume or a diameter is unknown.
    """
    if not liver_volume_ml or not diameters_mm or any(d is None for d in diameters_mm):
        return None
    removed = sum(4.0 / 3.0 * math.pi * ((float(d) / 2 + RESECTION_MARGIN_MM) / 10.0) ** 3 for d in diameters_mm
                  if d is not None)
    return round(max(0.0, 100.0 * (liver_volume_ml - removed) / liver_volume_ml), 1)
