"""MWA physics: latent heat of vaporisation (energy conserved, physical peak temperature), the
ex vivo chart calibration with perfusion off and its leave-one-out check, in vivo with perfusion."""

from __future__ import annotations

import numpy as np
import pytest

from latplan.physics import bioheat as bh
from latplan.physics.bioheat.kernels import _enthalpy_to_t

#: issue goal: ≥ 28 of the 33 rows the former calibration did not see (see the test's docstring)
LOO_UNSEEN_MIN = 28
LOO_ALL_MIN = 31
LIVER = bh.default_tissues()["liver"]
LIVER_EX_VIVO = bh.Tissue("liver_ex_vivo", LIVER.density_kg_m3, LIVER.heat_capacity_j_kg_k,
                          LIVER.conductivity_w_m_k, 0.0)


def test_mwa_enthalpy_map_is_the_apparent_heat_capacity_and_exact_inverse() -> None:
    """Reference: the enthalpy method (Abraham & Sparrow, Int J Heat Mass Transfer 2007;50:2537) —
    e(T) = T + cap·clamp((T − t_lo)/(t_hi − t_lo), 0, 1) in K-equivalents; between 99 and 100 °C the
    slope is the apparent heat capacity 1 + cap/(t_hi − t_lo) (Yang et al., IEEE TBME 2007;54:1382).
    The kernel's map must be its exact inverse (1e-4 K) on both sides and inside the range."""
    cap, t_lo, t_hi = 446.0, 99.0, 100.0
    f = _enthalpy_to_t.py_func
    for t in (37.0, 98.9, 99.0, 99.3, 99.99, 100.0, 100.5, 180.0):
        e = t + cap * min(max((t - t_lo) / (t_hi - t_lo), 0.0), 1.0)
        assert f(e, cap, t_lo, t_hi) == pytest.approx(t, abs=1e-4)
    # apparent heat capacity inside the range: Δe / ΔT = 1 + cap / 1 K
    assert (f(99.0 + 0.6 * (1 + cap), cap, t_lo, t_hi) - 99.0) == pytest.approx(0.6, rel=1e-9)
    # no latent capacity: the identity (no phase change)
    assert f(123.4, 0.0, t_lo, t_hi) == pytest.approx(123.4)


def _vaporising_run(dried: float | None, vap: float | None = 100.0) -> tuple[bh.BioheatResult, float]:
    h, n = 1.5, 61
    c = (n // 2) * h
    q = bh.mwa_source((n, n, n), (h, h, h), (c, c, c), (1.0, 0.0, 0.0), penetration_mm=15.0, elongation=1.1)
    r = bh.simulate_heating(np.zeros((n, n, n), np.uint8), [LIVER_EX_VIVO], (h, h, h), 180.0, source_w_m3_per_w=q,
                            power_w=30.0, vaporisation_c=vap, dried_sar_fraction=dried)
    sensible = float(np.sum(r.temperature_c.astype(np.float64) - 37.0)) * LIVER.rho_c * (h * 1e-3) ** 3
    return r, sensible


def test_mwa_vaporisation_conserves_energy_and_peak_stays_physical() -> None:
    """Reference: first law, and the published peak of an MWA model with vaporisation (Schramm et al.,
    Open Biomed Eng J 2007;1:47: 177 °C maximum at 75 W / 6 min, dipole antenna). 30 W absorbed for
    180 s in ex vivo liver (no perfusion), 90 mm box at 1.5 mm: deposited energy = Δ(sensible +
    latent) enthalpy + what conducted out through the box faces, within 0.5 % (the faces rise
    < 0.1 K: the remainder is that boundary loss, not deleted energy); latent heat takes ≥ 5 % of
    it (vaporisation happens); the peak stays ≤ 200 °C. Without the latent heat and dehydration the
    same run peaks above 300 °C (the artefact the former 100 °C cap hid by deleting 37–55 % of the
    energy)."""
    r, sensible = _vaporising_run(0.0)
    deposited = r.info["energy_j"]
    assert deposited == pytest.approx(30.0 * 180.0, rel=1e-5)
    assert (sensible + r.info["latent_j"]) == pytest.approx(deposited, rel=0.005)
    assert r.info["latent_j"] >= 0.05 * deposited
    faces = np.concatenate([r.temperature_c[1].ravel(), r.temperature_c[-2].ravel()])
    assert faces.max() - 37.0 < 0.1
    assert r.peak_temperature_c.max() <= 200.0
    raw, raw_sensible = _vaporising_run(None, None)
    assert raw.peak_temperature_c.max() > 300.0
    assert raw_sensible == pytest.approx(deposited, rel=0.005)


def test_mwa_leave_one_out_chart_rows_within_20_percent() -> None:
    """Reference: the vendor charts (Covidien Emprint-class, HS Amica, AngioDynamics Acculis; ex vivo
    / animal liver; data file), tolerance ±20 % in volume. Every unflagged row (36: the 33 rows the
    former one-row calibration did not see, plus its 3 calibration rows) is predicted by a fit of
    (η, β, a) on the device's other rows, perfusion off, latent heat, cooled shaft; the model's zone
    volume is the chart's own definition, π/6 × its length and two widths. Issue goal: ≥ 28 of the
    33 (met; the misses are named in the assertion message). Every row within a factor 2. Cached
    version: the fit runs on the simulated volume table (data file mwa_calibration_table.json);
    benchmarks/bench_bioheat.py rebuilds the table from the engine and re-simulates every row in 3-D."""
    former_cal = set(bh.MWA_CALIBRATION_ROWS.items())
    checks = [c for d in bh.MWA_DEVICES for c in bh.leave_one_out(d)]
    assert len(checks) == 36
    within = [abs(c.diff_percent) <= 20.0 for c in checks]
    unseen = [w for c, w in zip(checks, within, strict=True) if (c.device, (c.power_w, c.time_s)) not in former_cal]
    misses = [f"{c.device} {c.power_w:g} W / {c.time_s:g} s: {c.diff_percent:+.0f} %"
              for c, w in zip(checks, within, strict=True) if not w]
    assert len(unseen) == 33
    assert sum(unseen) >= LOO_UNSEEN_MIN, (f"{sum(unseen)}/33 unseen rows within ±20 %; misses: " + "; ".join(misses))
    assert sum(within) >= LOO_ALL_MIN, misses
    assert all(0.5 < c.model_ml / c.chart_ml < 2.0 for c in checks)


def test_mwa_chart_volume_is_the_ellipsoid_of_the_axes() -> None:
    """Reference: the charts' volume definition (data file header: V = π/6·L·W·D). A voxelised
    ellipsoid with semi-axes 14 × 10 × 8 mm on a 1 mm grid: chart_volume_ml = π/6 · (28+1)(20+1)(16+1)
    mm³ (extent = span + one voxel, grid.zone_dimensions_mm), exact to 1e-9."""
    n, h = 41, 1.0
    ax = np.arange(n) * h - 20.0
    kk, jj, ii = np.meshgrid(ax, ax, ax, indexing="ij")
    zone = (kk / 14.0) ** 2 + (jj / 10.0) ** 2 + (ii / 8.0) ** 2 <= 1.0
    assert bh.chart_volume_ml(zone, h) == pytest.approx(np.pi / 6 * 29 * 21 * 17 / 1000.0, rel=1e-9)


def test_mwa_table_is_the_engine_output() -> None:
    """The cached table is the 3-D engine's output (not a fit target): one table entry per device
    class re-simulated now (Covidien, a = 0.5, ladder point 4, all chart times) matches within 1 %
    (float32 summation order)."""
    tab = bh.mwa_table("covidien_emprint")
    fresh = bh.build_mwa_table("covidien_emprint", a_grid=(tab.a_grid[1],), ladder_w=(tab.ladder_w[4],))
    assert fresh.times_s == tab.times_s
    np.testing.assert_allclose(fresh.volume_ml[0, 0], tab.volume_ml[1, 4], rtol=0.01)


def test_mwa_in_vivo_zone_smaller_than_ex_vivo() -> None:
    """Reference: the charts' caveat (ex vivo / non-perfused liver over-estimates perfused liver,
    Ruiter et al., Eur Radiol 2019;29:4026, PMC6611060) and the Pennes perfusion term. Emprint
    100 W / 300 s: the in vivo zone (perfused liver, ω = 0.0064 s⁻¹) is smaller than the ex vivo
    one, and the ex vivo model zone (chart-equivalent π/6·L·W·D, the chart's definition) is within
    ±20 % of the chart (23.61 ml). The in vivo/ex vivo ratio at this setting is not checked against a
    published figure (none verified for 5 min; the short-exposure ratio is, in the next test)."""
    m = bh.mwa_model("covidien_emprint")
    ex = bh.simulate_mwa_zone(m, 100.0, 300.0, spacing_mm=2.0, box_mm=39.0)
    inv = bh.simulate_mwa_zone(m, 100.0, 300.0, spacing_mm=2.0, box_mm=39.0, perfused=True)
    assert inv["volume_ml"] < ex["volume_ml"] and inv["chart_volume_ml"] < ex["chart_volume_ml"]
    assert ex["chart_volume_ml"] == pytest.approx(23.61, rel=0.20)


#: KoreaMed Synapse 1068729 (abstract verified): 60 W / 60 s MWA, maximum mean lesion diameter
#: ex vivo porcine liver 1.4 ± 0.1 cm (n = 5 livers), in vivo porcine liver 1.5 ± 0.1 cm
EX_VIVO_60S_CM, IN_VIVO_60S_CM, SD_60S_CM = 1.4, 1.5, 0.1


def test_mwa_in_vivo_over_ex_vivo_diameter_at_60_s_matches_porcine_data() -> None:
    """Reference: the same 60 W / 60 s microwave coagulation in ex vivo and in vivo porcine liver
    (https://synapse.koreamed.org/articles/1068729, abstract: maximum mean diameter 1.4 ± 0.1 cm ex vivo,
    1.5 ± 0.1 cm in vivo; authors and journal not retrieved). Published ratio in vivo/ex vivo 1.07;
    tolerance the ratio's range from the means ± 1 SD, (1.5 − 0.1)/(1.4 + 0.1) … (1.5 + 0.1)/(1.4 − 0.1)
    = 0.93 … 1.23 (a short exposure: perfusion, 1/ω ≈ 156 s, has little time to act). The model: the
    Emprint calibration (ex vivo, perfusion off) run ex vivo and in vivo (ω = 0.0064 s⁻¹), 1 mm grid;
    diameter ratio = cube root of the coagulated-volume ratio (self-similar zones; avoids the axes'
    one-voxel quantisation, 1 mm in 17–21 mm). The device differs from the study's (not named in the
    abstract): the check is on the ratio, which perfusion sets, not on the diameters."""
    m = bh.mwa_model("covidien_emprint")
    ex = bh.simulate_mwa_zone(m, 60.0, 60.0, spacing_mm=1.0, box_mm=4.0)
    inv = bh.simulate_mwa_zone(m, 60.0, 60.0, spacing_mm=1.0, box_mm=4.0, perfused=True)
    ratio = (inv["volume_ml"] / ex["volume_ml"]) ** (1.0 / 3.0)
    lo = (IN_VIVO_60S_CM - SD_60S_CM) / (EX_VIVO_60S_CM + SD_60S_CM)
    hi = (IN_VIVO_60S_CM + SD_60S_CM) / (EX_VIVO_60S_CM - SD_60S_CM)
    assert lo <= ratio <= hi, (ratio, lo, hi)
