"""Benchmark of the report ([E]): time per figure kind, HTML and PDF, on a demo case.

Run: .venv/bin/python benchmarks/bench_report.py [DEMO_CASE] [--voxel-mm 3]
Prints a table (seconds, and sizes). Uses the real phantom, board and planners; falls back to
the in-memory test proposal (tests/report/report_builders.py) when the demo case cannot be built.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def _proposal(name: str | None, voxel_mm: float | None):
    if name:
        from latplan.board import plan_case
        from latplan.phantom import build_demo_case

        t = time.perf_counter()
        case = build_demo_case(name, voxel_mm=voxel_mm)
        prop = plan_case(case)
        return prop, f"demo case {name} (voxel {voxel_mm or 'default'} mm)", time.perf_counter() - t
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "report"))
    from report_builders import make_proposal

    return make_proposal(), "in-memory test proposal", 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("case", nargs="?", default="seg6-peripheral-18mm")
    ap.add_argument("--voxel-mm", type=float, default=None)
    ap.add_argument("--synthetic", action="store_true", help="use the in-memory test proposal")
    args = ap.parse_args()

    from latplan.report import figures as F
    from latplan.report.context import build_context
    from latplan.report.writer import html_to_pdf, render_context_html, render_patient_html

    prop, label, plan_s = _proposal(None if args.synthetic else args.case, args.voxel_mm)
    rows: list[tuple[str, float, str]] = []
    if plan_s:
        rows.append(("plan_case (not the report)", plan_s, ""))
    case = prop.case
    lid = case.lesion_ids[0]
    t = time.perf_counter()
    fig, _ = F.lesion_views_figure(case, lid)
    png = F.figure_png(fig)
    rows.append(("3-view slices with outlines", time.perf_counter() - t, f"{len(png) / 1024:.0f} KiB PNG"))
    t = time.perf_counter()
    png = F.figure_png(F.thumbnail_figure(case, lid)[0])
    rows.append(("3-view thumbnail", time.perf_counter() - t, f"{len(png) / 1024:.0f} KiB PNG"))
    for (plid, modality), plan in prop.plans.items():
        t = time.perf_counter()
        figs = F.plan_figures(case, plan, segments=["6"])
        rows.append((f"{plid} {modality}: {', '.join(f.key for f in figs)}", time.perf_counter() - t,
                     f"{sum(len(f.png) for f in figs) / 1024:.0f} KiB"))
    t = time.perf_counter()
    ctx = build_context(prop)
    rows.append(("build_context (all figures)", time.perf_counter() - t, ""))
    t = time.perf_counter()
    html = render_context_html(ctx)
    rows.append(("render report.html", time.perf_counter() - t, f"{len(html) / 1024:.0f} KiB"))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        html_to_pdf(html, Path(tmp) / "report.pdf")
        rows.append(("report.pdf (WeasyPrint)", time.perf_counter() - t,
                     f"{(Path(tmp) / 'report.pdf').stat().st_size / 1024:.0f} KiB"))
        t = time.perf_counter()
        html_to_pdf(render_patient_html(prop), Path(tmp) / "patient.pdf")
        rows.append(("patient.html + .pdf", time.perf_counter() - t, ""))

    table = Table(title=f"latplan report benchmark — {label}")
    table.add_column("step")
    table.add_column("time (s)", justify="right")
    table.add_column("size")
    for step, sec, size in rows:
        table.add_row(step, f"{sec:.2f}", size)
    Console().print(table)


if __name__ == "__main__":
    main()
