"""Benchmark of the report ([E], [M]): time per figure kind, HTML and PDF (pages against the limit),
and the result files (latplan.export), on a demo case.

Run: .venv/bin/python benchmarks/bench_report.py [DEMO_CASE] [--voxel-mm 3]
Prints a table (seconds, and sizes). Uses the real phantom, board and planners; falls back to
the in-memory test proposal (tests/support/report_builders.py) when the demo case cannot be built.
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

    from latplan.export import write_result_files
    from latplan.report import figures as F
    from latplan.report.context import build_context
    from latplan.report.writer import html_to_pdf, render_appendix_html, render_main_html, render_patient_html

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
    html = render_main_html(prop, ctx)
    rows.append(("render report.html (summary first)", time.perf_counter() - t, f"{len(html) / 1024:.0f} KiB"))
    t = time.perf_counter()
    appendix = render_appendix_html(ctx)
    rows.append(("render report-appendix.html", time.perf_counter() - t, f"{len(appendix) / 1024:.0f} KiB"))
    with tempfile.TemporaryDirectory() as tmp:
        from pypdf import PdfReader

        for name, text in (("report.pdf", html), ("report-appendix.pdf", appendix)):
            t = time.perf_counter()
            html_to_pdf(text, Path(tmp) / name)
            pages = len(PdfReader(Path(tmp) / name).pages)
            limit = f" (limit {8 if len(case.lesion_ids) <= 1 else 16})" if name == "report.pdf" else ""
            rows.append((f"{name} (WeasyPrint)", time.perf_counter() - t,
                         f"{(Path(tmp) / name).stat().st_size / 1024:.0f} KiB, {pages} pages{limit}"))
        t = time.perf_counter()
        html_to_pdf(render_patient_html(prop), Path(tmp) / "patient.pdf")
        rows.append(("patient.html + .pdf", time.perf_counter() - t, ""))
        t = time.perf_counter()
        files = write_result_files(prop, Path(tmp) / "results")
        size = sum(p.stat().st_size for p in (Path(tmp) / "results").rglob("*") if p.is_file())
        rows.append(("write_result_files (NIfTI, STL, DICOM RT)", time.perf_counter() - t,
                     f"{len(files)} entries, {size / 2**20:.1f} MiB"))

    table = Table(title=f"latplan report benchmark — {label}")
    table.add_column("step")
    table.add_column("time (s)", justify="right")
    table.add_column("size")
    for step, sec, size in rows:
        table.add_row(step, f"{sec:.2f}", size)
    Console().print(table)


if __name__ == "__main__":
    main()
