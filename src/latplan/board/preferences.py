"""Shared decision-making: the patient's weights over criteria, a transparent weighted sum,
and a sensitivity analysis that names the weight change that flips the top options.

Why: the board must include the patient's preferences (seed refs 38-42) without letting
them lift a contraindicated option, and must show how fragile a ranking is. A plain
weighted sum (MCDA) is easy to explain and audit; a library (pymcdm) did not earn its
place for seven criteria.

Criteria values lie in [0, 1], higher = better for the patient:
local_control (comparable local-control figure / 100; without one, the modality's ordinal
local-control class (1–5, modalities.yaml) as (class − 1)/4 — never a neutral 0.5, which
rewarded options without evidence),
invasiveness ((5 − level)/4), recovery_time (1 − days/30), side_effects ((5 − burden)/4),
sessions (1 − (n − 1)/11), repeatability ((level − 1)/4), hospital_stay (1 − days/10).

The five burden criteria (invasiveness, recovery time, side effects, sessions, hospital stay)
all measure one thing, the treatment's burden; counted separately they out-voted local
control five to one. They form one composite (their weight-weighted mean) that enters the
sum with the largest of their weights, so equal weights give local control, repeatability
and burden one third each, and a patient who values only local control is ranked on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from latplan.case.patient import Patient
from latplan.knowledge.profiles import ModalityProfile

CRITERIA = ("local_control", "invasiveness", "recovery_time", "side_effects", "sessions", "repeatability",
            "hospital_stay")
#: criteria that measure the treatment's burden (one composite in the weighted sum)
BURDEN = ("invasiveness", "recovery_time", "side_effects", "sessions", "hospital_stay")
#: neutral value of a criterion that cannot be scored for an option (e.g. no comparable figure)
NEUTRAL = 0.5
#: weight of every criterion when the patient has not been asked (middle of the 0–5 scale)
EQUAL_WEIGHT = 3.0
#: scale caps used to normalise days and counts to [0, 1]
RECOVERY_CAP_DAYS = 30.0
STAY_CAP_DAYS = 10.0
SESSIONS_CAP = 12


@dataclass(frozen=True)
class Weights:
    values: dict[str, float]
    elicited: bool
    missing: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"weights": dict(self.values), "elicited": self.elicited,
                "flag": None if self.elicited else "preferences not yet elicited: equal weights used",
                "defaulted_criteria": list(self.missing)}


def weights_from_patient(patient: Patient, override: Mapping[str, float] | None = None) -> Weights:
    """Weights 0–5 from ``patient.preferences`` (or ``override``); absent → equal weights, flagged."""
    prefs = dict(override) if override is not None else (
        patient.preferences.model_dump() if patient.preferences is not None else {})
    given = {k: float(v) for k, v in prefs.items() if k in CRITERIA and v is not None}
    if not given:
        return Weights({c: EQUAL_WEIGHT for c in CRITERIA}, elicited=False, missing=CRITERIA)
    missing = tuple(c for c in CRITERIA if c not in given)
    # a criterion the patient was not asked about gets the mean of the given weights
    mean = sum(given.values()) / len(given)
    values = {c: given.get(c, mean) for c in CRITERIA}
    if sum(values.values()) <= 0:
        return Weights({c: EQUAL_WEIGHT for c in CRITERIA}, elicited=False, missing=CRITERIA)
    return Weights(values, elicited=True, missing=missing)


def criteria_values(profile: ModalityProfile, local_control_value: float | None) -> dict[str, float]:
    """Criterion values in [0, 1] for one option (higher = better for the patient)."""
    ordinal = (profile.local_control_class - 1) / 4
    return {
        "local_control": ordinal if local_control_value is None else max(0.0, min(1.0, local_control_value)),
        "invasiveness": (5 - profile.invasiveness) / 4,
        "recovery_time": 1 - min(profile.recovery_days, RECOVERY_CAP_DAYS) / RECOVERY_CAP_DAYS,
        "side_effects": (5 - profile.side_effect_burden) / 4,
        "sessions": 1 - (min(profile.sessions, SESSIONS_CAP) - 1) / (SESSIONS_CAP - 1),
        "repeatability": (profile.repeatability - 1) / 4,
        "hospital_stay": 1 - min(profile.hospital_stay_days, STAY_CAP_DAYS) / STAY_CAP_DAYS,
    }


def weighted_sum(values: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Local control + repeatability + one burden composite (see the module docstring)."""
    wb = [float(weights[c]) for c in BURDEN]
    w_burden = max(wb)
    burden = sum(w * values[c] for w, c in zip(wb, BURDEN, strict=True)) / sum(wb) if sum(wb) > 0 else 0.0
    total = float(weights["local_control"]) + float(weights["repeatability"]) + w_burden
    if total <= 0:
        return NEUTRAL
    return (float(weights["local_control"]) * values["local_control"]
            + float(weights["repeatability"]) * values["repeatability"] + w_burden * burden) / total


@dataclass(frozen=True)
class Flip:
    criterion: str
    from_weight: float
    to_weight: float
    top_before: str
    top_after: str

    def text(self) -> str:
        return (f"if the importance of {self.criterion.replace('_', ' ')} changes from {self.from_weight:g} to "
                f"{self.to_weight:g}, {self.top_after} overtakes {self.top_before}")

    def to_json(self) -> dict[str, Any]:
        return {"criterion": self.criterion, "from_weight": self.from_weight, "to_weight": self.to_weight,
                "top_before": self.top_before, "top_after": self.top_after, "text": self.text()}


def sensitivity(rank_fn: Callable[[Mapping[str, float]], Sequence[str]], weights: Mapping[str, float],
                step: float = 0.25) -> list[Flip]:
    """For each criterion, the smallest change of its weight (0–5) that changes the top option.

    ``rank_fn(weights)`` returns option labels best first. A criterion absent from the
    result cannot flip the top within 0–5 (the ranking is robust to it).
    """
    base = list(rank_fn(weights))
    if not base:
        return []
    top = base[0]
    flips: list[Flip] = []
    for c in CRITERIA:
        w0 = float(weights[c])
        best: Flip | None = None
        n = round(5 / step)
        candidates = sorted({round(i * step, 4) for i in range(n + 1)} - {round(w0, 4)}, key=lambda w: (abs(w - w0), w))
        for w in candidates:
            trial = dict(weights)
            trial[c] = w
            order = list(rank_fn(trial))
            if order and order[0] != top:
                best = Flip(c, w0, w, top, order[0])
                break
        if best is not None:
            flips.append(best)
    flips.sort(key=lambda f: abs(f.to_weight - f.from_weight))
    return flips
