"""RFA from an electric potential solve with σ(T) and an impedance-controlled generator
(latplan.physics.bioheat.rfa) against the field solver, analytic identities and published data."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from latplan.errors import InvalidInputError
from latplan.physics import bioheat as bh
from latplan.physics.bioheat import rfa
from latplan.physics.electroporation import Needle, _face_joule_w_m3, _needle_current, _stencil_system

LIVER = bh.default_tissues()["liver"]


def _liver(perfusion_scale: float) -> bh.Tissue:
    """Liver with ``perfusion_scale`` × the RFA model's in vivo perfusion (rfa_generator.yaml)."""
    w = rfa.in_vivo_tissues([LIVER])[0].perfusion_per_s
    return bh.Tissue("liver", LIVER.density_kg_m3, LIVER.heat_capacity_j_kg_k, LIVER.conductivity_w_m_k,
                     w * perfusion_scale)


@cache
def _run(h: float, box_mm: float, perfusion_scale: float) -> bh.BioheatResult:
    """One 12-min run of the data file's Cool-tip (17 G, 3 cm) in homogeneous liver, electrode
    along k through the box centre (cached: several tests share a run)."""
    n = round(box_mm / h) | 1
    c = (n // 2) * h
    needle = rfa.electrode_needle((c + 15.0, c, c), (1.0, 0.0, 0.0))
    return rfa.simulate_rfa(np.zeros((n, n, n), np.uint8), [_liver(perfusion_scale)], (h, h, h), 720.0, needle)


def _volume_at_ml(r: bh.BioheatResult, log10_level: float) -> float:
    """Zone volume (ml) at Ω ≥ 10^level."""
    ld = np.log10(np.maximum(r.damage.astype(np.float64), 1e-300))
    return float(np.sum(ld >= log10_level)) * float(np.prod(r.spacing_kji_mm)) / 1000.0


def test_rfa_system_is_the_field_solvers() -> None:
    """Reference: latplan.physics.electroporation's field solver (validated against the two-cylinder
    solution). The RFA assembly builds the same padded 7-point system (relative difference ≤ 1e-12)
    for an oblique sub-voxel needle on an anisotropic grid with random σ, gives the same electrode
    current (1e-12), and without the in-cell share its Joule power sums to U·I (energy conservation
    of the discrete circuit, with the power leaving through the open boundary; 1e-6 = the CG
    tolerance) and equals the field solver's away from the electrode."""
    n = 21
    nd = Needle((22.3, 20.4, 19.7), (1.0, 0.1, 0.0), 20.0, 0.735)
    sp = (2.0, 2.0, 1.5)
    s = rfa.PotentialSolver((n, n, n), sp, [nd])
    sig = np.random.default_rng(0).uniform(0.1, 0.6, (n, n, n))
    ref = _stencil_system(sig, s.spacing_m, s.fixed, s.fixed_val, s.boost)
    mine = rfa._assemble(sig, *s.boost, s.fixed, s.fixed_val, *(float(x) for x in s.spacing_m), np.zeros_like(sig))
    for a, b in zip(ref, mine, strict=True):
        assert np.abs(a - b).max() <= 1e-12 * np.abs(a).max()
    s.solve(sig)
    phi = np.where(s.fixed, s.fixed_val, s.x[1:-1, 1:-1, 1:-1])
    joule, current = rfa._joule_current(phi, sig, *s.boost, s.fixed, s.mask, *(float(x) for x in s.spacing_m), 0.0)
    i_ref = _needle_current(phi, sig, s.spacing_m, s.mask, s.boost)
    assert abs(current - i_ref) <= 1e-12 * abs(i_ref)
    vol = float(np.prod(s.spacing_m))
    beyond = float(np.sum(s.outer * sig * phi**2)) * vol   # through the open boundary to infinity
    assert abs(joule.sum() * vol + beyond - current * 1.0) <= 1e-6 * current
    away = ~np.zeros_like(s.mask)
    for ax in range(3):
        away &= ~np.roll(s.fixed, 1, ax) & ~np.roll(s.fixed, -1, ax)
    j_ref = _face_joule_w_m3(phi, sig, s.spacing_m, s.boost, s.fixed)
    assert np.abs(joule - j_ref)[away].max() <= 1e-12 * j_ref.max()


def test_rfa_conductivity_model_of_the_data_file() -> None:
    """Reference: Rossmann & Haemmerich, Crit Rev Biomed Eng 2014;42:467 (liver σ at 460–500 kHz
    rises ≈ 1.5–2 %/°C) and the desiccation model of cooled-electrode RF models (σ falls two
    orders of magnitude between 99 and 100 °C; Trujillo & Berjano, Int J Hyperthermia 2013):
    σ(37) = σ₃₇, σ(57)/σ₃₇ = 1.30 (1.5 %/°C), σ(100)/σ(99) = 0.01 (exact to 1e-12)."""
    s37 = np.array([0.33])
    val = {t: float(rfa.conductivity_at(s37, np.array([t]))[0]) for t in (37.0, 57.0, 99.0, 100.0, 120.0)}
    assert math.isclose(val[37.0], 0.33, rel_tol=1e-12)
    assert math.isclose(val[57.0] / 0.33, 1.30, rel_tol=1e-12)
    assert math.isclose(val[100.0] / val[99.0], 0.01, rel_tol=1e-12)
    assert math.isclose(val[120.0], val[100.0], rel_tol=1e-12)


def test_rfa_bad_input_named() -> None:
    """An electrode outside the box, or one touching its surface (the open boundary), and a tissue with
    no electrical conductivity are refused in words."""
    lab = np.zeros((11, 11, 11), np.uint8)
    far = rfa.electrode_needle((200.0, 10.0, 10.0), (1.0, 0.0, 0.0))
    with pytest.raises(InvalidInputError, match="outside the simulation box"):
        rfa.simulate_rfa(lab, [LIVER], (2.0, 2.0, 2.0), 10.0, far)
    edge = rfa.electrode_needle((20.0, 0.0, 10.0), (1.0, 0.0, 0.0))
    with pytest.raises(InvalidInputError, match="touches the box surface"):
        rfa.simulate_rfa(lab, [LIVER], (2.0, 2.0, 2.0), 10.0, edge)
    odd = bh.Tissue("bone", 1900.0, 1300.0, 0.3)
    ok = rfa.electrode_needle((15.0, 10.0, 10.0), (1.0, 0.0, 0.0))
    with pytest.raises(InvalidInputError, match="no electrical conductivity"):
        rfa.simulate_rfa(lab, [odd], (2.0, 2.0, 2.0), 10.0, ok)


@pytest.mark.slow
def test_rfa_perfusion_lowers_the_zone() -> None:
    """Reference: the Pennes perfusion term removes heat (and the published in vivo zones are
    smaller than ex vivo: Song et al., Br J Radiol 2015;88:20140497, 17 G 7.79 vs 23.86 ml).
    Zone volume strictly decreasing for perfusion × 0, 1, 2 (3 mm grid, 75 mm box)."""
    vols = [_run(3.0, 75.0, s).zone_volume_ml for s in (0.0, 1.0, 2.0)]
    assert vols[0] > vols[1] > vols[2] > 0.0, vols


@pytest.mark.slow
def test_rfa_energy_in_vivo_within_the_clinical_generators_range() -> None:
    """Reference: Song et al., Br J Radiol 2015;88:20140497 (Results): a 17 G internally cooled
    electrode with a 3 cm tip delivers 7.70 ± 0.98 kcal = 32.2 ± 4.1 kJ in 12 min ex vivo (bovine) and
    8.49 ± 0.35 kcal = 35.5 ± 1.5 kJ in vivo (porcine). Tolerance: the issue's 32–36 kJ (the two
    means) in vivo, and the ex vivo run within Song's ex vivo mean ± 1 SD (28.1–36.3 kJ). With
    k(T) (Guntur et al., Ultrasound Med Biol 2013) and the CT-measured liver perfusion (Bader et
    al., Invest Radiol 2000;35:539), nothing fitted. Planner configuration (2 mm grid, 75 mm box) —
    the energy is NOT grid-converged there: 1.5 mm 29.3 kJ, 1 mm 28.2 kJ, so the converged model
    delivers ≈ 28 kJ, below 32 kJ (docs/ablation-physics.md, Known limits); with
    impedance roll-offs, never above 200 W, from a baseline impedance of 40–100 Ω (clinical
    Cool-tip range)."""
    r = _run(2.0, 75.0, 1.0)
    e_kj = r.info["energy_j"] / 1000.0
    assert 32.0 <= e_kj <= 36.0, e_kj
    e_ex_kj = _run(2.0, 75.0, 0.0).info["energy_j"] / 1000.0
    assert 32.2 - 4.1 <= e_ex_kj <= 32.2 + 4.1, e_ex_kj
    assert r.info["rolloffs"] >= 1
    assert float(r.power_w.max()) <= 200.0 + 1e-6
    assert 40.0 <= r.info["baseline_impedance_ohm"] <= 100.0
    # no cap: boiling is latent heat (the store took energy), the generator's energy is accounted
    # for as tissue + beyond the box + coolant, the tissue share ≤ the generator's output
    assert r.info["energy_latent_j"] > 0.0
    assert r.info["energy_tissue_j"] <= r.info["energy_j"] * (1.0 + 1e-9)


def test_rfa_thermal_conductivity_rises_with_temperature() -> None:
    """Reference: Guntur et al., Ultrasound Med Biol 2013 (ex vivo porcine liver: k rises by 45 %
    from 35 to 90 °C): the data file's k(T) gives k(90)/k(37) = 1 + 53 × 0.0082 = 1.43 (within 3 % of
    Guntur's 1.45), constant above 90 °C, on the face conductivities (exact to 1e-6, float32): a
    tissue face takes the mean factor of its voxels, a face of the cooled electrode its tissue side's."""
    beta, until = rfa._conductivity_law()
    assert 1.0 + beta * (90.0 - 37.0) == pytest.approx(1.45, rel=0.03)
    t = np.full((3, 1, 1), 37.0, np.float32)
    t[1], t[2] = 90.0, 120.0
    cold = np.zeros(t.shape, bool)
    base = [np.ones(t.shape, np.float32) for _ in range(3)]
    out = [np.ones(t.shape, np.float32) for _ in range(3)]
    rfa._conductivity_with_temperature(*base, *out, t, cold, beta, 37.0, until)
    k90 = 1.0 + beta * 53.0
    assert out[0][0, 0, 0] == pytest.approx(0.5 * (1.0 + k90), rel=1e-6)
    assert out[0][1, 0, 0] == pytest.approx(k90, rel=1e-6)       # 90 and 120 °C: both at the plateau
    cold[0] = True
    rfa._conductivity_with_temperature(*base, *out, t, cold, beta, 37.0, until)
    assert out[0][0, 0, 0] == pytest.approx(k90, rel=1e-6)


@pytest.mark.slow
def test_rfa_zone_independent_of_the_box() -> None:
    """Reference: a converged model does not depend on the simulation box (the issue's criterion:
    < 2 % from a 75 to a 120 mm box; the old analytic-source model was bistable, 10.2 vs 22.2 ml).
    The box surface is an open (monopole absorbing) boundary; 2 mm grid (the box effect is a
    far-field one; a 120 mm box at 1 mm is 1.7 M voxels)."""
    v75, v120 = (_run(2.0, b, 1.0).zone_volume_ml for b in (75.0, 120.0))
    assert abs(v120 - v75) / v75 < 0.02, (v75, v120)


@pytest.mark.slow
def test_rfa_zone_converges_from_2_to_1_mm() -> None:
    """Reference: grid convergence (the issue's criterion: the zone changes < 10 % from a 2 to a
    1 mm grid; heat and potential on the same grid). 61 mm box (the box does not matter: previous
    test), perfused liver."""
    v2, v1 = _run(2.0, 61.0, 1.0).zone_volume_ml, _run(1.0, 61.0, 1.0).zone_volume_ml
    assert abs(v1 - v2) / v2 < 0.10, (v2, v1)


@pytest.mark.slow
def test_rfa_calibrated_ex_vivo_to_the_chart_and_in_vivo_ratio_published() -> None:
    """Calibration check: the data file's damage level Ω* (rfa_generator.yaml `calibration`) is the
    one at which the ex vivo run (perfusion off, 37 °C; the planner's 2 mm grid, 75 mm box) has the Cool-tip
    3 cm protocol's chart volume, 28.5 ml (rfa_ex_vivo.yaml, PMC4463338): 5 %. The in vivo run
    (perfused) at the same Ω* is smaller, and its ratio to the ex vivo zone lies within the published
    ratios for internally cooled electrodes: Song et al., Br J Radiol 2015;88:20140497 (17 G, 3 cm):
    7.79/23.86 = 0.33 (− 0.09 from the SDs); Cardiovasc Intervent Radiol 2009;32:1235-1240 (2 cm):
    5.76/11.08 = 0.52 (+ 0.09): tolerance 0.24–0.61."""
    level = float(rfa.rfa_constants()["calibration"]["zone_log10_damage"])
    ex, iv = _run(2.0, 75.0, 0.0), _run(2.0, 75.0, 1.0)
    v_ex = _volume_at_ml(ex, level)
    assert v_ex == pytest.approx(28.5, rel=0.05), v_ex
    v_iv = _volume_at_ml(iv, level)
    assert v_iv < v_ex
    assert 0.24 <= v_iv / v_ex <= 0.61, (v_iv, v_ex)
    # the in vivo zone the planner sizes its electrodes on (data file, measured on this run): volume 5 %,
    # extents and centre within one voxel (2 mm)
    cal = rfa.rfa_constants()["calibration"]
    assert v_iv == pytest.approx(float(cal["in_vivo_volume_ml"]), rel=0.05)
    ld = np.log10(np.maximum(iv.damage.astype(np.float64), 1e-300)) >= level
    idx = np.argwhere(ld)
    ext = (idx.max(0) - idx.min(0) + 1) * 2.0
    assert abs(ext[0] - float(cal["in_vivo_length_mm"])) <= 2.0 and abs(ext[1] - float(cal["in_vivo_width_mm"])) <= 2.0
    tip_k = (round(75.0 / 2.0) | 1) // 2 * 2.0 + 15.0
    assert abs(idx[:, 0].mean() * 2.0 - tip_k - float(cal["in_vivo_centre_offset_from_tip_mm"])) <= 2.0


@cache
def _switched(h: float, duration_s: float) -> bh.BioheatResult:
    """Three Cool-tip electrodes 20 mm apart (equilateral triangle, parallel to k) in homogeneous
    in vivo liver, fed in turn by one generator (cached: two tests share the run)."""
    n = round(70.0 / h) | 1
    return rfa.simulate_rfa(np.zeros((n, n, n), np.uint8), [_liver(1.0)], (h, h, h), duration_s,
                            _switched_needles(n, h))


def test_rfa_several_electrodes_share_one_generator_by_switching(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Reference: the clinical multiple-electrode technique — one 200 W generator feeds one electrode
    at a time through a switching controller (switching monopolar mode; Haemmerich D, Lee FT Jr et
    al., Radiology 2005;234:563-568: electrodes activated simultaneously gave small discontinuous
    zones, 22.3 ml, rapid switching large confluent ones, 116.4 ml). Exact properties of the model: the generator's output never exceeds its
    200 W (before 2026-12-04 three electrodes drew 3 × 200 W); one electrode is fed at each step and
    each of the three is fed for ≥ 20 % of the run; the energy is the integral of the power (1e-6, float32 powers);
    replaying the run's power and switching (``power_trace`` + ``active_trace``) gives the same
    ablated voxels (Ω ≥ 1) and temperatures within 1e-3 °C — not bit for bit: each electrode's CG
    solve warm-starts from its own (extrapolated) last solutions, and the live run solves the
    electrode it leaves once more at a switch, so the replay agrees to the CG tolerance. Run at the
    solver's own tolerance 1e-4 (measured 5e-4 °C); at the planner runs' ``rfa.RUN_CG_RTOL`` = 3e-4 the
    replay differs by 0.038 °C (measured), which this test does not bound."""
    monkeypatch.setattr(rfa, "RUN_CG_RTOL", 1e-4)
    r = _switched(2.0, 240.0)
    g = rfa.default_generator()
    assert float(r.power_w.max()) <= g.max_power_w + 1e-6
    act = r.info["active_electrode"]
    assert act.shape == r.power_w.shape and set(np.unique(act)) <= {-1, 0, 1, 2}
    assert min(float(np.mean(act == c)) for c in range(3)) >= 0.2
    assert r.info["energy_j"] == pytest.approx(float(r.power_w.sum()) * r.dt_s, rel=1e-6)
    n = r.damage.shape[0]
    again = rfa.simulate_rfa(np.zeros((n, n, n), np.uint8), [_liver(1.0)], (2.0, 2.0, 2.0), 240.0,
                             _switched_needles(n, 2.0), power_trace=(r.dt_s, r.power_w), active_trace=act)
    assert np.array_equal(again.damage >= 1.0, r.damage >= 1.0)
    assert float(np.abs(again.temperature_c - r.temperature_c).max()) <= 1e-3
    with pytest.raises(InvalidInputError, match="power_trace"):
        rfa.simulate_rfa(np.zeros((n, n, n), np.uint8), [_liver(1.0)], (2.0, 2.0, 2.0), 10.0,
                         _switched_needles(n, 2.0), active_trace=act)


def _switched_needles(n: int, h: float) -> list[Needle]:
    c = (n // 2) * h
    r = 20.0 / math.sqrt(3.0)
    return [rfa.electrode_needle((c + 15.0, c + r * math.cos(a), c + r * math.sin(a)), (1.0, 0.0, 0.0))
            for a in (0.0, 2.0944, 4.1888)]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "issue 14 [J] 2: the switched model delivers 89.3 kJ (2 mm, 12 min, 3 electrodes 20 mm apart; 8 roll-offs), below "
    "the 114.2 ± 18.3 kJ measured: after each roll-off the generator restarts at half power and ramps at "
    "1 W/s (data-file assumptions), the study's electrodes are internally cooled WET (saline infusion), the model's "
    "dry-cooled, and the tissue beside the electrode desiccates sooner than in vivo — "
    "the same desiccation-limited delivery as the single electrode's grid-converged 28 kJ "
    "(docs/ablation-physics.md, Known limits)"))
def test_rfa_switched_three_electrodes_energy_matches_switching_monopolar_in_vivo() -> None:
    """Reference: switching monopolar RFA, three 17 G internally cooled *wet* electrodes (saline
    infused at the tip, which keeps the impedance down — the model's electrode is dry-cooled, a
    part of the gap), ≈ 200 W, 12 min, in vivo porcine liver: 114.2 ± 18.3 kJ delivered (Br J
    Radiol 2015, PMC4628442, Results/abstract, group B). Tolerance ± 1 SD. The electrode spacing of that study is not in its abstract: 20 mm
    here (assumption, the usual triangle of the switching technique)."""
    r = _switched(2.0, 720.0)
    assert 114.2 - 18.3 <= r.info["energy_j"] / 1000.0 <= 114.2 + 18.3
