"""`latplan demo` end to end (moved from tests/report/test_report_integration.py, every assertion kept):
demo phantoms on a coarse grid (session-cached), planned with simulations through
:func:`latplan.pipeline.run_demo`, reports checked by tests/support/report_checks.py (shared with the real-CT report test).

One test per demo case (parametrised) replaces the test that planned the whole demo serially, so
pytest-xdist spreads the cases over the workers. Independent reference: the report's section list
(tests/report/test_report_html.py SECTION_HEADINGS, the report template) and HTML well-formedness.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from report_checks import check_report_folder
from typer.testing import CliRunner

from latplan.cli import app
from latplan.phantom import demo_cases
from latplan.pipeline import run_demo
from tests.report.test_report_html import check_html

from .conftest import coarse_demo_case


@pytest.mark.slow
@pytest.mark.parametrize("name", list(demo_cases()))
def test_demo_case_renders(tmp_path: Path, name: str, demo_names: list[str]) -> None:
    """Reports render for every demo case (coarse grid, with simulations): no case fails, no figure
    fails. For the first case also: `run_demo` writes the case folder and an index linking the reports
    (this was a separate test planning the same case a second time), and the PDFs (WeasyPrint, read back by
    pypdf). The other cases are written without PDFs (their HTML checked: the PDF is WeasyPrint's rendering
    of that HTML, a quarter of the test's time; the four-lesion main report's PDF is checked by
    tests/report/test_report_summary.py, the real-CT case's by tests/report/test_report_integration.py)."""
    first = name == demo_names[0]
    res = run_demo(tmp_path, [name], build_case=coarse_demo_case, pdf=first)
    assert res.errors == {}
    check_report_folder(tmp_path / "reports" / name, pdf=first)
    if not first:
        return
    assert (tmp_path / "cases" / name / "case.yaml").is_file()
    report = (tmp_path / "reports" / name / "report.html").read_text(encoding="utf-8")
    assert "case.yaml" in report  # Basis lists the hashes of the case folder that was planned
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert check_html(index).errors == []
    assert f"reports/{name}/report.html" in index


@pytest.mark.slow
def test_demo_cli(tmp_path: Path, demo_names: list[str]) -> None:
    """`latplan demo --out OUT --cases NAME` writes OUT/index.html linking the case's reports (the CLI's
    wiring; rules only — the simulations of every demo case are exercised by test_demo_case_renders)."""
    names = demo_names
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--cases", names[0], "--no-pdf",
                                      "--no-simulate"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "reports" / names[0] / "report.html").is_file()
