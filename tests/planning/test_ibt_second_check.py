"""Independent second check of an IBT plan (issue [K] item 9): a separate, plain TG-43U1 implementation
(``independent_tg43.py``, Rivard 2004) recomputes the dose from the plan's dwell positions, directions and
times and must match the plan's dose grid within 1 % at every point farther than 5 mm from every source
(the usual tolerance of an independent brachytherapy dose check, e.g. AAPM TG-56 ±5 %; we ask for 1 %)."""

from __future__ import annotations

import numpy as np
import pytest
from independent_tg43 import PlainTG43
from rad_case_helpers import make_case

from latplan.planning.ibt import plan_ibt


@pytest.fixture(scope="module")
def plan():
    return plan_ibt(make_case(stomach_gap_mm=15.0), "lesion_1", target_margin_mm=10.0)


def test_dose_grid_matches_independent_tg43_beyond_5mm(plan) -> None:
    pos = np.concatenate([np.asarray(a["dwell_positions_mm"]) for a in plan.applicators])
    ax = np.concatenate([np.repeat(np.asarray(a["direction"])[None], len(a["dwell_positions_mm"]), 0)
                         for a in plan.applicators])
    t = np.concatenate([np.asarray(a["dwell_times_s"]) for a in plan.applicators])
    dose = plan.dose
    kji = np.argwhere(dose.array > 0.5)
    pts = dose.index_to_mm(kji.astype(float))
    far = np.min(np.linalg.norm(pts[:, None] - pos[None], axis=2), axis=1) > 5.0
    assert far.sum() > 1000
    ref = PlainTG43().dose_gy(pts[far], pos, ax, t, plan.parameters["sk_u"])
    got = dose.array[tuple(kji[far].T)].astype(float)
    assert np.max(np.abs(got - ref) / ref) <= 0.01
