"""Write a case's reports: plan.json, report.html/pdf (board), patient.html/pdf (option grid).

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

__all__ = ["ReportError", "html_to_pdf", "render_html", "render_patient_html", "write_reports"]

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
    """The board report as one self-contained HTML string (images as data URIs, CSS inline)."""
    return render_context_html(build_context(proposal, dpi=dpi))


def render_context_html(ctx: dict[str, Any]) -> str:
    """The board report from an already built context (see :func:`latplan.report.context.build_context`)."""
    css = (_TEMPLATES / "report.css").read_text(encoding="utf-8")
    return _env().get_template("report.html").render(**ctx, css=css)


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
    """Write plan.json, report.html/.pdf and patient.html/.pdf into ``out_dir``; return their paths.

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
        html = render_html(proposal, dpi=dpi)
        (tmp / "report.html").write_text(html, encoding="utf-8")
        files["report_html"] = tmp / "report.html"
        patient = render_patient_html(proposal)
        (tmp / "patient.html").write_text(patient, encoding="utf-8")
        files["patient_html"] = tmp / "patient.html"
        if pdf:
            html_to_pdf(html, tmp / "report.pdf")
            files["report_pdf"] = tmp / "report.pdf"
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
