"""Child-Pugh, ALBI, BCLC 2022, Milan / up-to-7 and the planned-resection remnant (latplan.knowledge.liver).

References: Pugh RN et al. Br J Surg 1973;60:646-649 (point table); Johnson PJ et al. J Clin Oncol 2015;33:550-558
(ALBI formula and cut-offs −2.60 / −1.39); Reig M et al. J Hepatol 2022;76:681-693 (BCLC stages); Mazzaferro V et al.
NEJM 1996;334:693 (Milan) and Lancet Oncol 2009;10:35 (up-to-seven). Tolerance: exact points and stages; ALBI to 0.01
(hand calculation: bilirubin 1.0 mg/dl = 17.1 µmol/l, log10 17.1 = 1.2330 × 0.66 = 0.8138; albumin 40 g/l × −0.085
= −3.4; ALBI −2.586 → −2.59, grade 2; the sphere of diameter 20 + 2 × 10 mm = 33.51 ml).
"""

from __future__ import annotations

import pytest

from latplan.case import Patient
from latplan.knowledge.liver import albi, bclc_stage, child_pugh, milan, planned_remnant_percent, up_to_seven


def pt(**kw):
    return Patient(id="T", primary="hcc", **kw)


def test_child_pugh_class_a_b_c_from_components() -> None:
    a = child_pugh(pt(labs={"bilirubin_mg_dl": 1.0, "albumin_g_dl": 4.0, "inr": 1.1}, ascites_grade="none",
                      encephalopathy="none"))
    assert (a.score_low, a.score_high, a.computed_class) == (5, 5, "A")
    c = child_pugh(pt(labs={"bilirubin_mg_dl": 4.0, "albumin_g_dl": 2.5, "inr": 2.5}, ascites_grade="moderate_severe",
                      encephalopathy="grade_3_4"))
    assert (c.score_low, c.computed_class) == (15, "C")


def test_child_pugh_unknown_component_gives_range_and_recorded_wins() -> None:
    r = child_pugh(pt(labs={"bilirubin_mg_dl": 1.0, "albumin_g_dl": 4.0}, ascites_grade="none", encephalopathy="none"))
    assert (r.score_low, r.score_high) == (5, 7) and r.computed_class == "A-B" and r.effective_class is None
    rec = child_pugh(pt(child_pugh="B", child_pugh_score=7, labs={"bilirubin_mg_dl": 1.0, "albumin_g_dl": 4.0,
                                                                   "inr": 1.0}, ascites_grade="none",
                        encephalopathy="none"))
    assert rec.effective_class == "B" and rec.effective_score == 7 and rec.disagreement


def test_albi_hand_calculation() -> None:
    score, grade = albi(pt(labs={"bilirubin_mg_dl": 1.0, "albumin_g_dl": 4.0}))
    assert score == pytest.approx(-2.59, abs=0.01) and grade == 2
    assert albi(pt(labs={"bilirubin_mg_dl": 0.5, "albumin_g_dl": 4.5}))[1] == 1
    assert albi(pt()) == (None, None)


@pytest.mark.parametrize(("n", "d", "cp", "ecog", "vi", "eh", "stage"), [
    (1, [18], "A", 0, False, False, "0"), (1, [45], "A", 0, False, False, "A"), (3, [25, 20, 15], "A", 0, False, False, "A"),
    (4, [35, 30, 30, 20], "A", 0, False, False, "B"), (1, [30], "A", 1, False, False, "C"),
    (1, [30], "A", 0, True, False, "C"), (1, [30], "C", 0, False, False, "D"), (1, [30], "A", 3, False, False, "D"),
    (1, [18], None, 0, False, False, None)])
def test_bclc_2022_stages(n, d, cp, ecog, vi, eh, stage) -> None:
    assert bclc_stage(n, d, cp, ecog, vi, eh) == stage


def test_milan_and_up_to_seven() -> None:
    assert milan(1, [50], False, False) is True and milan(1, [51], False, False) is False
    assert milan(3, [30, 20, 10], False, False) is True and milan(4, [20, 20, 20, 20], False, False) is False
    assert up_to_seven(3, [40], False) is True and up_to_seven(4, [40], False) is False  # 4 + 3 = 7; 4 + 4 = 8
    assert milan(1, [30], None, False) is None


def test_planned_remnant_wedge_with_1cm_margin() -> None:
    assert planned_remnant_percent(1500.0, [20.0]) == pytest.approx(100 * (1500 - 33.51) / 1500, abs=0.05)
    assert planned_remnant_percent(None, [20.0]) is None
