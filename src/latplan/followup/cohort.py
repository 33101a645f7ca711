"""Cohort outcomes: Kaplan–Meier and Cox models over a folder of cases (lifelines).

* Local-tumour-progression-free survival per **lesion**, by modality: time from the first
  treatment of the lesion to LTP (event) or to the patient's last contact/death (censored).
* Overall survival per **patient**: time from the first treatment to death (event) or last
  contact (censored).
* Cox proportional hazards on lesions with minimal margin (mm) and diameter (mm), fitted only
  when the data allow (≥ ``min_events`` events, covariates known for ≥ ``min_lesions`` lesions
  and not constant); otherwise the reason is returned instead of a model.

Data come from each case's ``treatments.yaml`` and ``outcomes.yaml`` (docs/followup.md);
the numbers are lifelines' own (the pipeline only assembles the table — a test checks equality).
Published reference points (``reference_outcomes.yaml``) are drawn beside the curves with
their source; they are not a fit to the cohort, and endpoints differ (caption says so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from latplan.errors import CaseFolderError, InvalidInputError
from latplan.followup.models import LesionOutcome
from latplan.followup.timepoints import load_outcomes, load_patient, load_treatments

__all__ = [
    "CohortData",
    "CoxResult",
    "cox_lesions",
    "fit_km",
    "km_figure",
    "load_cohort",
    "reference_outcomes",
    "run_outcomes",
]

DAYS_PER_MONTH = 365.25 / 12


@lru_cache(maxsize=1)
def reference_outcomes() -> dict[str, list[dict[str, Any]]]:
    """Published reference points with source, endpoint, population and evidence level."""
    text = resources.files("latplan.followup").joinpath("reference_outcomes.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@dataclass
class CohortData:
    """One row per lesion and one per patient (times in months)."""

    lesions: pd.DataFrame
    patients: pd.DataFrame
    skipped: list[str] = field(default_factory=list)


def _from_images(case: Path) -> dict[str, dict[str, Any]]:
    """First LTP date and post-procedure minimal margin per lesion, from the case's timepoints."""
    from latplan.followup.analysis import analyse_followup

    out: dict[str, dict[str, Any]] = {}
    analysis = analyse_followup(case, save_transforms=False)
    for tp in analysis.timepoints:
        for mc in tp.margin_checks:
            out.setdefault(mc.lesion_id, {}).setdefault("min_margin_mm", float(mc.margin.min_margin_mm))
        for lid, st in tp.local_status.items():
            if st["status"] == "local_tumour_progression":
                out.setdefault(lid, {}).setdefault("ltp_date", tp.date)
    return out


def load_cohort(cohort_dir: str | Path, derive_from_images: bool = False) -> CohortData:
    """Read every case folder under ``cohort_dir`` that has treatments.yaml and outcomes.yaml.

    ``derive_from_images``: for a lesion that ``outcomes.yaml`` does not list, take its first
    local-tumour-progression date and its post-procedure minimal margin from the follow-up
    analysis of the case's imaging timepoints (registration included: slower).
    """
    root = Path(cohort_dir)
    if not root.is_dir():
        raise CaseFolderError(f"cohort folder {root} does not exist.")
    les_rows: list[dict[str, Any]] = []
    pat_rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for case in sorted(p for p in root.iterdir() if p.is_dir()):
        outcomes = load_outcomes(case)
        treatments = load_treatments(case)
        if outcomes is None or not treatments:
            skipped.append(f"{case.name}: no outcomes.yaml or no treatments.yaml")
            continue
        patient = load_patient(case)
        t0 = min(t.date for t in treatments)
        end = outcomes.death_date or outcomes.last_follow_up
        if end < t0:
            raise CaseFolderError(f"{case}/outcomes.yaml: last follow-up/death {end} precedes the first treatment {t0}.")
        pat_rows.append({
            "patient_id": patient.id,
            "case": case.name,
            "primary": patient.primary.value,
            "first_modality": treatments[0].modality.value,
            "time_months": (end - t0).days / DAYS_PER_MONTH,
            "death": outcomes.death_date is not None,
        })
        first: dict[str, Any] = {}
        for t in treatments:
            first.setdefault(t.lesion, t)
        derived: dict[str, dict[str, Any]] = {}
        if derive_from_images and (case / "timepoints").is_dir() and any(x not in outcomes.lesions for x in first):
            derived = _from_images(case)
        for lid, t in first.items():
            lo = outcomes.lesions.get(lid)
            if lo is None and lid in derived:
                lo = LesionOutcome(ltp_date=derived[lid].get("ltp_date"), min_margin_mm=derived[lid].get("min_margin_mm"))
            ltp = lo.ltp_date if lo else None
            stop = ltp if ltp is not None else end
            if stop < t.date:
                raise CaseFolderError(f"{case}: lesion {lid} progression/end {stop} precedes its treatment {t.date}.")
            les_rows.append({
                "patient_id": patient.id,
                "lesion_id": lid,
                "modality": t.modality.value,
                "time_months": (stop - t.date).days / DAYS_PER_MONTH,
                "ltp": ltp is not None,
                "min_margin_mm": None if lo is None else lo.min_margin_mm,
                "diameter_mm": (lo.diameter_mm if lo and lo.diameter_mm else t.diameter_mm),
            })
    lesions = pd.DataFrame(les_rows, columns=["patient_id", "lesion_id", "modality", "time_months", "ltp",
                                              "min_margin_mm", "diameter_mm"])
    patients = pd.DataFrame(pat_rows, columns=["patient_id", "case", "primary", "first_modality", "time_months", "death"])
    for df in (lesions, patients):
        if "min_margin_mm" in df:
            df["min_margin_mm"] = pd.to_numeric(df["min_margin_mm"])
            df["diameter_mm"] = pd.to_numeric(df["diameter_mm"])
    return CohortData(lesions, patients, skipped)


def fit_km(df: pd.DataFrame, duration: str, event: str, group: str | None = None, label: str = "all") -> dict[str, Any]:
    """Kaplan–Meier fitters (lifelines) per group value (or one for all); keys are the labels."""
    from lifelines import KaplanMeierFitter

    if df.empty:
        raise InvalidInputError("no rows to fit a Kaplan–Meier curve: the cohort holds no usable case.")
    out: dict[str, Any] = {}
    groups = [(label, df)] if group is None else [(str(k), g) for k, g in df.groupby(group, sort=True)]
    for name, g in groups:
        kmf = KaplanMeierFitter(label=name)
        kmf.fit(g[duration].to_numpy(float), g[event].to_numpy(bool), label=name)
        out[name] = kmf
    return out


@dataclass
class CoxResult:
    """A fitted Cox model, or the reason it was not fitted."""

    fitted: bool
    reason: str
    summary: pd.DataFrame | None = None
    n: int = 0
    events: int = 0
    model: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fitted": self.fitted, "reason": self.reason, "n": self.n, "events": self.events}
        if self.summary is not None:
            cols = ["coef", "exp(coef)", "exp(coef) lower 95%", "exp(coef) upper 95%", "p"]
            out["covariates"] = {
                str(idx): {c: float(row[c]) for c in cols} for idx, row in self.summary.iterrows()
            }
        return out


def cox_lesions(
    lesions: pd.DataFrame,
    covariates: tuple[str, ...] = ("min_margin_mm", "diameter_mm"),
    min_events: int = 10,
    min_lesions: int = 20,
) -> CoxResult:
    """Cox PH model of LTP on the given lesion covariates, when the data allow (else the reason)."""
    from lifelines import CoxPHFitter

    present = [c for c in covariates if c in lesions]
    d = lesions[["time_months", "ltp", *present]].dropna()
    n, ev = len(d), int(d["ltp"].sum()) if len(d) else 0
    usable = [c for c in present if d[c].nunique() > 1]
    if not usable:
        return CoxResult(False, f"no covariate among {list(covariates)} is known and varies across lesions", n=n, events=ev)
    if n < min_lesions:
        return CoxResult(False, f"only {n} lesions with known {', '.join(usable)} (need ≥ {min_lesions})", n=n, events=ev)
    if ev < min_events:
        return CoxResult(False, f"only {ev} local progressions (need ≥ {min_events} events for {len(usable)} covariates)",
                         n=n, events=ev)
    cph = CoxPHFitter()
    cph.fit(d[["time_months", "ltp", *usable]], duration_col="time_months", event_col="ltp")
    return CoxResult(True, "fitted", cph.summary, n, ev, cph)


def _points(kind: str, modalities: list[str] | None = None) -> list[dict[str, Any]]:
    refs = reference_outcomes().get(kind, [])
    if modalities is None:
        return refs
    return [r for r in refs if not r.get("modality") or set(r["modality"]) & set(modalities)]


def km_figure(
    fitters: dict[str, Any],
    title: str,
    xlabel: str = "months",
    ylabel: str = "probability",
    references: list[dict[str, Any]] | None = None,
    at_risk: bool = True,
):
    """Kaplan–Meier curves with 95 % CI, the at-risk table under the axis and reference points.

    ``references``: entries of ``reference_outcomes.yaml`` (label, source, points) drawn as
    markers; their sources are listed in the caption under the figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from lifelines.plotting import add_at_risk_counts

    n_ref = len(references or [])
    fig, ax = plt.subplots(figsize=(10.5, 3.6 + 0.75 * len(fitters) + 0.12 * n_ref))
    for kmf in fitters.values():
        kmf.plot_survival_function(ax=ax, ci_show=True)
    markers = "osD^vP*Xh<>"
    sources = []
    for i, ref in enumerate(references or []):
        t = [p["time_months"] for p in ref["points"]]
        s = [p["percent"] / 100.0 for p in ref["points"]]
        ax.plot(t, s, linestyle="none", marker=markers[i % len(markers)], markersize=7, markerfacecolor="none",
                markeredgewidth=1.5, color="0.25", label=f"ref: {ref['label']}")
        sources.append(f"[{markers[i % len(markers)]}] {ref['label']} — {ref['endpoint']}; {ref['source']}")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlim(left=0.0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
    if at_risk:
        add_at_risk_counts(*fitters.values(), ax=ax, rows_to_show=["At risk", "Events"])
    if sources:
        caption = "Reference points are published values (different populations/endpoints), not fits:\n" + \
            "\n".join(sources)
        fig.text(0.01, 0.005, caption, fontsize=6, va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.02 + 0.016 * n_ref, 1, 1))
    return fig


def _km_table(fitters: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for name, kmf in fitters.items():
        sf = kmf.survival_function_
        ci = kmf.confidence_interval_survival_function_
        tab = kmf.event_table
        for t in sf.index:
            rows.append({
                "group": name, "time_months": float(t), "survival": float(sf.iloc[:, 0].loc[t]),
                "ci_lower": float(ci.iloc[:, 0].loc[t]), "ci_upper": float(ci.iloc[:, 1].loc[t]),
                "at_risk": int(tab.loc[t, "at_risk"]), "events": int(tab.loc[t, "observed"]),
                "censored": int(tab.loc[t, "censored"]),
            })
    return pd.DataFrame(rows)


def _median(kmf: Any) -> dict[str, float | None]:
    from lifelines.utils import median_survival_times

    med = float(kmf.median_survival_time_)
    ci = median_survival_times(kmf.confidence_interval_)
    lo, hi = (float(v) for v in np.asarray(ci).ravel()[:2])

    def fin(v: float) -> float | None:
        return None if not np.isfinite(v) else round(v, 3)

    return {"median_months": fin(med), "ci_lower": fin(lo), "ci_upper": fin(hi)}


def run_outcomes(cohort_dir: str | Path, out_dir: str | Path, derive_from_images: bool = False) -> dict[str, Any]:
    """Figures (PNG) + CSV + summary.json of a cohort's LTP-free survival, OS and Cox model."""
    import matplotlib.pyplot as plt

    data = load_cohort(cohort_dir, derive_from_images=derive_from_images)
    if data.patients.empty:
        raise CaseFolderError(
            f"{cohort_dir}: no case with both treatments.yaml and outcomes.yaml; nothing to analyse "
            f"({len(data.skipped)} folders skipped)."
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data.lesions.to_csv(out / "lesions.csv", index=False)
    data.patients.to_csv(out / "patients.csv", index=False)
    km_ltp = fit_km(data.lesions, "time_months", "ltp", group="modality")
    km_os = fit_km(data.patients, "time_months", "death", label="all patients")
    _km_table(km_ltp).to_csv(out / "km_ltp_free_by_modality.csv", index=False)
    _km_table(km_os).to_csv(out / "km_overall_survival.csv", index=False)
    mods = sorted(km_ltp)
    fig = km_figure(km_ltp, "Local-tumour-progression-free survival per lesion, by modality",
                    references=_points("local_progression_free", mods))
    fig.savefig(out / "km_ltp_free_by_modality.png", dpi=120)
    plt.close(fig)
    fig = km_figure(km_os, "Overall survival per patient", references=_points("overall_survival"))
    fig.savefig(out / "km_overall_survival.png", dpi=120)
    plt.close(fig)
    cox = cox_lesions(data.lesions)
    if cox.summary is not None:
        cox.summary.to_csv(out / "cox_ltp.csv")
    summary = {
        "cohort": str(cohort_dir),
        "patients": len(data.patients),
        "lesions": len(data.lesions),
        "skipped": data.skipped,
        "ltp_free": {k: {"n": int(v.event_table["at_risk"].iloc[0]), "events": int(v.event_table["observed"].sum()),
                         **_median(v)} for k, v in km_ltp.items()},
        "overall_survival": {k: {"n": int(v.event_table["at_risk"].iloc[0]),
                                 "events": int(v.event_table["observed"].sum()), **_median(v)}
                             for k, v in km_os.items()},
        "cox_ltp": cox.to_dict(),
        "files": [*sorted(p.name for p in out.iterdir()), "summary.json"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
