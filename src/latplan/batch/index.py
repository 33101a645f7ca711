"""``OUT/index.html`` of a cohort run (issue [O] part 2): figures first, then every case with its link.

Figures (matplotlib, PNG under ``OUT/figures/``): tier/eligibility of every modality over the
lesions, simulated minimal margins by modality, top strategy and top option counts. When the case
folders carry ``treatments.yaml`` + ``outcomes.yaml``, local-progression-free survival by whether
the given modality was latplan's top-ranked one, and by the top-ranked modality — Kaplan–Meier and
Cox from :mod:`latplan.followup.cohort` (lifelines), with the reason when the Cox model cannot be
fitted. These are associations in retrospective (or synthetic) data, not treatment effects.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from lifelines.exceptions import ConvergenceError

from latplan.batch.jobs import CASES_DIR, Manifest
from latplan.errors import LatplanError
from latplan.followup.cohort import CoxResult, cox_lesions, fit_km, km_figure, load_cohort

__all__ = ["OutcomeAnalysis", "outcome_analysis", "write_index"]

TIER_ORDER = ("indicated", "eligible", "conditional", "relative", "relative_contraindication", "not_recommended",
              "contraindicated", "refer", "not_applicable", "unknown")
TIER_COLOURS = {"indicated": "#1a9850", "eligible": "#66bd63", "conditional": "#d9ef8b", "relative": "#fee08b",
                "relative_contraindication": "#fee08b", "not_recommended": "#fdae61", "contraindicated": "#d73027",
                "refer": "#abd9e9", "not_applicable": "#cccccc", "unknown": "#eeeeee"}
FIG_DIR = "figures"


@dataclass
class OutcomeAnalysis:
    """KM figures and the Cox model of a cohort with outcomes (or why there is none)."""

    lesions: int = 0
    figures: list[str] = field(default_factory=list)
    cox: CoxResult | None = None
    note: str = ""


def _tiers(df: pd.DataFrame) -> pd.DataFrame:
    mods = sorted(c[:-5] for c in df.columns if c.endswith("_tier") and c != "top_option_tier")
    counts = pd.DataFrame({m: df[f"{m}_tier"].fillna("unknown").value_counts() for m in mods}).fillna(0).T
    order = [t for t in TIER_ORDER if t in counts.columns] + sorted(set(counts.columns) - set(TIER_ORDER))
    return counts[order] if not counts.empty else counts


def _save(fig: plt.Figure, out_dir: Path, name: str) -> str:
    (out_dir / FIG_DIR).mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / FIG_DIR / name, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f"{FIG_DIR}/{name}"


def _eligibility_figure(df: pd.DataFrame, out_dir: Path) -> str:
    counts = _tiers(df)
    fig, ax = plt.subplots(figsize=(8, 0.4 * max(len(counts), 3) + 1.2))
    left = pd.Series(0.0, index=counts.index)
    for tier in counts.columns:
        ax.barh(counts.index, counts[tier], left=left, color=TIER_COLOURS.get(tier, "#999999"), label=tier)
        left += counts[tier]
    ax.set_xlabel("lesions")
    ax.set_title("Tier / eligibility by modality")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out_dir, "eligibility.png")


def _margin_figure(df: pd.DataFrame, out_dir: Path) -> str | None:
    data = {c[:-len("_min_margin_mm")]: df[c].dropna() for c in df.columns
            if c.endswith("_min_margin_mm") and df[c].notna().any()}
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.boxplot(list(data.values()), tick_labels=list(data), showfliers=True)
    ax.axhline(5.0, color="0.4", linestyle="--", linewidth=1)
    ax.set_ylabel("simulated minimal margin (mm)")
    ax.set_title("Simulated minimal margins by modality (dashed: 5 mm)")
    return _save(fig, out_dir, "margins.png")


def _counts_figure(df: pd.DataFrame, out_dir: Path) -> str:
    strat = df.drop_duplicates("case")["top_strategy_kind"].fillna("none").value_counts()
    opt = df["top_option"].fillna("none").value_counts()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 0.35 * max(len(strat), len(opt), 3) + 1.2))
    a1.barh(strat.index, strat.to_numpy(), color="#4575b4")
    a1.set_title("Top strategy (cases)")
    a2.barh(opt.index, opt.to_numpy(), color="#91bfdb")
    a2.set_title("Top-ranked option (lesions)")
    fig.tight_layout()
    return _save(fig, out_dir, "top_counts.png")


def outcome_analysis(df: pd.DataFrame, cohort_dir: Path, out_dir: Path) -> OutcomeAnalysis:
    """KM by given = top-ranked, KM by top-ranked modality, Cox; empty when no case has outcomes."""
    try:
        data = load_cohort(cohort_dir)
    except LatplanError as exc:
        return OutcomeAnalysis(note=f"no survival analysis: {exc}")
    if data.lesions.empty:
        return OutcomeAnalysis(note="no case folder has treatments.yaml + outcomes.yaml: no survival analysis.")
    top = df[["patient_id", "lesion", "top_option"]].rename(columns={"lesion": "lesion_id"})
    les = data.lesions.merge(top, on=["patient_id", "lesion_id"], how="inner")
    if les.empty:
        return OutcomeAnalysis(note="no treated lesion with outcomes was planned in this run.")
    les["given_is_top"] = (les["modality"] == les["top_option"]).astype(int)
    les["agreement"] = les["given_is_top"].map({1: "given = top-ranked", 0: "given ≠ top-ranked"})
    result = OutcomeAnalysis(lesions=len(les))
    for group, title, name in (("agreement", "LTP-free survival: given modality vs latplan's top-ranked", "km_agree.png"),
                               ("top_option", "LTP-free survival by latplan's top-ranked modality", "km_top.png"),
                               ("modality", "LTP-free survival by the modality given", "km_given.png")):
        fitters = fit_km(les, "time_months", "ltp", group=group)
        result.figures.append(_save(km_figure(fitters, title, ylabel="LTP-free probability"), out_dir, name))
    try:
        result.cox = cox_lesions(les, covariates=("given_is_top", "min_margin_mm", "diameter_mm"))
    except ConvergenceError as exc:  # e.g. complete separation in a small cohort
        result.cox = CoxResult(False, f"the Cox fit did not converge ({exc})", n=len(les), events=int(les["ltp"].sum()))
    return result


def _case_rows(df: pd.DataFrame, manifests: dict[str, Manifest]) -> str:
    rows = []
    for name, m in sorted(manifests.items()):
        sub = df[df["case"] == name]
        link = f'<a href="{CASES_DIR}/{html.escape(name)}/report.html">report</a>' if m.status == "ok" else ""
        strategy = html.escape(str(sub["top_strategy"].iloc[0])) if len(sub) else ""
        err = html.escape(f"{m.error_type}: {m.error}") if m.status == "failed" else ""
        rows.append(f"<tr><td>{html.escape(name)}</td><td class='{m.status}'>{m.status}</td><td>{len(sub)}</td>"
                    f"<td>{strategy}</td><td>{link}</td><td>{m.seconds:.1f}</td><td>{err}</td></tr>")
    return "\n".join(rows)


def _cox_html(res: OutcomeAnalysis) -> str:
    if res.cox is None:
        return f"<p>{html.escape(res.note)}</p>"
    if not res.cox.fitted or res.cox.summary is None:
        return f"<p>Cox model not fitted: {html.escape(res.cox.reason)}.</p>"
    table = res.cox.summary[["exp(coef)", "exp(coef) lower 95%", "exp(coef) upper 95%", "p"]].round(3)
    return f"<p>Cox PH (lifelines), {res.cox.n} lesions, {res.cox.events} events:</p>" + table.to_html()


def write_index(df: pd.DataFrame, manifests: dict[str, Manifest], cohort_dir: Path, out_dir: Path) -> Path:
    """Write ``OUT/index.html`` with the figures and a table of every case; returns its path."""
    figs = [_eligibility_figure(df, out_dir), _margin_figure(df, out_dir), _counts_figure(df, out_dir)] \
        if not df.empty else []
    margin_note = "" if any(f and f.endswith("margins.png") for f in figs) else \
        "<p>No simulated margins: the cases were planned without simulations (or none reached a planner).</p>"
    outcome = outcome_analysis(df, cohort_dir, out_dir) if not df.empty else OutcomeAnalysis(note="no planned case.")
    imgs = "\n".join(f'<img src="{f}" alt="{f}">' for f in figs if f)
    km = "\n".join(f'<img src="{f}" alt="{f}">' for f in outcome.figures)
    failed = sum(m.status == "failed" for m in manifests.values())
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>latplan cohort</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} img{{max-width:100%;display:block;margin:1em 0}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 6px;font-size:90%}}
.failed{{color:#b00}} .ok{{color:#070}}</style></head><body>
<h1>latplan cohort: {len(manifests)} cases, {len(df)} lesions, {failed} failed</h1>
<p>Decision support for research: what each modality could have offered per lesion (rules + simulations
as planned). Tables: <a href="cohort.csv">cohort.csv</a>, <a href="cohort.parquet">cohort.parquet</a>.</p>
{imgs}{margin_note}
<h2>Outcomes</h2><p>Associations in retrospective/synthetic data, not treatment effects.</p>{km}{_cox_html(outcome)}
<h2>Cases</h2><table><tr><th>case</th><th>status</th><th>lesions</th><th>top strategy</th><th>report</th>
<th>s</th><th>error</th></tr>
{_case_rows(df, manifests)}
</table></body></html>
"""
    tmp = out_dir / ".index.html.tmp"
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, out_dir / "index.html")
    return out_dir / "index.html"
