"""[I] limit: the patient sheet says when a spot is cut by the edge of the scan (``truncated_by_fov`` in the
measurements), as the clinician report does on page 1 (report.summary.truncation_alerts)."""

from __future__ import annotations

import copy
import re

from report_builders import make_proposal

from latplan.report.context import build_patient_context, plain_language
from latplan.report.writer import render_patient_html


def _truncated_proposal():
    """The report builders' proposal with its first lesion cut by the edge of the scan."""
    p = make_proposal()
    p.measurements = copy.deepcopy(p.measurements)
    first = p.measurements["lesions"][0]
    first["truncated_by_fov"] = True
    first["truncated_by_fov_faces"] = ["cranial"]
    return p, str(first["id"])


def _flesch_kincaid_grade(text: str) -> float:
    """Flesch–Kincaid grade (Kincaid et al. 1975): 0.39·words/sentence + 11.8·syllables/word − 15.59,
    syllables as vowel groups less a silent final e."""
    sentences = [s for s in re.split(r"[.!?]+", text) if s.strip()]
    words = re.findall(r"[A-Za-z]+", text)
    syl = sum(max(len(re.findall(r"[aeiouy]+", w.lower())) - (w.lower().endswith("e") and
                                                            not w.lower().endswith(("le", "ee"))), 1) for w in words)
    return 0.39 * len(words) / len(sentences) + 11.8 * syl / len(words) - 15.59


def test_patient_sheet_says_a_spot_is_cut_by_the_edge_of_the_scan() -> None:
    """Reference: the clinician report's page-1 rule for ``truncated_by_fov`` (issue 13: its size is a lower
    bound and every option is conditional until the whole lesion is imaged). The patient sheet says it beside
    that spot only, in plain language (the text of data/plain_language.yaml), and gives the size as "at least"."""
    p, lid = _truncated_proposal()
    ctx = build_patient_context(p)
    text = " ".join(str(plain_language()["truncated_lesion"]).split())
    spots = {s["id"]: s for s in ctx["lesions"]}
    assert spots[lid]["truncated"] == text
    assert all(s["truncated"] is None for k, s in spots.items() if k != lid)
    html = " ".join(render_patient_html(p).split())
    assert html.count("Part of this spot was not on the scan.") == 1
    assert text in html
    assert spots[lid]["size_cm"] is not None
    assert f"(at least {spots[lid]['size_cm']} cm across)" in html


def test_patient_sheet_without_a_cut_lesion_says_nothing_of_it() -> None:
    """Reference: the same rule, the negative case: with no lesion marked ``truncated_by_fov`` the sheet
    carries no such box and the sizes read "about"."""
    p = make_proposal()
    html = render_patient_html(p)
    assert "not on the scan" not in html
    assert all(s["truncated"] is None and s["size_word"] == "about" for s in build_patient_context(p)["lesions"])


def test_truncated_text_reads_at_the_patient_sheets_level() -> None:
    """Reference: the patient sheet's reading level (reading age ≈ 12, Flesch–Kincaid grade ≤ 7 for the sheet's
    texts, Kincaid et al. 1975); the cut-lesion text is held to the same grade ≤ 7 and names the next step
    (a scan of the whole spot)."""
    text = str(plain_language()["truncated_lesion"])
    assert _flesch_kincaid_grade(text) <= 7.0
    assert "whole spot" in text
