"""Cryo physics and chart (issue 14 part 4): sub-voxel probes against an analytic solution,
grid convergence, the one lethal isotherm, the probe calibration and the chart–physics check
against the phantom isotherms of Littrup 2009 (J Vasc Interv Radiol 20:1343, PMC2762356)."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
from scipy.special import k0

from latplan.physics import ablation_zones as az
from latplan.physics import bioheat as bh
from latplan.physics.bioheat import cryo_calibration as cc

LIVER = bh.default_tissues()["liver"]


@functools.cache
def _phantom_shapes_2mm(key: str, count: int) -> dict[float, cc.IsothermShape]:
    """0/−30/−40 °C isotherm shapes of ``count`` probes of type ``key`` in the Littrup 2009
    phantom on a 2 mm grid: one run shared by the tests below (CPU time)."""
    return cc.phantom_isotherm_shapes(count, cc.cryo_probe_model(key), (0.0, -30.0, -40.0), grid_mm=2.0)


def _steady_cylinder_error_k(h: float, offset_vox: float, *, legacy: bool = False) -> float:
    """Mean |T − exact| (K) around a long 1.7 mm probe at −50 °C in perfused liver (no phase
    change), 1.5 h ≤ r ≤ 12 mm in the mid-slice, probe axis ``offset_vox`` voxels off a centre."""
    from latplan.physics.electroporation import Needle, needle_mask

    n = [round(30 / h) | 1, round(40 / h) | 1, round(40 / h) | 1]
    ax = ((n[1] // 2) * h + offset_vox * h, (n[2] // 2) * h + 0.2 * offset_vox * h)
    tip = (n[0] * h + 5.0, ax[0], ax[1])
    phase = (bh.CryoPhase("freeze", 900.0, -50.0),)
    kw = {"latent_heat_j_m3": 0.0, "freezing_range_c": (-300.0, -299.0), "phases": phase}
    if legacy:
        mask = needle_mask(tuple(n), (h, h, h), Needle(tip, (1.0, 0.0, 0.0), n[0] * h + 10.0, 1.0))
        res = bh.simulate_cryo(np.zeros(n, np.uint8), [LIVER], (h, h, h), mask, **kw)
    else:
        pr = bh.CryoProbe(tip, (1.0, 0.0, 0.0), n[0] * h + 10.0, 1.7)
        res = bh.simulate_cryo(np.zeros(n, np.uint8), [LIVER], (h, h, h), probes=[pr], **kw)
    t = res.temperature_c[n[0] // 2].astype(float)
    jj, ii = np.meshgrid(np.arange(n[1]) * h, np.arange(n[2]) * h, indexing="ij")
    d = np.hypot(jj - ax[0], ii - ax[1])
    b = bh.thermal_constants()["blood"]
    delta_mm = math.sqrt(LIVER.conductivity_w_m_k / (float(b["density_kg_m3"]) * float(b["heat_capacity_j_kg_k"])
                                                     * LIVER.perfusion_per_s)) * 1e3
    exact = 37.0 + (-50.0 - 37.0) * k0(d / delta_mm) / k0(0.85 / delta_mm)
    sel = (d >= 1.5 * h) & (d <= 12.0)
    return float(np.abs(t - exact)[sel].mean())


def test_cryo_subvoxel_probe_matches_pennes_cylinder() -> None:
    """Reference: steady Pennes solution around an infinite cylinder, T − T_b = (T_p − T_b)
    K0(r/δ)/K0(r_p/δ), δ = √(k/ρ_b c_b ω) (modified Bessel K0). The sub-voxel probe (1.7 mm, at
    −50 °C) on a 2 mm and a 1 mm grid, centred and 0.37 voxel off-centre: mean error ≤ 1.5 %
    of the 87 K drop (1.3 K); on 2 mm the bare voxel line errs more than the sub-voxel probe."""
    errs = {(h, off): _steady_cylinder_error_k(h, off) for h in (2.0, 1.0) for off in (0.0, 0.37)}
    assert max(errs.values()) <= 1.3, errs
    assert _steady_cylinder_error_k(2.0, 0.0, legacy=True) > errs[(2.0, 0.0)]


def _isotherm_volumes_ml(h: float) -> dict[float, float]:
    """−40 °C and lethal-isotherm volumes of one 2.4 mm probe, 10-8-10 min in perfused liver."""
    n = [round(56 / h) | 1, round(40 / h) | 1, round(40 / h) | 1]
    c = [(x // 2) * h for x in n]
    model = cc.cryo_probe_model("cryo_2.4mm")
    pr = bh.CryoProbe((c[0] + 15.0, c[1] + 0.3, c[2]), (1.0, 0.0, 0.0), model.active_length_mm, model.diameter_mm)
    tp = model.probe_c
    res = bh.simulate_cryo(np.zeros(n, np.uint8), [LIVER], (h, h, h), probes=[pr],
                           phases=(bh.CryoPhase("freeze", 600.0, tp), bh.CryoPhase("thaw", 480.0, tp),
                                   bh.CryoPhase("freeze", 600.0, tp)))
    assert res.min_temperature_c is not None
    isos = (-40.0, float(cc.cryo_data()["lethal_isotherm_c"]))
    return {iso: float((res.min_temperature_c <= iso).sum()) * h**3 / 1000.0 for iso in isos}


def test_cryo_lethal_volume_grid_converged() -> None:
    """Reference: grid convergence (issue 14: the bare voxel line gave 2.36 ml at 2 mm vs
    4.07 ml at 1 mm). One 2.4 mm probe, 10-8-10 min in perfused liver: the −40 °C and the
    lethal-isotherm volumes on a 2 mm and a 1 mm grid agree within 10 %."""
    v2, v1 = _isotherm_volumes_ml(2.0), _isotherm_volumes_ml(1.0)
    for iso, vol in v1.items():
        assert vol > 0.5
        assert abs(v2[iso] - vol) / vol <= 0.10, (iso, v2, v1)


def test_cryo_one_lethal_isotherm_in_chart_and_physics() -> None:
    """Reference: Littrup 2009 (PMC2762356, abstract) define lethal ice as below −30 °C — the
    isotherm of the chart's diameters. Chart, physics default and data file hold that one value."""
    lethal = float(cc.cryo_data()["lethal_isotherm_c"])
    assert lethal == -30.0
    assert float(bh.thermal_constants()["cryo"]["lethal_isotherm_c"]) == lethal
    assert az.cryo_zone_size(1).settings["lethal_isotherm_c"] == lethal
    assert "Littrup 2009" in az.cryo_zone_size(1).settings["lethal_isotherm_source"]
    lab = np.zeros((9, 9, 9), np.uint8)
    pr = bh.CryoProbe((6.0, 4.0, 4.0), (1.0, 0.0, 0.0), 4.0, 1.7)
    res = bh.simulate_cryo(lab, [LIVER], (1.0, 1.0, 1.0), probes=[pr], phases=(bh.CryoPhase("freeze", 10.0),))
    assert res.info["lethal_c"] == lethal


def test_cryo_chart_labels_real_probe_diameters() -> None:
    """Reference: Littrup 2009 abstract — 2.4 mm probes: 12/33/41/49 mm for 1–4 probes; 1.7 mm
    probes: 84 % of those diameters. Each chart row carries its probe's real diameter."""
    for key, dia, scale in (("cryo_2.4mm", 2.4, 1.0), ("cryo_1.7mm", 1.7, 0.84)):
        for n, d in zip((1, 2, 3, 4), (12.0, 33.0, 41.0, 49.0), strict=True):
            z = az.cryo_zone_size(n, key)
            assert z.width_mm == pytest.approx(scale * d, abs=0.01)
            assert z.settings["probe_diameter_mm"] == dia


@pytest.mark.parametrize("key", ["cryo_1.7mm", "cryo_2.4mm"])
def test_cryo_chart_and_physics_within_20_percent(key: str) -> None:
    """Reference: Littrup 2009 (PMC2762356, abstract), lethal (−30 °C) diameters in agar at
    39 °C after a 15-min freeze, probes 2 cm apart. The probe temperature was fitted on the
    single probe only (1 mm grid, cryo_isotherms.yaml); on a 2 mm grid the physics gives the
    1-, 2- and 3-probe diameters of the chart within ±20 % (2 and 3 probes are predictions)."""
    assert float(cc.cryo_data()["lethal_isotherm_c"]) == -30.0
    for n in (1, 2, 3):
        chart = az.cryo_zone_size(n, key).width_mm
        model = _phantom_shapes_2mm(key, n)[-30.0].width_mm
        assert abs(model - chart) / chart <= 0.20, (key, n, model, chart)


def test_cryo_probe_calibration_reproduces_single_probe() -> None:
    """Reference: Littrup 2009 single 2.4 mm probe, 12 mm lethal diameter. The fitted probe
    temperature in the data file reproduces it within 5 % on the fit's 1 mm grid, and it is a
    physical argon-probe surface temperature (−60…−160 °C); a probe 20 °C warmer misses by > 5 %."""
    probe = cc.cryo_probe_model("cryo_2.4mm")
    assert -160.0 <= probe.probe_c <= -60.0
    d = cc.phantom_lethal_diameter_mm(1, probe)
    assert d == pytest.approx(12.0, rel=0.05)
    warm = cc.phantom_lethal_diameter_mm(1, dataclasses.replace(probe, probe_c=probe.probe_c + 20.0))
    assert abs(warm - 12.0) / 12.0 > 0.05


def test_cryo_chart_shape_rederived_from_the_physics() -> None:
    """Reference: the data file's physics-derived chart shape (length along the probes,
    depth/width of the −30 °C isotherm; Littrup 2009 give only the width). Re-derived on a 2 mm
    grid (the file: 1 mm) for 1 and 2 probes of 2.4 mm: length within 5 %, depth/width within
    0.05 (grid error); the chart zone carries them."""
    stored = cc.cryo_data()["probes"]["cryo_2.4mm"]["chart_shape"]
    got = cc.derive_chart_shapes("cryo_2.4mm", grid_mm=2.0, counts=(1, 2))
    for n in (1, 2):
        assert got[n]["length_mm"] == pytest.approx(float(stored[n]["length_mm"]), rel=0.05), (n, got, stored)
        assert abs(got[n]["depth_over_width"] - float(stored[n]["depth_over_width"])) <= 0.05, (n, got, stored)
        assert got[n]["centre_offset_from_tip_mm"] == pytest.approx(float(stored[n]["centre_offset_from_tip_mm"]), abs=1.0)
        z = az.cryo_zone_size(n, "cryo_2.4mm")
        assert z.length_mm == float(stored[n]["length_mm"])
        assert z.depth_mm == pytest.approx(z.width_mm * float(stored[n]["depth_over_width"]))


def test_cryo_isotherm_spacing_matches_published_isotherms() -> None:
    """References (independent of the fit, which used only the −30 °C diameter of one probe):
    (1) Hinshaw et al., J Vasc Interv Radiol 2010 (abstract): Endocare 2.4 mm probe, 10-min double
    freeze in vivo — 0 °C and −40 °C isotherm diameters 31 ± 2 and 18 ± 4 mm, i.e. the −40 °C edge
    6.5 mm inside the 0 °C edge; one calibrated 2.4 mm probe, 10-8-10 min in perfused liver:
    within the measurement's combined SD (√(2²+4²)/2 = 2.2 mm). (2) PMC4850244 (abstract): in gel
    at body temperature the −40 °C isotherm lies ≈ 1 cm inside the ice-ball edge: phantom, one
    probe, within ±30 % (the source's "approximately"). (3) Littrup 2009 (abstract): lethal
    (−30 °C) ice lies < 1 cm behind the leading edge: phantom, 1–4 probes."""
    meas = cc.cryo_data()["isotherm_measurements"]["hinshaw_2010_endocare_2.4mm"]["isotherm_diameter_mm"]
    gap_ref = 0.5 * (float(meas[0][0]) - float(meas[-40][0]))
    sd = 0.5 * math.hypot(float(meas[0][1]), float(meas[-40][1]))
    h = 2.0
    n = [round(56 / h) | 1, round(40 / h) | 1, round(40 / h) | 1]
    c = [(x // 2) * h for x in n]
    model = cc.cryo_probe_model("cryo_2.4mm")
    pr = bh.CryoProbe((c[0] + 15.0, c[1], c[2]), (1.0, 0.0, 0.0), model.active_length_mm, model.diameter_mm)
    tp = model.probe_c
    res = bh.simulate_cryo(np.zeros(n, np.uint8), [LIVER], (h, h, h), probes=[pr],
                           phases=(bh.CryoPhase("freeze", 600.0, tp), bh.CryoPhase("thaw", 480.0, tp),
                                   bh.CryoPhase("freeze", 600.0, tp)))
    assert res.min_temperature_c is not None
    mid = res.min_temperature_c[n[0] // 2]
    d0, d40 = (cc.feret_diameter_mm(mid <= lv, h, field=mid, level=lv) for lv in (0.0, -40.0))
    assert abs(0.5 * (d0 - d40) - gap_ref) <= sd, (d0, d40, gap_ref, sd)
    inside_ref = float(cc.cryo_data()["isotherm_measurements"]["pmc4850244_gel_17g_10g"]["minus40_inside_edge_mm"])
    for count in (1, 2, 3, 4):
        s = _phantom_shapes_2mm("cryo_2.4mm", count)
        assert 0.0 < 0.5 * (s[0.0].width_mm - s[-30.0].width_mm) < 10.0, (count, s)
        if count == 1:
            assert 0.5 * (s[0.0].width_mm - s[-40.0].width_mm) == pytest.approx(inside_ref, rel=0.30), s


def test_cryo_stays_above_the_probe_temperature_beside_a_large_vessel() -> None:
    """Reference: the maximum principle of the heat equation with sinks — no temperature falls
    below the coldest boundary (the probe, −90 °C) or rises above the warmest (37 °C). A 2.4 mm
    probe 4 mm from a 20 mm vessel (the vessel model's renewal rate, ρ_b c_b ω ≈ 26 MW/m³/K) on a
    2 mm grid, 10-8-10 min: the stability limit includes the perfusion term (it did not: this case
    reached −11 000 °C, the planner's perivascular demo −1486 °C in its 20 mm vessel, and the
    unstable voxels were drawn as lethal zone). Tolerance 0.5 K."""
    vessel = bh.vessel_tissue(20.0)
    h = 2.0
    n = [31, 41, 41]
    c = [(x // 2) * h for x in n]
    lab = np.zeros(n, np.uint8)
    jj, ii = np.meshgrid(np.arange(n[1]) * h, np.arange(n[2]) * h, indexing="ij")
    lab[:, np.hypot(jj - (c[1] + 14.0), ii - c[2]) <= 10.0] = 1
    model = cc.cryo_probe_model("cryo_2.4mm")
    pr = bh.CryoProbe((c[0] + 15.0, c[1], c[2]), (1.0, 0.0, 0.0), model.active_length_mm, model.diameter_mm)
    tp = model.probe_c
    res = bh.simulate_cryo(lab, [LIVER, vessel], (h, h, h), probes=[pr],
                           phases=(bh.CryoPhase("freeze", 600.0, tp), bh.CryoPhase("thaw", 480.0, tp),
                                   bh.CryoPhase("freeze", 600.0, tp)))
    assert res.min_temperature_c is not None
    tissue = ~res.info["probe_voxels"]
    assert float(res.min_temperature_c[tissue].min()) >= tp - 0.5
    assert float(res.temperature_c[tissue].max()) <= 37.0 + 0.5


def test_cryo_lethal_share_of_the_iceball_matches_littrup_2009() -> None:
    """Reference: Littrup 2009 (PMC2762356, abstract): 2.4 mm probes 2 cm apart, agar at 39 °C,
    15-min freeze — lethal (−30 °C) ice is 13/46/51/56 % of the ice ball's surface area for 1–4
    probes; 1.7 mm probes' lethal areas and diameters are 71 % and 84 % of the 2.4 mm ones, and
    0.84² = 0.71 (±0.01): the shares behave as (lethal diameter / ice-ball diameter)², circles of
    the measured diameters. On that measure the physics (2 mm grid) gives each share within ±0.08
    absolute (chosen: about the effect of half the source's 5 mm thermocouple spacing on a 12 mm
    lethal diameter, 2·2.5/12·0.13 = 0.05, plus the ice-ball edge). The true mid-plane area share
    of the flat 2-probe zone is smaller (0.27 on 1 mm): it is not the measure of the source, so
    the 17/27/39/46 % vs 13/46/51/56 % "discrepancy" of round 3 compared different quantities."""
    p = cc.cryo_data()["probes"]["cryo_2.4mm"]
    ratio = p["ratio_1.7mm_to_2.4mm"]
    assert float(ratio["diameter"]) ** 2 == pytest.approx(float(ratio["surface_area"]), abs=0.01)
    shares = {n: cc.lethal_share(n, _phantom_shapes_2mm("cryo_2.4mm", n)) for n in (1, 2, 3, 4)}
    for n, ref in p["lethal_area_fraction_of_iceball"].items():
        assert abs(shares[int(n)].diameter_squared - float(ref)) <= 0.08, (n, shares[int(n)], ref)
    assert shares[2].area < shares[2].diameter_squared - 0.1, shares[2]


def test_cryo_chart_zone_carries_the_probes_own_isotherm_data() -> None:
    """Reference: Hinshaw et al., J Vasc Interv Radiol 2010 (abstract): Endocare 2.4 mm probe, one
    probe, 10-min double freeze in vivo (porcine lung): 0/−20/−40 °C isotherm diameters 31/23/18 mm.
    The 1-probe chart zone of the 2.4 mm probe type carries these (exact, from the data file) with
    their conditions; probe types and counts without own isotherm data carry none."""
    meas = cc.cryo_data()["isotherm_measurements"]["hinshaw_2010_endocare_2.4mm"]
    s = az.cryo_zone_size(1, "cryo_2.4mm").settings
    assert s["probe_isotherm_diameters_mm"] == {f"{float(k):g}": float(v[0]) for k, v in meas["isotherm_diameter_mm"].items()}
    assert s["probe_isotherm_diameters_mm"]["-20"] == 23.0
    assert "in vivo" in s["probe_isotherm_conditions"] and "Hinshaw" in s["probe_isotherm_source"]
    assert "probe_isotherm_diameters_mm" not in az.cryo_zone_size(2, "cryo_2.4mm").settings
    assert "probe_isotherm_diameters_mm" not in az.cryo_zone_size(1, "cryo_1.7mm").settings
