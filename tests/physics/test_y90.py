"""Y-90 activity: MIRD single compartment and partition model against hand-computed values."""

from __future__ import annotations

import pytest
from rad_case_helpers import make_case

from latplan.errors import InvalidInputError
from latplan.physics import y90
from latplan.planning.tare import plan_tare


def test_mird_single_compartment() -> None:
    """Reference: A = D·M/50: 120 Gy to 1.5 kg → 3.6 GBq; with LSF 10 % → 4.0 GBq; inverse exact."""
    assert y90.mird_activity_gbq(120, 1.5) == pytest.approx(3.6)
    assert y90.mird_activity_gbq(120, 1.5, 0.1) == pytest.approx(4.0)
    assert y90.mird_dose_gy(4.0, 1.5, 0.1) == pytest.approx(120.0)
    with pytest.raises(InvalidInputError, match="lung shunt"):
        y90.mird_activity_gbq(120, 1.5, 1.2)


def test_partition_model_hand_computed() -> None:
    """Reference (hand computation from the partition formulas): M_T = 0.1 kg, M_N = 1.4 kg, TN = 4,
    LSF = 0.1, lung 1 kg. Per GBq: D_N = 50·0.9/(0.4 + 1.4) = 25 Gy, D_T = 100 Gy, D_L = 5 Gy.
    Normal-liver limit 70 Gy → 2.8 GBq; tumour goal 120 Gy → 1.2 GBq (limiting); lung 30 Gy → 6 GBq."""
    d = y90.partition_doses_gy(1.0, 0.1, 1.4, 4.0, 0.1)
    assert d == pytest.approx((100.0, 25.0, 5.0))
    r = y90.partition_activity(0.1, 1.4, 4.0, 0.1, normal_liver_limit_gy=70, lung_limit_gy=30, tumour_goal_gy=120)
    assert r.limiting == "tumour_goal" and r.activity_gbq == pytest.approx(1.2)
    r2 = y90.partition_activity(0.1, 1.4, 4.0, 0.1, normal_liver_limit_gy=70, lung_limit_gy=30)
    assert r2.limiting == "normal_liver_limit" and r2.activity_gbq == pytest.approx(2.8)
    r3 = y90.partition_activity(0.1, 1.4, 4.0, 0.4, normal_liver_limit_gy=70, lung_limit_gy=30)
    # LSF 0.4: D_N = 50·0.6/1.8 = 16.67 Gy/GBq → 4.2 GBq; D_L = 20 Gy/GBq → 1.5 GBq (lung limits)
    assert r3.limiting == "lung_limit" and r3.activity_gbq == pytest.approx(1.5) and r3.lung_dose_gy == pytest.approx(30)
    r4 = y90.partition_activity(0.1, 1.4, 4.0, 0.4, normal_liver_limit_gy=70, lung_limit_gy=30,
                                lung_cumulative_limit_gy=50, prior_lung_dose_gy=40)
    assert r4.activity_gbq == pytest.approx(0.5) and r4.lung_dose_gy == pytest.approx(10)


def test_plan_tare_perfused_volume_and_activity() -> None:
    """plan_tare: segments holding the lesion define the perfused volume; activity_gbq follows MIRD
    A = D·M/50 with M = perfused volume × 1.03 g/ml."""
    case = make_case()
    p = plan_tare(case, ["lesion_1"], method="mird", target_dose_gy=120.0, lung_shunt_fraction=0.0)
    m = p.metrics
    assert set(m["perfused_segments"]) <= {"7", "8"} and m["perfused_segments"]
    assert m["activity_gbq"] == pytest.approx(120 * m["perfused_volume_ml"] * 1.03e-3 / 50, rel=1e-3)
    part = plan_tare(case, "lesion_1", tumour_to_normal_ratio=3.0, lung_shunt_fraction=0.05)
    assert part.metrics["method"] == "partition" and part.metrics["activity_gbq"] > 0
    assert part.metrics["tumour_dose_gy"] == pytest.approx(3 * part.metrics["normal_liver_dose_gy"], rel=1e-2)
