"""Write a case's reports: plan.json, report.html/pdf (the board summary and compact lesion pages),
report-appendix.html/pdf (every option's full reasons, all pictures, the basis) and patient.html/pdf
(option grid).

``write_reports`` writes everything into a temporary folder beside ``out_dir`` and moves
the finished files in only when all of them exist, so a failure never leaves a
half-written report next to a complete plan.json (or the reverse).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from latplan.board.proposal import BoardProposal, write_plan_json
from latplan.errors import LatplanError
from latplan.report.context import build_context, build_patient_context, format_value
from latplan.report.summary import build_summary, main_context

__all__ = ["ReportError", "html_to_pdf", "render_appendix_html", "render_html", "render_patient_html", "render_reports",
           "write_reports"]

_TEMPLATES = Path(__file__).with_name("templates")


class ReportError(LatplanError):
    """A report could not be written (template, PDF engine or output folder problem)."""


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    env.filters["fmt"] = format_value
    return env


def render_html(proposal: Any, *, dpi: int = 110) -> str:
    """The main board report (summary first) as one self-contained HTML string (images as data URIs, CSS inline)."""
    return render_reports(proposal, dpi=dpi)[0]


def render_reports(proposal: Any, *, dpi: int = 110) -> tuple[str, str]:
    """(main report, appendix) as HTML strings; the figures are drawn once for both."""
    ctx = build_context(proposal, dpi=dpi)
    main = render_main_html(proposal, ctx)
    return main, render_appendix_html({**ctx, "all_unknowns": build_summary(proposal)["all_unknowns"]})


def render_main_html(proposal: Any, ctx: dict[str, Any]) -> str:
    """The main report from an already built context: board summary on page 1, one compact page per lesion."""
    css = (_TEMPLATES / "report.css").read_text(encoding="utf-8")
    return _env().get_template("report.html").render(**main_context(proposal, ctx), css=css)


def render_appendix_html(ctx: dict[str, Any]) -> str:
    """The appendix from an already built context (see :func:`latplan.report.context.build_context`):
    every option's reasons and sources, every picture and metric table, the basis."""
    css = (_TEMPLATES / "report.css").read_text(encoding="utf-8")
    return _env().get_template("report-appendix.html").render(**ctx, css=css)


def render_patient_html(proposal: Any) -> str:
    """The patient's plain-language option grid as one self-contained HTML string."""
    return _env().get_template("patient.html").render(**build_patient_context(proposal))


def render_index_html(ctx: dict[str, Any]) -> str:
    """The demo index page (links to each case's reports)."""
    return _env().get_template("index.html").render(**ctx)


def html_to_pdf(html: str, path: Path) -> None:
    """PDF of an HTML string with WeasyPrint. Nothing is fetched: a URL fetcher that refuses
    every external resource guarantees the PDF shows only what the HTML embeds."""
    import weasyprint
    from weasyprint.urls import FatalURLFetchingError, URLFetcher

    fetcher = URLFetcher(allowed_protocols=("data",), fail_on_errors=True)
    try:
        weasyprint.HTML(string=html, url_fetcher=fetcher, base_url=None).write_pdf(str(path))
    except FatalURLFetchingError as exc:  # a BaseException in WeasyPrint
        raise ReportError(
            f"{path.name}: {exc}. Reports must be self-contained: embed images as data: URIs."
        ) from exc
    except Exception as exc:  # WeasyPrint/pango errors are not LatplanErrors
        raise ReportError(f"could not write the PDF {path.name}: {type(exc).__name__}: {exc}") from exc


def _write_plan_json(proposal: BoardProposal, path: Path) -> None:
    write_plan_json(proposal, path)


def write_reports(proposal: Any, out_dir: str | Path, *, pdf: bool = True, dpi: int = 110) -> dict[str, Path]:
    """Write plan.json, report.html/.pdf, report-appendix.html/.pdf and patient.html/.pdf into ``out_dir``;
    return their paths.

    All files are rendered into a temporary folder in ``out_dir``'s parent first, then
    moved in one by one with ``os.replace`` (atomic per file on one file system). If any
    rendering step fails, ``out_dir`` is left as it was.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the output folder {out}: {exc.strerror}. Choose a writable --out.") from exc
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        files: dict[str, Path] = {}
        _write_plan_json(proposal, tmp / "plan.json")
        files["plan_json"] = tmp / "plan.json"
        html, appendix = render_reports(proposal, dpi=dpi)
        (tmp / "report.html").write_text(html, encoding="utf-8")
        files["report_html"] = tmp / "report.html"
        (tmp / "report-appendix.html").write_text(appendix, encoding="utf-8")
        files["appendix_html"] = tmp / "report-appendix.html"
        patient = render_patient_html(proposal)
        (tmp / "patient.html").write_text(patient, encoding="utf-8")
        files["patient_html"] = tmp / "patient.html"
        if pdf:
            html_to_pdf(html, tmp / "report.pdf")
            files["report_pdf"] = tmp / "report.pdf"
            html_to_pdf(appendix, tmp / "report-appendix.pdf")
            files["appendix_pdf"] = tmp / "report-appendix.pdf"
            html_to_pdf(patient, tmp / "patient.pdf")
            files["patient_pdf"] = tmp / "patient.pdf"
        final: dict[str, Path] = {}
        for key, src in files.items():
            dst = out / src.name
            os.replace(src, dst)
            final[key] = dst
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
