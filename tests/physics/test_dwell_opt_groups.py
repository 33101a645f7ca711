"""Catheter time-share constraint of the dwell LP: every group carries ≥ s of the total time (linear constraint,
checked on a hand-made 3-dwell problem whose unconstrained optimum puts all time in one dwell)."""

from __future__ import annotations

import numpy as np
import pytest

from latplan.physics.dwell_opt import optimise_dwell_times


def test_min_group_share_holds_and_coverage_kept() -> None:
    """One target point; dwell 0 gives 2 Gy/s, dwells 1–2 (catheter 1) 1 Gy/s; normal-tissue cost equal per second.
    Unconstrained: all time on dwell 0 (t = 10 s for 20 Gy). With a 30 % share per catheter: catheter 1 carries
    ≥ 30 % of the total and the 20 Gy minimum still holds; the LP optimum is the analytic one (below)."""
    a = np.array([[2.0, 1.0, 1.0]])
    normal = np.array([[1.0, 1.0, 1.0]])
    free = optimise_dwell_times(a, 20.0, normal_matrix_gy_per_s=normal, max_modulation=None)
    assert free.times_s[0] == pytest.approx(10.0, abs=1e-6) and free.times_s[1:].sum() == pytest.approx(0.0, abs=1e-9)
    groups = np.array([0, 1, 1])
    res = optimise_dwell_times(a, 20.0, normal_matrix_gy_per_s=normal, max_modulation=None, dwell_groups=groups,
                               min_group_share=0.3)
    t = res.times_s
    assert t[1:].sum() >= 0.3 * t.sum() - 1e-9
    assert float((a @ t)[0]) >= 20.0 - 1e-6
    # analytic optimum: minimise T = t0 + u with 2 t0 + u = 20, u = 0.3 T → T = 20 / (2·0.7 + 0.3) = 11.765 s
    assert t.sum() == pytest.approx(20.0 / 1.7, rel=1e-6)


def test_v150_objective_analytic() -> None:
    """Objective-only soft penalty (V150 objective). Target point p0 gets 1 Gy/s from dwells A and B (Rx 20 Gy);
    CTV point p1 gets 4 (A) and 1 (B) Gy/s; normal cost 1 (A) and 2 (B) per s. Without the objective all time goes
    to A (t_A = 20 s, p1 = 80 Gy). With a penalty of 1/20 per Gy above 30 Gy at p1 the LP optimum is analytic:
    t_A + t_B = 20, 3 t_A + 20 ≤ 30 → t_A = 10/3 s, t_B = 50/3 s (penalty slope 3/20 > cost gain 1/20).
    The objective never makes the plan infeasible."""
    from latplan.physics.dwell_opt import OARConstraint

    a = np.array([[1.0, 1.0]])
    normal = np.array([[1.0, 2.0]])
    free = optimise_dwell_times(a, 20.0, normal_matrix_gy_per_s=normal, max_modulation=None)
    assert free.times_s == pytest.approx([20.0, 0.0], abs=1e-6)
    hot = OARConstraint("v150_objective", np.array([[4.0, 1.0]]), 30.0, 0.0, 0.0, hard=False, weight=1 / 20,
                        objective_only=True)
    res = optimise_dwell_times(a, 20.0, oars=[hot], normal_matrix_gy_per_s=normal, max_modulation=None)
    assert res.times_s == pytest.approx([10 / 3, 50 / 3], abs=1e-6)
    assert res.feasible and res.limiting_constraint is None and "v150_objective" not in res.oar_dv_gy
