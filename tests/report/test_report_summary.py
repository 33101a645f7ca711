"""The board summary first (issue [M] parts 1–2): page 1, page limits, the appendix.

References: the issue's limits (single-lesion main report ≤ 8 pages, four lesions ≤ 16 pages),
counted by pypdf (another library) on the PDF WeasyPrint writes; texts read back from the PDF.
The proposals are the hand-made ones of report_builders.py (one and four lesions, twelve options
each, as many as the board assesses), so the numbers on page 1 are known in advance.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from report_builders import make_case, make_measurements, make_plan_json, make_plans

from latplan.case import Case, LabelTable
from latplan.report.context import metric_rows
from latplan.report.summary import build_summary, key_figure, summary_option, top_tier_options
from latplan.report.writer import html_to_pdf, render_reports
from tests.report.test_report_html import SECTION_HEADINGS, check_html

ALL_MODALITIES = ("mwa", "ibt", "sbrt", "tare", "tace", "resection", "rfa", "cryo", "ect", "ire", "hifu", "hai")
_MISSING = [f"patient.history.item_{i}" for i in range(11)]  # the 11-item list that repeated per option


def _pdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader

    # WeasyPrint hyphenates narrow cells ("le‐ sion"): join the hyphenated words back
    return [re.sub(r"\s+", " ", re.sub("\u2010\\s*", "", p.extract_text() or "")) for p in PdfReader(path).pages]


def _full_options(plan_json: dict) -> None:
    """Twelve options per lesion, each with the 11 unassessable inputs, as real plans carry."""
    for le in plan_json["lesions"]:
        have = {o["modality"] for o in le["options"]}
        template = le["options"][0]
        for code in (m for m in ALL_MODALITIES if m not in have):
            o = copy.deepcopy(template)
            o.update(modality=code, eligibility="eligible", rank=len(le["options"]) + 1)
            le["options"].append(o)
        for o in le["options"]:
            o["cannot_assess"] = [{"rule_id": "R-HIST", "text": "cannot assess: history rule", "missing": _MISSING}]


def _four_lesion_proposal() -> SimpleNamespace:
    base = make_case()
    labels = np.asarray(base.labels.array).copy()
    xyz = base.image.grid_mm()
    mapping = {1: "liver", 2: "lesion_1", 3: "portal_vein", 4: "stomach", 5: "liver_segment_6", 6: "liver_segment_7",
               7: "lesion_2", 8: "lesion_3", 9: "lesion_4"}
    for value, centre in ((8, (-40.0, 10.0, -10.0)), (9, (-10.0, 20.0, 10.0))):
        labels[np.linalg.norm(xyz - np.array(centre), axis=-1) <= 5.0] = value
    case = Case(patient=base.patient, image=base.image, labels=base.labels.with_array(labels),
                label_table=LabelTable.from_mapping(mapping), input_hashes=base.input_hashes)
    plans = make_plans(case)
    for lid in ("lesion_2", "lesion_3", "lesion_4"):
        for (plid, mod), plan in list(plans.items()):
            if plid == "lesion_1":
                plans[(lid, mod)] = copy.copy(plan)
                plans[(lid, mod)].lesion_id = lid
    pj = make_plan_json()
    l1 = pj["lesions"][0]
    pj["lesions"] = [dict(copy.deepcopy(l1), id=lid) for lid in ("lesion_1", "lesion_2", "lesion_3", "lesion_4")]
    _full_options(pj)
    meas = make_measurements()
    meas["lesions"] += [dict(meas["lesions"][1], id="lesion_3"), dict(meas["lesions"][1], id="lesion_4")]
    meas["patient"]["lesion_count"] = 4
    return SimpleNamespace(case=case, measurements=meas, plan_json=pj, plans=plans)


def _one_lesion_proposal() -> SimpleNamespace:
    case = make_case()
    pj = make_plan_json()
    pj["lesions"] = pj["lesions"][:1]
    pj["strategies"] = [{"rank": 1, "steps": [{"lesion_ids": ["lesion_1"], "modality": "mwa", "order": 1}],
                         "rationale": "small lesion away from vessels", "evidence_level": "2b",
                         "title": "Microwave ablation of lesion 1"},
                        {"rank": 2, "steps": [{"lesion_ids": ["lesion_1"], "modality": "ibt", "order": 1}],
                         "rationale": "no margin limit next to vessels", "evidence_level": "3"}]
    _full_options(pj)
    meas = make_measurements()
    meas["lesions"] = meas["lesions"][:1]
    meas["patient"]["lesion_count"] = 1
    plans = {k: v for k, v in make_plans(case).items() if k[0] == "lesion_1"}
    return SimpleNamespace(case=case, measurements=meas, plan_json=pj, plans=plans)


def _rendered(prop: SimpleNamespace, folder: Path) -> tuple[SimpleNamespace, str, list[str]]:
    """(proposal, main report HTML at 60 dpi, text of each page of its PDF written into ``folder``)."""
    html, _appendix = render_reports(prop, dpi=60)
    pdf = folder / "report.pdf"
    html_to_pdf(html, pdf)
    return prop, html, _pdf_pages(pdf)


@pytest.fixture(scope="module")
def one_lesion(tmp_path_factory) -> tuple[SimpleNamespace, str, list[str]]:
    return _rendered(_one_lesion_proposal(), tmp_path_factory.mktemp("one"))


@pytest.fixture(scope="module")
def four_lesions(tmp_path_factory) -> tuple[SimpleNamespace, str, list[str]]:
    return _rendered(_four_lesion_proposal(), tmp_path_factory.mktemp("four"))


def test_single_lesion_main_report_at_most_8_pages(one_lesion):
    _, html, pages = one_lesion
    assert 1 <= len(pages) <= 8
    assert check_html(html).errors == []
    text = " ".join(pages)
    for heading in SECTION_HEADINGS:  # the sections of issue 6 stay in report.pdf, in short
        assert heading in text, heading


@pytest.mark.slow  # end-to-end: the 4-lesion PDF (≈ 6 s)
def test_four_lesions_main_report_at_most_16_pages(four_lesions):
    _, _html, pages = four_lesions
    assert 1 <= len(pages) <= 16
    for lid in ("lesion 1", "lesion 2", "lesion 3", "lesion 4"):
        assert f"Lesion: {lid}" in " ".join(pages)


def test_page_one_names_patient_status_top_strategy_and_unknowns(one_lesion):
    """Page 1: patient line, disease status, the top strategy's title and step, best-tier options with
    their simulated figure (from make_plans: MWA margin 2 mm, coverage 100 %; IBT D90 24.5 Gy), unknowns."""
    _, _, pages = one_lesion
    p1 = pages[0]
    assert "Patient RPT-001" in p1 and "colorectal" in p1
    assert "Disease status" in p1 and "ESTRO/EORTC 2020" in p1
    assert "Microwave ablation of lesion 1" in p1       # rank-1 strategy, by name
    assert "Top strategies" in p1 and "small lesion away from vessels" in p1
    assert "margin 2 mm" in p1 and "coverage 100 %" in p1
    assert "D90 24.5 Gy" in p1 and "D100 19.1 Gy" in p1
    assert "Unknown, and what it would change" in p1
    # the 11 missing inputs of one rule are listed once on page 1, not once per option
    assert p1.count("history.item 0,") == 1


def test_every_option_keeps_its_evidence_level_and_radiation_top_tier_shows_dvh_with_d90(one_lesion):
    prop, html, pages = one_lesion
    text = " ".join(pages)
    for o in prop.plan_json["lesions"][0]["options"]:
        assert o["evidence_level"] in text
    # IBT is eligible (best tier, with MWA): its DVH with the D90 mark is in the main report
    assert 'alt="dose–volume histogram: dvh"' in html
    assert "D90 (24.5 Gy)" in text


def test_unknowns_listed_once_with_the_options_they_touch():
    prop = _one_lesion_proposal()
    s = build_summary(prop)
    names = [u.what for u in s["all_unknowns"]]
    assert len(names) == len(set(names))
    item = next(u for u in s["all_unknowns"] if u.what.startswith("history.item 0,"))
    assert item.what.count("history.item") == 11
    assert len(item.options) == 12 and item.scope == "12 options"  # every option of the lesion, counted once


def test_top_tier_uses_board_tier_when_present():
    """plan.json ``tier`` (board helper) wins over eligibility; contraindicated never shown."""
    opts = [{"modality": "mwa", "eligibility": "eligible", "tier": "conditional", "rank": 1},
            {"modality": "ibt", "eligibility": "eligible", "tier": "indicated", "rank": 2},
            {"modality": "sbrt", "eligibility": "contraindicated", "rank": None}]
    assert [o["modality"] for o in top_tier_options(opts)] == ["ibt"]
    assert top_tier_options([opts[2]]) == []


def test_key_figures_from_the_contract_keys():
    """The cross-helper metric keys (CONTRACT.md) as text: margin range, coverage, D100/D90, BED10."""
    abl = key_figure("mwa", {"min_margin_mm": 3.0, "min_margin_range_mm": [1.5, 4.25], "coverage_percent": 99.5})
    assert abl == "margin 1.5–4.25 mm (nominal 3 mm); coverage 99.5 %"
    rad = key_figure("ibt", {"d100_gy": 15.0, "d90_gy": 21.0, "bed10_gy": 65.1,
                             "margin_dose_gy": {"5": {"d100_gy": 9.0, "d90_gy": 12.5}}})
    assert rad == "D100 15 Gy; D90 21 Gy; BED10 65.1 Gy; D90 at +5 mm 12.5 Gy"


def test_key_figure_never_reads_an_unsegmented_organ_as_spared():
    """Round 2 real-case check (TotalSegmentator CT cropped at the dome, heart not segmented): page 1 said
    "screen: constraints met" while the heart's limit had not been checked. The SBRT/IBT metric
    ``unsegmented_organs`` is named in the key figure and the metric row, and "met" is limited to the
    segmented organs (reference: the plan's own metric; no organ left unnamed)."""
    sbrt = key_figure("sbrt", {"feasible": True, "unsegmented_organs": ["heart", "bile_duct"]})
    assert sbrt == "screen: constraints met by the segmented organs; not checked (not segmented): heart, bile duct"
    assert key_figure("sbrt", {"feasible": True, "unsegmented_organs": []}) == "screen: constraints met"
    ibt = key_figure("ibt", {"d90_gy": 21.0, "unsegmented_organs": ["stomach"]})
    assert ibt == "D90 21 Gy; not checked (not segmented): stomach"
    # ablation: the margin stays the key figure (unsegmented organs there are "verify clearance" conditions)
    assert key_figure("mwa", {"min_margin_mm": 6.0, "unsegmented_organs": ["heart"]}) == "margin 6 mm"
    rows = {r.name: r for r in metric_rows({"feasible": True, "unsegmented_organs": ["heart"]}, "sbrt")}
    assert "not checked (not segmented): heart" in rows["SBRT feasible"].meaning


def test_key_figure_shows_the_zone_volume_band():
    """[J] zone_volume_range_ml (physics.zone_uncertainty, helper D) beside the nominal zone volume."""
    abl = key_figure("cryo", {"min_margin_mm": 6.0, "coverage_percent": 100.0, "zone_volume_ml": 22.0,
                              "zone_volume_range_ml": [17.0, 27.0]})
    assert abl == "margin 6 mm; coverage 100 %; zone 22 ml (17–27 ml)"
    assert key_figure("mwa", {"zone_volume_ml": 22.0}) == "zone 22 ml"


def test_decisive_conditions_first_on_page_one():
    """Issue 13: page 1 shows one condition per option — the lesion cut by the scan, a failed simulation and the
    RAS status come before the clearances to verify (plan.json keeps its own order)."""
    opt = {"modality": "mwa", "rank": 1, "tier": "indicated", "conditions": [
        "conditional — verify clearance of bile_duct on imaging",
        "RAS status would change the target (5 mm wild-type, 10 mm mutant; 5 mm: reaches, 10 mm: misses)",
        "conditional — the lesion is cut by the edge of the scan: its size and margins are lower bounds — image the "
        "whole lesion before deciding"]}
    s = summary_option(opt, None, max_conditions=2)
    assert s.conditions[0].startswith("conditional — the lesion is cut by the edge of the scan")
    assert s.conditions[1].startswith("RAS status would change the target")
    assert s.more_conditions == 1
    assert opt["conditions"][0].startswith("conditional — verify clearance")


def test_conditional_standard_of_care_says_so_on_page_one():
    """An indicated tier that rests on unrecorded clinical fields (rule ``on_unknown: conditional``, docs/knowledge.md)
    reads "indicated if confirmed" and its condition is the one page 1 shows, before the RAS and clearance lines; a
    confirmed standard of care keeps the plain "indicated"."""
    opt = {"modality": "resection", "rank": 1, "tier": "indicated", "standard_of_care_conditional": True,
           "conditions": ["conditional — verify clearance of bile_duct on imaging",
                          "RAS status would change the target (5 mm wild-type, 10 mm mutant; 5 mm: reaches, 10 mm: misses)",
                          "standard of care only if confirmed (not recorded: ecog, extrahepatic_disease) — RES-STANDARD-CRC: "
                          "Resectable colorectal liver metastases in a fit patient: resection is the standard of care."]}
    s = summary_option(opt, None, max_conditions=1)
    assert s.tier_text == "indicated if confirmed"
    assert s.conditions[0].startswith("standard of care only if confirmed (not recorded: ecog")
    assert summary_option({**opt, "standard_of_care_conditional": False}, None).tier_text == "indicated"


def test_badges_wrap_inside_their_column():
    """'relative contraindication' printed over the next column because the badge did not wrap:
    the badge CSS allows wrapping and never exceeds its cell (max-width 100 %)."""
    css = (Path(__file__).parents[2] / "src/latplan/report/templates/report.css").read_text(encoding="utf-8")
    rule = re.search(r"\.elig, \.badge \{([^}]*)\}", css)
    assert rule is not None
    assert "white-space: normal" in rule.group(1) and "max-width: 100%" in rule.group(1)
    assert "nowrap" not in rule.group(1)
