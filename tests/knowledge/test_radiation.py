"""Radiation knowledge data: TG-101 rows, IBT defaults, SBRT local-control anchor (Chang 2011)."""

from __future__ import annotations

import pytest

from latplan.errors import InvalidInputError
from latplan.knowledge import radiation as rk


def test_tg101_rows_by_fraction() -> None:
    """Reference: AAPM TG-101 table (Benedict et al., Med Phys 2010;37:4078, doi 10.1118/1.3438081; 1-fx 11.2 Gy also in the TG-101-based table of Radiat Oncol 2011;6:146, PMC3247184; 3/5-fx values not re-checked): stomach < 10 cc 11.2/16.5/18 Gy for 1/3/5 fractions."""
    for fx, thr in ((1, 11.2), (3, 16.5), (5, 18.0)):
        rows = {(r["organ"], r["volume_ml"]): r for r in rk.tg101_constraints(fx)}
        assert rows[("stomach", 10)]["threshold_gy"] == thr
    liver = next(r for r in rk.tg101_constraints(3) if r["organ"] == "liver")
    assert liver["kind"] == "parallel" and liver["spared_ml"] == 700 and liver["threshold_gy"] == 19.2
    with pytest.raises(InvalidInputError, match="1, 3 and 5"):
        rk.tg101_constraints(4)


def test_ibt_defaults() -> None:
    """Walter 2021: 20 Gy colorectal, 15 Gy otherwise; Mohnike 2016: D1cc ≤ 14 Gy stomach/duodenum/bowel."""
    assert rk.ibt_prescription_gy("colorectal")[0] == 20.0
    assert rk.ibt_prescription_gy("hcc")[0] == 15.0
    assert rk.ibt_prescription_gy(None)[0] == 15.0
    lim = rk.ibt_oar_limits()
    assert {"stomach", "duodenum", "small_bowel"} <= set(lim)
    assert all(v["limit_gy"] == 14.0 and v["volume_ml"] == 1.0 for v in lim.values())
    lc = rk.ibt_local_control()
    assert any(e["value_percent"] == 87 and e["time_months"] == 6 for e in lc)
    assert all({"endpoint", "population", "evidence_level", "citation"} <= set(e) for e in lc)


def test_sbrt_local_control_anchor() -> None:
    """Reference: seed/Chang 2011 — BED10 79 Gy → 86/80/71 % at 12/18/24 months (tolerance 0.5 points);
    Klement 2017: 3 × 17 Gy colorectal → 90 % at 12 months; monotone in BED."""
    for months, expect in ((12, 86.0), (18, 80.0), (24, 71.0)):
        assert rk.sbrt_local_control(79.0, months)["local_control_percent"] == pytest.approx(expect, abs=0.5)
    assert rk.sbrt_local_control(137.7, 12)["local_control_percent"] == pytest.approx(90.0, abs=0.5)
    vals = [rk.sbrt_local_control(b, 12)["local_control_percent"] for b in (60, 80, 100, 120, 150)]
    assert vals == sorted(vals)
    est = rk.sbrt_local_control(40.0, 12)
    assert est["extrapolated"] is True and "Chang" in est["source"]


def test_planner_parameters_match_planner_signatures() -> None:
    """The modality layer passes these dicts by keyword: every key must be a planner parameter."""
    import inspect

    from latplan.planning.ibt import plan_ibt
    from latplan.planning.sbrt import plan_sbrt
    from latplan.planning.tare import plan_tare

    for mod, fn in (("ibt", plan_ibt), ("sbrt", plan_sbrt), ("tare", plan_tare)):
        params = rk.parameters_for(mod)
        assert params
        assert set(params) <= set(inspect.signature(fn).parameters), mod
    assert rk.sbrt_parameters()["fractions"] == 3 and rk.ibt_parameters()["oar_limits"]["stomach"]["limit_gy"] == 14.0
    assert rk.parameters_for("rfa") == {}
