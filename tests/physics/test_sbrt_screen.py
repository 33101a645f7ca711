"""SBRT screen: fall-off estimate, TG-101 checks by fraction number, limiting organ, BED reachable."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rad_case_helpers import make_case

from latplan.imaging.volume import Volume
from latplan.physics import sbrt_screen
from latplan.planning.sbrt import plan_sbrt


def test_falloff_model_values() -> None:
    """Reference: the model D = Rx·exp(−x/λ): at x = λ·ln 2 the dose is Rx/2; inside (x ≤ 0) Rx; exact."""
    lam = 9.0
    d = sbrt_screen.falloff_dose_gy(np.array([-3.0, 0.0, lam * math.log(2), 3 * lam]), 45.0, lam)
    np.testing.assert_allclose(d, [45.0, 45.0, 22.5, 45.0 * math.exp(-3)], rtol=1e-12)


def _slab_setup(gap_mm: float) -> tuple[Volume, dict[str, np.ndarray]]:
    h = 1.0
    n = 80
    aff = np.diag([h, h, h, 1.0])
    grid = Volume(np.zeros((n, n, n), bool), aff)
    p = grid.grid_mm()
    ptv = np.linalg.norm(p - 40, axis=-1) <= 10
    organ = p[..., 0] >= 50 + gap_mm  # slab beginning gap_mm beyond the PTV surface along +x
    return grid.with_array(ptv), {"stomach": organ}


def test_serial_constraint_scaling_and_limiting_organ() -> None:
    """Reference (hand computation): a slab starting x mm from the PTV gets a maximum of Rx·exp(−x/λ);
    with a max-point limit L the largest prescription is L·exp(x/λ) (±1 voxel of distance, 1 mm)."""
    ptv, organs = _slab_setup(4.0)
    cons = [{"organ": "stomach", "kind": "serial", "volume_ml": 10.0, "threshold_gy": 16.5, "max_point_gy": 22.2}]
    res = sbrt_screen.screen_sbrt(ptv, organs, cons, fractions=3, dose_per_fraction_gy=15.0, falloff_lambda_mm=9.0)
    est = res.organs["stomach"]["max_point_estimate_gy"]
    assert est == pytest.approx(45 * math.exp(-4.0 / 9.0), rel=0.12)
    assert res.feasible is False and res.limiting_organ == "stomach"
    assert res.max_dose_per_fraction_gy * 3 == pytest.approx(res.organs["stomach"]["max_prescription_gy"], rel=1e-2)
    assert res.bed_gy == pytest.approx(112.5)
    assert res.bed_reachable_gy < res.bed_gy
    assert "ESTIMATE" in res.caveat
    far = sbrt_screen.screen_sbrt(*_slab_setup(30.0), cons, fractions=3, dose_per_fraction_gy=15.0)
    assert far.feasible and far.limiting_organ is None and far.bed_reachable_gy >= far.bed_gy


def test_parallel_constraint() -> None:
    """Critical-volume constraint: the organ must keep ``spared_ml`` below the threshold."""
    ptv, _ = _slab_setup(0.0)
    liver = np.ones(ptv.shape, bool)  # 512 ml
    cons = [{"organ": "liver", "kind": "parallel", "spared_ml": 400.0, "threshold_gy": 19.2}]
    ok = sbrt_screen.screen_sbrt(ptv, {"liver": liver}, cons, fractions=3, dose_per_fraction_gy=15.0,
                                 exclude_from_parallel=ptv.array)
    assert ok.feasible
    cons[0]["spared_ml"] = 600.0
    bad = sbrt_screen.screen_sbrt(ptv, {"liver": liver}, cons, fractions=3, dose_per_fraction_gy=15.0)
    assert not bad.feasible and bad.limiting_organ == "liver"


def test_plan_sbrt_uses_tg101_by_fraction_number() -> None:
    """plan_sbrt: metric keys feasible/limiting_organ/bed_gy; 3 vs 5 fraction constraints differ;
    a stomach 3 mm from the lesion blocks 3 × 15 Gy; the result is labelled an estimate."""
    liver_ok = [{"organ": "stomach", "structures": ["stomach"], "kind": "serial", "volume_ml": 10.0,
                 "threshold_gy": 16.5, "max_point_gy": 22.2}]
    near = plan_sbrt(make_case(stomach_gap_mm=3.0), "lesion_1", fractions=3, dose_per_fraction_gy=15.0,
                     constraints=liver_ok)
    assert {"feasible", "limiting_organ", "bed_gy"} <= set(near.metrics)
    assert near.metrics["feasible"] is False and near.metrics["limiting_organ"] == "stomach"
    assert near.metrics["bed_gy"] == pytest.approx(112.5)
    assert near.dose is None and any("ESTIMATE" in c for c in near.caveats)
    far = plan_sbrt(make_case(stomach_gap_mm=30.0), "lesion_1", fractions=3, dose_per_fraction_gy=15.0,
                    constraints=liver_ok)
    assert far.metrics["feasible"] is True
    # default constraints come from the TG-101 knowledge table for the fraction number
    p5 = plan_sbrt(make_case(stomach_gap_mm=30.0), "lesion_1", fractions=5, dose_per_fraction_gy=10.0)
    stomach5 = next(c for c in p5.parameters["constraints"] if c["organ"] == "stomach")
    assert stomach5["threshold_gy"] == 18.0 and stomach5["max_point_gy"] == 32.0
    assert p5.metrics["bed_gy"] == pytest.approx(100.0)
