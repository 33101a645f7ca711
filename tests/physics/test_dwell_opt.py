"""Dwell-time LP: hard coverage, organ limits, modulation limit, infeasibility reporting."""

from __future__ import annotations

import numpy as np
import pytest

from latplan.errors import InvalidInputError
from latplan.physics import tg43
from latplan.physics.dwell_opt import OARConstraint, optimise_dwell_times


def _setup(oar_x_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Two parallel catheters through a 15 mm-radius sphere; an OAR slab at x ≥ ``oar_x_mm``."""
    g = np.arange(-30, 31, 2.5)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    r = np.linalg.norm(pts, axis=1)
    ctv = pts[r <= 15]
    oar = pts[pts[:, 0] >= oar_x_mm]
    zs = np.arange(-15, 15.1, 5.0)
    dw = np.concatenate([np.stack([np.full_like(zs, x), np.zeros_like(zs), zs], 1) for x in (-6.0, 6.0)])
    dirs = np.tile([0, 0, 1.0], (len(dw), 1))
    a_ctv = tg43.dose_matrix_gy_per_s(ctv, dw, dirs, 40700)
    a_oar = tg43.dose_matrix_gy_per_s(oar, dw, dirs, 40700)
    return a_ctv, a_oar, dw, 2.5**3 / 1000


def test_coverage_is_hard_and_objective_prefers_low_shell_dose() -> None:
    """Every sampled CTV point gets ≥ the prescription (1e-6 Gy tolerance); times ≥ 0."""
    a_ctv, _a_oar, _, _ = _setup(40.0)
    res = optimise_dwell_times(a_ctv, 20.0, max_modulation=None)
    assert res.feasible and res.limiting_constraint is None
    assert (a_ctv @ res.times_s).min() >= 20.0 - 1e-6
    assert np.all(res.times_s >= 0)
    assert res.ctv_min_dose_gy == pytest.approx(20.0, abs=1e-3)  # tight: the LP does not overdose the minimum


def test_modulation_limit_respected() -> None:
    """Every t_i ≤ k·mean(t) (k = 2)."""
    a_ctv, _, _, _ = _setup(40.0)
    res = optimise_dwell_times(a_ctv, 20.0, max_modulation=2.0)
    t = res.times_s
    assert t.max() <= 2.0 * t.mean() * (1 + 1e-6)
    assert (a_ctv @ t).min() >= 20 - 1e-6


def test_oar_d1cc_limit_met_when_possible() -> None:
    """An OAR 8 mm outside the CTV with D1cc ≤ 14 Gy: feasible, and D1cc on the points ≤ 14 Gy."""
    a_ctv, a_oar, _, pv = _setup(23.0)
    oar = OARConstraint("stomach", a_oar, 14.0, volume_ml=1.0, point_volume_ml=pv)
    res = optimise_dwell_times(a_ctv, 20.0, oars=[oar])
    assert res.feasible, res.message
    d = np.sort(a_oar @ res.times_s)[::-1]
    n = int(np.floor(1.0 / pv))
    assert d[n] <= 14.0 + 1e-6
    assert res.oar_dv_gy["stomach"] <= 14.0 + 1e-6
    assert (a_ctv @ res.times_s).min() >= 20.0 - 1e-3


def test_infeasible_names_the_limiting_organ() -> None:
    """An OAR overlapping the CTV edge with a 5 Gy limit cannot be met with coverage: limiting = that organ."""
    a_ctv, a_oar, _, pv = _setup(14.0)
    res = optimise_dwell_times(a_ctv, 20.0, oars=[OARConstraint("duodenum", a_oar, 5.0, 0.0, pv)])
    assert not res.feasible
    assert res.limiting_constraint == "duodenum"
    assert res.ctv_underdosed_percent > 0
    assert "duodenum" in res.message
    # as a penalty the organ limit is exceeded instead and named
    soft = optimise_dwell_times(a_ctv, 20.0, oars=[OARConstraint("duodenum", a_oar, 5.0, 0.0, pv, hard=False,
                                                                    weight=0.01)])
    assert not soft.feasible and soft.limiting_constraint == "duodenum" and soft.oar_excess_gy["duodenum"] > 0


def test_bad_inputs() -> None:
    with pytest.raises(InvalidInputError, match="prescription"):
        optimise_dwell_times(np.ones((3, 2)), 0.0)
    with pytest.raises(InvalidInputError, match="modulation"):
        optimise_dwell_times(np.ones((3, 2)), 10.0, max_modulation=0.5)
