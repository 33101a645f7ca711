"""Composite dose of several radiation plans (issue [K] item 1). References: superposition of physical dose
(exact), the independent TG-43 of ``independent_tg43.py`` for the dose itself (1 %), the LQ EQD2 with the
protraction factor (Dale 1985) for the cumulative sum, the '≤ 1/3 of normal liver ≥ 5 Gy' session rule and the
QUANTEC 30 Gy mean-liver EQD2 limit (Pan 2010) as encoded in knowledge/radiation/ibt.yaml."""

from __future__ import annotations

import numpy as np
import pytest
from independent_tg43 import PlainTG43
from rad_case_helpers import make_case

from latplan.planning.composite import CompositeDose, composite_dose
from latplan.planning.ibt import plan_ibt


@pytest.fixture(scope="module")
def setup():
    case = make_case(stomach_gap_mm=15.0)
    plan = plan_ibt(case, "lesion_1", n_catheters=1)
    return case, plan


def _normal_points(case) -> np.ndarray:
    """Normal liver (liver − lesion) voxel centres on the 2 mm case grid sub-sampled by 2 (4 mm)."""
    liver = case.mask_array("liver_segment_7") | case.mask_array("liver_segment_8")
    normal = (liver & ~case.mask_array("lesion_1"))[::2, ::2, ::2]
    return case.labels.index_to_mm((np.argwhere(normal) * 2).astype(float))


def _ref_dose(plan, pts) -> np.ndarray:
    pos = np.concatenate([np.asarray(a["dwell_positions_mm"]) for a in plan.applicators])
    ax = np.concatenate([np.repeat(np.asarray(a["direction"])[None], len(a["dwell_positions_mm"]), 0)
                         for a in plan.applicators])
    t = np.concatenate([np.asarray(a["dwell_times_s"]) for a in plan.applicators])
    return PlainTG43().dose_gy(pts, pos, ax, t, plan.parameters["sk_u"])


def test_single_plan_session_matches_independent_dose(setup) -> None:
    """One plan: session mean normal-liver dose and V5 equal the independent TG-43 on the same 4 mm points
    (mean within 1 %; V5 within 2 % — one point per 0.064 ml near the 5 Gy isodose)."""
    case, plan = setup
    r = composite_dose(case, [plan])
    assert isinstance(r, CompositeDose) and len(r.sessions) == 1 and not r.split
    d = _ref_dose(plan, _normal_points(case))
    s = r.sessions[0]
    assert s.normal_liver_mean_gy == pytest.approx(d.mean(), rel=0.01)
    assert s.normal_liver_v5gy_ml == pytest.approx(np.sum(d >= 5.0) * 0.064, rel=0.02)


def test_two_sessions_split_and_cumulative_eqd2(setup) -> None:
    """The same lesion plan twice in one session: superposition doubles the dose, V5 of the sum (reference:
    independent dose × 2) exceeds 1/3 of the normal liver → split into 2 sessions that each meet the limits;
    with no recovery the cumulative EQD2 of two identical sessions is exactly twice that of one (0.02 Gy: both
    values are rounded to 0.01 Gy),
    and one session's mean normal-liver EQD2 (α/β 2.5 Gy, G of the plan; LQ, Dale 1985) equals the independent
    dose's within 3 % (the mean of D² is dominated by points next to the catheters, where TG-43 data end)."""
    case, plan = setup
    d = _ref_dose(plan, _normal_points(case))
    assert np.mean(2 * d >= 5.0) > 1 / 3
    r = composite_dose(case, [plan, plan])
    assert r.split and len(r.sessions) == 2
    assert all(s.limits_met for s in r.sessions)
    unsplit = composite_dose(case, [plan, plan], split_sessions=False)
    assert unsplit.sessions[0].limits_met is False
    assert unsplit.sessions[0].normal_liver_v5gy_ml == pytest.approx(np.sum(2 * d >= 5.0) * 0.064, rel=0.02)
    assert any("V5Gy" in v for v in unsplit.sessions[0].violations)
    g = plan.metrics["protraction_g"]
    eqd2 = d * (1 + g * d / 2.5) / (1 + 2 / 2.5)
    one = composite_dose(case, [plan])
    assert r.cumulative.normal_liver_mean_eqd2_gy == pytest.approx(2 * one.cumulative.normal_liver_mean_eqd2_gy,
                                                                    abs=0.02)
    assert one.cumulative.normal_liver_mean_eqd2_gy == pytest.approx(eqd2.mean(), rel=0.03)
    assert r.cumulative.recovery_fraction == 0.0 and r.cumulative.interval_days == 28
    assert r.cumulative.limits_met
    out = r.as_dict()
    assert out["n_sessions"] == 2 and out["session_limits_met"] is True
