"""Synthetic follow-up cohorts for demos and tests, deterministic from a seed.

Stated distributions (``SyntheticCohortSpec``; docs/followup.md):

* overall survival per patient: exponential with median ``os_median_months`` (rate ln 2 / median);
* local tumour progression per lesion: exponential with median ``ltp_median_months[modality]``,
  hazard multiplied by ``exp(margin_log_hr_per_mm · (margin − 5 mm) + size_log_hr_per_10mm · (diameter − 30 mm)/10)``
  so a Cox model has something to find;
* censoring: administrative at ``study_end_months`` after the first treatment of the cohort's
  first patient (patients accrue uniformly over ``accrual_months``), plus loss to follow-up
  exponential with median ``loss_median_months``; LTP is censored at death or last contact;
* minimal margin uniform on [0, 15] mm; diameter uniform on [10, 50] mm;
* lesion trajectory: ``locally_recurring`` when an LTP is observed, else ``shrinking`` or ``stable``.

The cohort is written as case folders with ``case.yaml``, ``treatments.yaml`` and
``outcomes.yaml`` (tabular, no images: fast); ``imaging_cases`` of them also get small
phantom images with post-procedure, 3- and 6-month timepoints (:mod:`latplan.followup.imaging_phantom`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latplan.errors import InvalidInputError
from latplan.followup._io import write_yaml

__all__ = ["SyntheticCohortSpec", "generate_cohort", "synthetic_times"]

DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class SyntheticCohortSpec:
    """Parameters of a synthetic cohort (all times in months)."""

    n_patients: int = 80
    seed: int = 2021
    os_median_months: float = 36.0
    ltp_median_months: dict[str, float] = field(
        default_factory=lambda: {"mwa": 30.0, "rfa": 20.0, "ibt": 36.0, "sbrt": 30.0}
    )
    modality_weights: dict[str, float] = field(default_factory=lambda: {"mwa": 0.4, "rfa": 0.2, "ibt": 0.25, "sbrt": 0.15})
    max_lesions_per_patient: int = 3
    margin_log_hr_per_mm: float = -0.12
    size_log_hr_per_10mm: float = 0.25
    accrual_months: float = 24.0
    study_end_months: float = 84.0
    loss_median_months: float = 240.0
    start_date: dt.date = dt.date(2015, 1, 5)
    primary: str = "colorectal"
    imaging_cases: int = 0

    def __post_init__(self) -> None:
        if self.n_patients < 1:
            raise InvalidInputError("a synthetic cohort needs at least one patient (n_patients ≥ 1).")
        if self.os_median_months <= 0 or any(v <= 0 for v in self.ltp_median_months.values()):
            raise InvalidInputError("medians must be positive (months).")
        missing = set(self.modality_weights) - set(self.ltp_median_months)
        if missing:
            raise InvalidInputError(f"ltp_median_months lacks a median for modality {sorted(missing)}.")


def synthetic_times(
    n: int, median_months: float, rng: np.random.Generator, censor_months: np.ndarray | float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exponential event times of a given median, right-censored at ``censor_months``.

    Returns (observed time in months, event flag). Used by tests with a known truth.
    """
    t = rng.exponential(median_months / np.log(2.0), size=n)
    if censor_months is None:
        return t, np.ones(n, bool)
    c = np.broadcast_to(np.asarray(censor_months, float), (n,))
    return np.minimum(t, c), t <= c


def _date_plus(d: dt.date, months: float) -> dt.date:
    return d + dt.timedelta(days=round(months * DAYS_PER_MONTH))


def generate_cohort(out_dir: str | Path, spec: SyntheticCohortSpec | None = None) -> list[Path]:
    """Write a synthetic cohort of case folders under ``out_dir``; returns the case folders.

    Deterministic: the same spec (seed) gives byte-identical YAML.
    """
    spec = spec or SyntheticCohortSpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    mods = list(spec.modality_weights)
    w = np.asarray([spec.modality_weights[m] for m in mods], float)
    w = w / w.sum()
    folders: list[Path] = []
    for p in range(spec.n_patients):
        pid = f"SYN-{spec.seed}-{p + 1:03d}"
        entry_m = float(rng.uniform(0.0, spec.accrual_months))
        t0 = _date_plus(spec.start_date, entry_m)
        admin = spec.study_end_months - entry_m
        loss = float(rng.exponential(spec.loss_median_months / np.log(2.0)))
        os_true = float(rng.exponential(spec.os_median_months / np.log(2.0)))
        censor = min(admin, loss)
        os_time = min(os_true, censor)
        died = os_true <= censor
        n_les = int(rng.integers(1, spec.max_lesions_per_patient + 1))
        treatments = []
        lesions_out = {}
        trajectories = {}
        for li in range(n_les):
            lid = f"lesion_{li + 1}"
            mod = str(rng.choice(mods, p=w))
            margin = float(np.round(rng.uniform(0.0, 15.0), 1))
            diam = float(np.round(rng.uniform(10.0, 50.0), 1))
            hr = np.exp(spec.margin_log_hr_per_mm * (margin - 5.0) + spec.size_log_hr_per_10mm * (diam - 30.0) / 10.0)
            ltp_true = float(rng.exponential(spec.ltp_median_months[mod] / np.log(2.0) / hr))
            trajectory_draw = float(rng.uniform())
            ltp_obs = ltp_true <= os_time
            treatments.append({"lesion": lid, "modality": mod, "date": t0.isoformat(), "diameter_mm": diam})
            lesions_out[lid] = {
                "ltp_date": _date_plus(t0, ltp_true).isoformat() if ltp_obs else None,
                "min_margin_mm": margin,
                "diameter_mm": diam,
            }
            trajectories[lid] = "locally_recurring" if ltp_obs else ("shrinking" if trajectory_draw < 0.7 else "stable")
        folder = out / pid
        write_yaml({"patient": {"id": pid, "primary": spec.primary, "age": int(rng.integers(45, 85))}},
                   folder / "case.yaml")
        write_yaml({"treatments": treatments}, folder / "treatments.yaml")
        write_yaml(
            {
                "last_follow_up": _date_plus(t0, os_time).isoformat(),
                "death_date": _date_plus(t0, os_time).isoformat() if died else None,
                "lesions": lesions_out,
            },
            folder / "outcomes.yaml",
        )
        if p < spec.imaging_cases:
            from latplan.followup.imaging_phantom import write_imaging_followup

            write_imaging_followup(folder, trajectory=trajectories["lesion_1"], start=t0, seed=spec.seed + p,
                                   modality=str(treatments[0]["modality"]))
        folders.append(folder)
    return folders
