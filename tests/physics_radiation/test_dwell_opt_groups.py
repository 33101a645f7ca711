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
