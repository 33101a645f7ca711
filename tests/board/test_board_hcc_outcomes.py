"""Issue [I] item 7: HCC outcome figures are shown for HCC patients — and only there — with the cited values.

Independent references (values copied from the abstracts, exact):
- SURF final analysis (Kawaguchi Y, Hasegawa K, et al. J Clin Oncol 2025, doi 10.1200/JCO-24-02030; abstract,
  Results): 5-year overall survival 74.6 % after surgery and 70.4 % after RFA for HCC ≤ 3 cm, ≤ 3 nodules,
  Child-Pugh ≤ 7 (eligibility: Takayama T et al. Liver Cancer 2022;11:209-218, abstract, Methods).
- Llovet JM et al. Lancet 2002;359:1734-1739 (abstract): chemoembolisation survival 82 % at 1 year, 63 % at 2.
- Lencioni R et al. Hepatology 2016;64:106-116 (abstract): Lipiodol TACE OS 70.3 / 51.8 / 40.4 / 32.4 % at 1/2/3/5 y.
- Lewandowski RJ et al. Radiology 2018;287(3) (abstract): radiation segmentectomy of solitary HCC ≤ 5 cm, 72 % without
  target lesion progression at 5 years, survival 57 % at 5 years (whole cohort).
The comparability rule (figures side by side only at the same endpoint and time point) is issue [I] item 12.
"""

from __future__ import annotations

from latplan.board import plan_case
from latplan.board.option_grid import option_grid
from latplan.knowledge.profiles import load_outcomes
from tests.board.test_board_guideline_vignettes import hcc, lesions_of

#: figures from colorectal populations (Wang 2013, Chang 2011, Edhemovic 2014, the 3-5 cm CRC review)
COLORECTAL_IDS = ("LC-ABL-MARGIN", "LC-SBRT-BED79", "CR-ECT-1", "CR-ECT-5", "LC-CRC-")


def _figures(prop, lid="lesion_1") -> dict[str, dict[str, float]]:
    return {m: {f["figure_id"]: f["value_percent"] for f in o["local_control"]["figures"]}
            for m, o in lesions_of(prop)[lid].items()}


def _bclc0(vignette, **kw):
    return plan_case(None, measurements=vignette.measurements(vignette.lesion(d=18)), patient=hcc(vignette, **kw))


def test_hcc_bclc0_shows_surf_survival_side_by_side_and_no_colorectal_figure(vignette) -> None:
    prop = _bclc0(vignette)
    figs = _figures(prop)
    assert figs["resection"] == {"OS-HCC-SURF-RES-60": 74.6}  # SURF, JCO 2025 abstract
    assert figs["rfa"] == {"OS-HCC-SURF-RFA-60": 70.4}
    assert not any(fid.startswith(COLORECTAL_IDS) for per in figs.values() for fid in per)
    opts = lesions_of(prop)["lesion_1"]
    for m, value in (("resection", 74.6), ("rfa", 70.4)):
        lc = opts[m]["local_control"]
        assert (lc["value_percent"], lc["endpoint"], lc["time_point_months"], lc["comparable"]) == \
            (value, "overall_survival", 60.0, True)
        assert "abstract" in lc["source_location"] and "SURF" in lc["citation"]
        # survival is shown to the board, it is not the local-control criterion of the ranking
        assert opts[m]["local_control_basis"].startswith("ordinal class")
    assert opts["ibt"]["local_control"]["comparable"] is False  # 6-month local control: another endpoint
    assert not opts["tace"]["local_control"]["figures"]  # TACE figures are BCLC B figures
    # radiation segmentectomy: local control only (its survival figure is not set beside SURF's randomised arms)
    assert figs["tare"] == {"LC-HCC-TARE-RADSEG-60": 72}
    assert opts["tare"]["local_control"]["comparable"] is False  # no other option has local control at 5 years
    rows = {r["modality"]: r for r in option_grid(prop.plan_json["lesions"])[0]["rows"]}
    assert rows["rfa"]["works"] == "In studies, about 70 in 100 people treated this way were alive after 5 years."
    assert "cannot be compared" in rows["ibt"]["works"]


def test_surf_figures_not_shown_outside_its_population(vignette) -> None:
    """Colorectal patient (another disease), and HCC > 3 cm (outside SURF's ≤ 3 cm): no SURF figure; the 40 mm
    single HCC gets the radiation-segmentectomy figures of its ≤ 5 cm cohort (Lewandowski 2018)."""
    crc = plan_case(None, measurements=vignette.measurements(vignette.lesion(d=18)), patient=vignette.patient())
    big = plan_case(None, measurements=vignette.measurements(vignette.lesion(d=40)), patient=hcc(vignette))
    assert not any("HCC" in fid for per in _figures(crc).values() for fid in per)
    assert not any(fid.startswith("OS-HCC-SURF") for per in _figures(big).values() for fid in per)
    assert _figures(big)["tare"] == {"LC-HCC-TARE-RADSEG-60": 72, "OS-HCC-TARE-RADSEG-60": 57}


def test_hcc_bclc_b_tace_survival_figures_not_compared_alone(vignette) -> None:
    les = [vignette.lesion(f"lesion_{i}", d=d, segments=(s,)) for i, (s, d) in
           enumerate((("5", 45), ("6", 35), ("7", 40), ("8", 38)), start=1)]
    prop = plan_case(None, measurements=vignette.measurements(*les, flr_percent=30), patient=hcc(vignette))
    assert prop.plan_json["patient"]["board_context"]["bclc"]["in_force"] == "B"
    figs = _figures(prop)
    assert figs["tace"] == {"OS-HCC-TACE-LLOVET-12": 82, "OS-HCC-TACE-LLOVET-24": 63,  # Llovet 2002 abstract
                            "OS-HCC-TACE-LENCIONI-12": 70.3, "OS-HCC-TACE-LENCIONI-24": 51.8,  # Lencioni 2016
                            "OS-HCC-TACE-LENCIONI-36": 40.4, "OS-HCC-TACE-LENCIONI-60": 32.4}
    tace = lesions_of(prop)["lesion_1"]["tace"]["local_control"]
    assert tace["comparable"] is False  # no other option has survival at the same time point
    assert not any(fid.startswith(COLORECTAL_IDS) for per in figs.values() for fid in per)


def test_every_hcc_figure_says_where_its_number_stands() -> None:
    hcc_figs = [f for f in load_outcomes() if "-HCC-" in f.id]
    assert len(hcc_figs) == 10
    for f in hcc_figs:
        assert f.where and f.endpoint in ("overall_survival", "local_control") and f.time_point_months
        assert f"{f.value_percent:g} %" in f.citation.text  # the cited abstract's number, recorded with the source
