"""Follow-up figures for reports ([E]) and the web app ([F]); computed results in, picture out.

``response_figure(summary)`` takes :func:`latplan.followup.analysis.followup_summary` output and
draws the RECIST target sum (and mRECIST viable sum, HCC) over time, with treatments as vertical
lines and each timepoint's overall response and local status written at its point.
Kaplan–Meier figures: :func:`latplan.followup.cohort.km_figure`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = ["response_figure"]

_STATUS_SHORT = {"no_viable_tumour": "clear", "residual_tumour": "residual", "local_tumour_progression": "LTP"}


def response_figure(summary: dict[str, Any]):
    """Target-lesion sum (mm) over time with treatments and responses (matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 3.6))
    tps = summary.get("timepoints", [])
    base_date = None
    treatments = summary.get("treatments", [])
    if treatments:
        base_date = min(dt.date.fromisoformat(t["date"]) for t in treatments)
    for key, style, name in (("recist", "o-", "RECIST 1.1 target sum"), ("mrecist", "s--", "mRECIST viable sum")):
        pts = [(dt.date.fromisoformat(tp["date"]), tp[key]) for tp in tps if tp.get(key)]
        if not pts:
            continue
        first = pts[0][1]
        dates = [base_date or pts[0][0]] + [d for d, _ in pts]
        sums = [first["baseline_sum_mm"]] + [a["current_sum_mm"] for _, a in pts]
        ax.plot(dates, sums, style, label=name)  # type: ignore[arg-type]  # matplotlib converts dates
        if key == "recist":
            for (d, a), tp in zip(pts, [tp for tp in tps if tp.get(key)], strict=True):
                local = ", ".join(_STATUS_SHORT.get(v["status"], v["status"]) for v in tp["local_status"].values())
                ax.annotate(f"{tp['label']}: {a['overall_response']}" + (f"\n{local}" if local else ""),
                            (d, a["current_sum_mm"]), textcoords="offset points", xytext=(4, 6), fontsize=7)
    for t in treatments:
        d = dt.date.fromisoformat(t["date"])
        ax.axvline(d, color="0.5", lw=1, ls=":")  # type: ignore[arg-type]  # date units
        ax.annotate(f"{t['modality'].upper()} {t['lesion']}", (d, 0), textcoords="offset points", xytext=(2, 2),
                    fontsize=7, rotation=90, va="bottom", color="0.3")
    ax.set_ylabel("sum of longest diameters (mm)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Response over time — {summary.get('patient_id', '')}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper right")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
