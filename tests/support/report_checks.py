"""Checks of a report folder written by the pipeline (``plan.json``, ``report*.html/.pdf``, ``patient.html/.pdf``),
shared by the end-to-end tests (tests/integration/test_demo.py, tests/report/test_report_integration.py).

Independent references: the report's section list (tests/report/test_report_html.py SECTION_HEADINGS, from
the report template of issue 6), HTML well-formedness (the strict checker of test_report_html.py), and the
PDF text as pypdf (another library than WeasyPrint) reads it back.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

from tests.report.test_report_html import SECTION_HEADINGS, check_html

#: every file :func:`latplan.report.writer.write_reports` writes with ``pdf=True``
REPORT_FILES = ("plan.json", "report.html", "report.pdf", "patient.html", "patient.pdf", "report-appendix.html",
                "report-appendix.pdf")


def pdf_text(path: Path) -> str:
    """The text of every page of the PDF at ``path`` (pypdf), whitespace runs as one space."""
    from pypdf import PdfReader

    return re.sub(r"\s+", " ", " ".join(p.extract_text() or "" for p in PdfReader(path).pages))


def html_text(html: str) -> str:
    """The text of an HTML page (tags dropped, entities decoded, whitespace runs as one space): what a
    reader sees, for the checks of a report folder written without PDFs."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]*>", " ", html)))


def check_report_folder(out: Path, full: str = "report", pdf: bool = True) -> str:
    """Common checks of the report folder ``out``; returns the HTML of ``full``.

    All seven files (the four HTML/JSON ones where ``pdf`` is False: a folder written with ``pdf=False``);
    report.html and report-appendix.html well-formed; ``full`` (``"report"`` or ``"report-appendix"``: the
    report whose sections are checked) self-contained (only ``#`` and ``data:image/png`` references), every
    figure drawn, every section heading in its PDF (in its HTML text without PDFs; the lesion-named ones
    excepted: lesion names depend on the case); the patient sheet names the choices.
    """
    for name in REPORT_FILES:
        if pdf or not name.endswith(".pdf"):
            assert (out / name).is_file(), name
        else:
            assert not (out / name).exists(), f"{name} written although pdf=False"
    for name in ("report.html", "report-appendix.html"):
        chk = check_html((out / name).read_text(encoding="utf-8"))
        assert chk.errors == [] and chk.stack == [], name
    html = (out / f"{full}.html").read_text(encoding="utf-8")
    chk = check_html(html)
    assert all(ref.startswith(("#", "data:image/png;base64,")) for _, ref in chk.refs)
    assert "Pictures not drawn" not in html, "a figure failed to draw"
    text = pdf_text(out / f"{full}.pdf") if pdf else html_text(html)
    for heading in SECTION_HEADINGS:
        if heading.startswith(("Lesion: lesion 1", "Options for lesion 1")):
            continue  # lesion names depend on the case
        assert heading in text, heading
    patient = pdf_text(out / "patient.pdf") if pdf else html_text((out / "patient.html").read_text(encoding="utf-8"))
    assert "Your treatment choices" in patient
    return html
