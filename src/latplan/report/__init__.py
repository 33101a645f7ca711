"""latplan.report: figures (slices with outlines, zones, isodoses, DVH...) and the HTML/PDF reports.

Public API::

    write_reports(proposal, out_dir) -> dict[str, Path]   # plan.json, report.html/pdf (board summary first),
                                                          # report-appendix.html/pdf, patient.html/pdf
    render_html(proposal) -> str, render_reports(proposal) -> (main, appendix), render_patient_html(proposal) -> str
    (result files — NIfTI, meshes, DICOM RT — are latplan.export.write_result_files)
    write_demo_index(path, rows) -> Path          # the `latplan demo` index page (planning: latplan.pipeline.run_demo)
    latplan.report.figures: draw_slice, lesion_views_figure, ablation_figure, isodose_figure,
        dvh_figure, margin_histogram_figure, sbrt_figure, territory_figure, thumbnail_figure, figure_png
    latplan.report.colours: colour_for(name, role) — the one colour table
"""

from latplan.report.demo import DemoRow, write_demo_index
from latplan.report.writer import (
    ReportError,
    html_to_pdf,
    render_html,
    render_patient_html,
    render_reports,
    write_reports,
)

__all__ = ["DemoRow", "ReportError", "html_to_pdf", "render_html", "render_patient_html", "render_reports",
           "write_demo_index", "write_reports"]
