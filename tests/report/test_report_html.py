"""HTML/PDF report tests ([E]) on the in-memory proposal of tests/report/report_builders.py."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_builders import make_proposal

from latplan.report import writer
from latplan.report.context import build_context, build_patient_context, plain_language
from latplan.report.writer import ReportError, render_appendix_html, render_patient_html, write_reports

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# elements whose end tag HTML lets you omit; we never omit them, so they are checked too
SECTION_HEADINGS = ["Case summary", "Patient", "Disease status", "Lesions", "Lesion: lesion 1", "Options for lesion 1",
                    "Whole-patient strategies", "Preference sensitivity", "Basis", "Known limitations"]


class StrictChecker(HTMLParser):
    """Tag-balance checker: every non-void element closed in order, ids unique, one <html>,
    attributes with references collected. A stand-in for an HTML validator (none installed)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []
        self.doctype = False
        self.imgs_without_alt = 0

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            if a["id"] in self.ids:
                self.errors.append(f"duplicate id {a['id']}")
            self.ids.add(a["id"])
        for key in ("src", "href", "action", "data", "poster"):
            if key in a and a[key] is not None:
                self.refs.append((tag, a[key]))
        if tag == "img" and not a.get("alt"):
            self.imgs_without_alt += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            self.errors.append(f"end tag for void element {tag}")
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()


def check_html(html: str) -> StrictChecker:
    chk = StrictChecker()
    chk.feed(html)
    chk.close()
    return chk


@pytest.fixture(scope="module")
def proposal():
    return make_proposal()


@pytest.fixture(scope="module")
def context(proposal) -> dict:
    return build_context(proposal, dpi=50)


@pytest.fixture(scope="module")
def report_html(context) -> str:
    """The appendix: since issue [M] the full sections, metric tables and basis live there (the main
    report.html is the board summary, tested in test_report_summary.py)."""
    return render_appendix_html(context)


def test_report_html_is_well_formed_and_self_contained(report_html):
    """HTML parses with balanced tags, unique ids, alt text on images; every reference is internal
    (#anchor) or an embedded data: URI — no http(s) or file reference anywhere (works offline)."""
    chk = check_html(report_html)
    assert chk.doctype
    assert chk.errors == []
    assert chk.stack == []
    assert chk.imgs_without_alt == 0
    for tag, ref in chk.refs:
        assert ref.startswith(("#", "data:image/png;base64,")), (tag, ref[:60])
    assert not re.search(r"(?i)(src|href)\s*=\s*[\"']?\s*(https?:|//|file:)", report_html)
    assert "http://" not in report_html and "https://" not in report_html
    assert "@import" not in report_html and "url(" not in report_html


def test_report_html_sections_and_metric_text(report_html):
    """Sections of issue 6 present; metrics are HTML text with plain names (D90, V100...)."""
    text = re.sub(r"<[^>]+>", " ", report_html)
    for heading in SECTION_HEADINGS:
        assert heading in text, heading
    for metric in ("D100", "D90", "V100", "V150", "V200", "D1cc stomach", "liver V5Gy", "minimal margin", "coverage",
                   "BED10", "limiting organ", "Y-90 activity"):
        assert re.search(rf">\s*{re.escape(metric)}\s*<", report_html), metric
    assert "ESTRO/EORTC 2020" in text  # oligometastatic definition shown
    assert "sha256:abc123" in text     # input hash in the basis
    assert "latplan-default" in text and "0.1.0" in text
    assert "SBRT estimate is not a plan" in text
    assert "TG-43 consensus tables within 0.5 %" in text  # engine verification status


def test_report_context_has_no_figure_errors(context):
    """Every picture of the synthetic proposal is drawn (a drawing failure would be listed)."""
    ctx = context
    assert ctx["figure_errors"] == []
    sec = ctx["sections"][0]
    assert sec.views is not None
    assert {s.modality for s in sec.simulated} == {"mwa", "ibt", "sbrt", "tare"}
    # simulated options follow the option ranking of plan.json
    assert [s.modality for s in sec.simulated] == ["mwa", "ibt", "sbrt", "tare"]
    # metric values are taken from the plan, not recomputed
    ibt = next(s for s in sec.simulated if s.modality == "ibt")
    assert any(m.name == "D90" and m.value == "24.5" and m.unit == "Gy" for m in ibt.metrics)
    # TACE has no simulation: its target territory (segment 6, from the measurements) is drawn once
    assert sec.territory is not None and "TACE" in sec.territory.caption
    # lesion_2 has no regional option: no territory
    assert ctx["sections"][1].territory is None


def test_contraindicated_options_listed_unranked(report_html):
    """Every option appears, contraindicated ones too (unranked, with their reasons)."""
    assert "Liver resection" in report_html
    assert "elig-contraindicated" in report_html


def _reading_grade(text: str) -> float:
    """Flesch–Kincaid grade (Kincaid et al. 1975): 0.39·words/sentence + 11.8·syllables/word − 15.59."""
    sentences = [s for s in re.split(r"[.!?]+", text) if s.strip()]
    words = re.findall(r"[A-Za-z]+", text)

    def syllables(w: str) -> int:
        w = w.lower()
        groups = re.findall(r"[aeiouy]+", w)
        n = len(groups)
        if w.endswith("e") and n > 1 and not w.endswith(("le", "ee")):
            n -= 1
        return max(n, 1)

    return 0.39 * len(words) / len(sentences) + 11.8 * sum(map(syllables, words)) / len(words) - 15.59


def test_patient_texts_reading_age_about_12():
    """Reference: Flesch–Kincaid grade; reading age ≈ 12 is US grade ≈ 6–7. The plain-language
    texts (what / how / stay / effects of every modality) must score ≤ grade 7 overall, and no
    single modality above grade 9 (medical names such as 'chemoembolisation' are unavoidable)."""
    mods = plain_language()["modalities"]
    all_text = " ".join(f"{m['what']} {m['how']} {m['stay']} {m['effects']}" for m in mods.values())
    assert _reading_grade(all_text) <= 7.0
    for code, m in mods.items():
        assert _reading_grade(f"{m['what']} {m['how']} {m['stay']} {m['effects']}") <= 9.0, code


def test_patient_html_option_grid(proposal):
    """Patient page: options of each spot (contraindicated ones only named as not a good fit), outcome
    numbers from plan.json in words, well-formed and self-contained."""
    html = render_patient_html(proposal)
    chk = check_html(html)
    assert chk.errors == [] and chk.stack == []
    assert all(ref.startswith("#") for _, ref in chk.refs)
    ctx = build_patient_context(proposal)
    spot1 = ctx["lesions"][0]
    assert spot1["options"][0]["name"] == plain_language()["modalities"]["mwa"]["name"]
    assert "Surgery (resection)" in spot1["not_suitable"]
    assert "for about 85 in 100 people, the treated tumour did not grow back after 2 y" in html
    assert "Does it fit?" in html


def test_write_reports_pdf_has_sections(tmp_path: Path, proposal):
    """report-appendix.pdf (the full sections since issue [M]; report.pdf is the summary) opens (pypdf)
    and its text holds the section headings and metric names; patient.pdf opens too; plan.json is
    valid JSON of the proposal."""
    from pypdf import PdfReader

    files = write_reports(proposal, tmp_path / "out", dpi=50)
    assert set(files) == {"plan_json", "report_html", "report_pdf", "appendix_html", "appendix_pdf", "patient_html",
                          "patient_pdf"}
    text = " ".join(p.extract_text() or "" for p in PdfReader(files["appendix_pdf"]).pages)
    text = re.sub(r"\s+", " ", text)
    for heading in SECTION_HEADINGS:
        assert heading in text, heading
    for metric in ("D90", "V100", "minimal margin"):
        assert metric in text
    ptext = " ".join(p.extract_text() or "" for p in PdfReader(files["patient_pdf"]).pages)
    assert "Your treatment choices" in ptext
    assert json.loads(files["plan_json"].read_text())["rule_set"]["name"] == "latplan-default"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder removed


def test_write_reports_is_atomic(tmp_path: Path, proposal, monkeypatch):
    """If the PDF step fails, nothing is written to OUT (no plan.json without its report) and the
    temporary folder is gone; the error is a ReportError naming the file."""
    def boom(html, path):
        raise ReportError(f"could not write the PDF {path.name}: simulated failure")

    monkeypatch.setattr(writer, "html_to_pdf", boom)
    monkeypatch.setattr(writer, "render_html", lambda proposal, dpi=110: "<!DOCTYPE html><html></html>")
    monkeypatch.setattr(writer, "render_reports",
                        lambda proposal, dpi=110: ("<!DOCTYPE html><html></html>", "<!DOCTYPE html><html></html>"))
    out = tmp_path / "out"
    with pytest.raises(ReportError, match=r"report\.pdf"):
        write_reports(proposal, out, dpi=40)
    assert list(out.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_pdf_refuses_external_resources(tmp_path: Path):
    """The PDF engine fetches nothing: an external image reference is an error, not a download."""
    html = '<!DOCTYPE html><html><body><img src="https://example.org/x.png" alt="x"></body></html>'
    with pytest.raises(ReportError):
        writer.html_to_pdf(html, tmp_path / "x.pdf")
