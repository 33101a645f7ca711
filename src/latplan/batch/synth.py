"""Synthetic cohorts of phantom patients for cohort runs, tests and benchmarks (issue [O] part 3).

``synth_cohort(out_dir, n, seed)`` writes ``n`` case folders built by the digital liver phantom
(:func:`latplan.phantom.build_phantom`) from specs drawn with numpy's PCG64 generator seeded by
``(seed, patient index)`` — the same seed gives the same specs, images and YAML files.

Stated distributions (docs/cohorts.md):

* primary: colorectal metastases (70 %) or hepatocellular carcinoma (30 %);
* lesion count: 1, 2, 3 or 4 with probabilities 0.40, 0.30, 0.20, 0.10, each lesion in its own
  Couinaud segment (drawn without replacement), ``deep`` or ``peripheral`` placement (50 % each);
* diameter uniform on [12, 45] mm (rounded to 1 mm); a draw the phantom cannot place (lesions
  touching a large vessel or each other) is redrawn at 80 % of the size, at most 6 times, never below
  ``MIN_VOXELS_ACROSS`` voxels across (a smaller lesion cannot be measured on the grid: a 3 mm lesion on a
  6 mm grid is one voxel, and measuring refuses it);
* patient: age 45–84, sex, ECOG 0–2, labs; colorectal: RAS status, resected/in-place primary,
  10 % lung metastases; HCC: cirrhosis, Child–Pugh A/B, BCLC A/B, AFP;
* the given treatment of each lesion (``treatments.yaml``): thermal ablation (MWA/RFA) for ≤ 30 mm,
  brachytherapy (IBT) or SBRT above, TACE for every lesion of a patient with ≥ 3 lesions;
* ``outcomes.yaml``: overall survival exponential (median 36 months colorectal, 30 months HCC),
  local progression per lesion exponential (median 24 months) with hazard × exp(0.25 × (d − 30 mm)/10 mm)
  and margins uniform on [0, 12] mm, censored at death or last contact (≤ 60 months).

Each case folder also holds ``phantom.yaml``, the spec it was built from.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from latplan.errors import InvalidInputError, PhantomSpecError
from latplan.imaging.case_folder import save_case_folder
from latplan.phantom import PhantomSpec, build_phantom, parse_spec

__all__ = ["SynthPatient", "draw_patient", "synth_cohort"]

SEGMENTS = ("2", "3", "4a", "4b", "5", "6", "7", "8")
DAYS_PER_MONTH = 365.25 / 12
START_DATE = dt.date(2019, 1, 7)
MAX_REDRAWS = 6


@dataclass(frozen=True)
class SynthPatient:
    """One drawn patient: the phantom spec, its given treatments and its outcomes (YAML mappings)."""

    case_id: str
    spec: dict[str, Any]
    treatments: dict[str, Any]
    outcomes: dict[str, Any]


def _rng(seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, index, attempt])


def _patient_record(rng: np.random.Generator, case_id: str, primary: str, n_lesions: int) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": case_id, "primary": primary, "age": int(rng.integers(45, 85)), "sex": str(rng.choice(["M", "F"])),
        "ecog": int(rng.choice([0, 1, 2], p=[0.5, 0.4, 0.1])),
        "labs": {"bilirubin_mg_dl": round(float(rng.uniform(0.4, 1.6)), 1),
                 "albumin_g_dl": round(float(rng.uniform(3.2, 4.6)), 1),
                 "inr": round(float(rng.uniform(0.9, 1.3)), 2),
                 "platelets_g_l": int(rng.integers(90, 350)), "egfr_ml_min": int(rng.integers(45, 110))},
    }
    if primary == "colorectal":
        lung = bool(rng.uniform() < 0.10)
        rec.update({
            "histology": "adenocarcinoma", "primary_status": str(rng.choice(["resected", "in_place"], p=[0.8, 0.2])),
            "molecular": {"ras": str(rng.choice(["mutant", "wildtype"]))},
            "extrahepatic_sites": ["lung"] if lung else [],
            "metastatic_sites": [{"organ": "liver", "lesion_count": n_lesions}]
            + ([{"organ": "lung", "lesion_count": 1}] if lung else []),
            "cirrhosis": False, "ascites": False, "chemotherapy_cycles": int(rng.integers(0, 13)),
        })
        rec["labs"]["cea_ng_ml"] = round(float(rng.uniform(2.0, 60.0)), 1)
    else:
        child = str(rng.choice(["A", "B"], p=[0.75, 0.25]))
        rec.update({
            "histology": "hepatocellular carcinoma", "cirrhosis": True, "child_pugh": child,
            "bclc_stage": "A" if n_lesions <= 3 else "B", "ascites": False, "extrahepatic_sites": [],
        })
        rec["labs"]["afp_ng_ml"] = round(float(rng.uniform(5.0, 800.0)), 1)
    return rec


def _given_modality(rng: np.random.Generator, diameter_mm: float, n_lesions: int) -> str:
    if n_lesions >= 3:
        return "tace"
    if diameter_mm <= 30.0:
        return str(rng.choice(["mwa", "rfa"], p=[0.7, 0.3]))
    return str(rng.choice(["ibt", "sbrt"], p=[0.6, 0.4]))


def _date_plus(d: dt.date, months: float) -> str:
    return (d + dt.timedelta(days=round(months * DAYS_PER_MONTH))).isoformat()


def _outcomes(rng: np.random.Generator, primary: str, lesions: list[dict[str, Any]], t0: dt.date) -> dict[str, Any]:
    os_median = 36.0 if primary == "colorectal" else 30.0
    os_true = float(rng.exponential(os_median / np.log(2.0)))
    censor = float(rng.uniform(12.0, 60.0))
    os_time = min(os_true, censor)
    out_lesions: dict[str, Any] = {}
    for les in lesions:
        hr = float(np.exp(0.25 * (les["diameter_mm"] - 30.0) / 10.0))
        ltp = float(rng.exponential(24.0 / np.log(2.0) / hr))
        out_lesions[les["id"]] = {"ltp_date": _date_plus(t0, ltp) if ltp <= os_time else None,
                                  "min_margin_mm": round(float(rng.uniform(0.0, 12.0)), 1),
                                  "diameter_mm": float(les["diameter_mm"])}
    return {"last_follow_up": _date_plus(t0, os_time),
            "death_date": _date_plus(t0, os_time) if os_true <= censor else None, "lesions": out_lesions}


#: smallest lesion diameter of a redraw, in voxels of the cohort's grid (measurable: diameter, shape)
MIN_VOXELS_ACROSS = 3.0


def draw_patient(seed: int, index: int, voxel_mm: float, attempt: int = 0) -> SynthPatient:
    """Draw patient ``index`` of the cohort ``seed`` (``attempt`` > 0: a redraw at smaller sizes)."""
    rng = _rng(seed, index)
    case_id = f"SYN{seed}-{index + 1:03d}"
    primary = str(rng.choice(["colorectal", "hcc"], p=[0.7, 0.3]))
    n_lesions = int(rng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.2, 0.1]))
    segments = [str(s) for s in rng.choice(SEGMENTS, size=n_lesions, replace=False)]
    shrink = 0.8 ** attempt
    lesions: list[dict[str, Any]] = [{"id": f"lesion_{i + 1}", "segment": seg, "diameter_mm": float(round(max(rng.uniform(12.0, 45.0) * shrink, MIN_VOXELS_ACROSS * voxel_mm))),
                "placement": str(rng.choice(["deep", "peripheral"]))} for i, seg in enumerate(segments)]
    patient = _patient_record(rng, case_id, primary, n_lesions)
    t0 = dt.date.fromordinal(START_DATE.toordinal() + int(rng.integers(0, 730)))
    treatments = {"treatments": [{"lesion": les["id"], "modality": _given_modality(rng, les["diameter_mm"], n_lesions),
                                  "date": t0.isoformat(), "diameter_mm": les["diameter_mm"]} for les in lesions]}
    spec = {"description": f"synthetic cohort {seed}, patient {index + 1}: {primary}, {n_lesions} liver lesion(s)",
            "seed": int(seed * 1000 + index), "voxel_mm": [voxel_mm] * 3, "patient": patient, "lesions": lesions}
    return SynthPatient(case_id, spec, treatments, _outcomes(rng, primary, lesions, t0))


def _dump(data: dict[str, Any], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False, allow_unicode=True)


def _write_case(drawn: SynthPatient, spec: PhantomSpec, folder: Path, overwrite: bool) -> None:
    staging = folder.parent / f".{folder.name}.synth-{uuid.uuid4().hex[:8]}"
    try:
        save_case_folder(build_phantom(spec), staging)
        _dump(drawn.spec, staging / "phantom.yaml")
        _dump(drawn.treatments, staging / "treatments.yaml")
        _dump(drawn.outcomes, staging / "outcomes.yaml")
        if folder.exists():
            if not overwrite:
                raise InvalidInputError(f"{folder} exists already; choose an empty --out folder or pass --overwrite.")
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def synth_cohort(out_dir: str | os.PathLike[str], n: int = 20, seed: int = 0, voxel_mm: float = 4.0,
                 overwrite: bool = False) -> list[Path]:
    """Write ``n`` synthetic phantom case folders under ``out_dir`` (deterministic by ``seed``)."""
    if n < 1:
        raise InvalidInputError(f"a synthetic cohort needs at least one patient; got --n {n}.")
    if not 0.3 <= voxel_mm <= 6.0:
        raise InvalidInputError(f"voxel size {voxel_mm} mm is outside the phantom's 0.3–6 mm; choose e.g. 4.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folders: list[Path] = []
    for index in range(n):
        for attempt in range(MAX_REDRAWS + 1):
            drawn = draw_patient(seed, index, voxel_mm, attempt)
            try:
                spec = parse_spec(drawn.spec)
                _write_case(drawn, spec, out / drawn.case_id, overwrite)
                break
            except PhantomSpecError:
                if attempt == MAX_REDRAWS:
                    raise
        folders.append(out / drawn.case_id)
    return folders
