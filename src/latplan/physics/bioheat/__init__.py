"""Pennes bioheat engine (package): heating (MWA, RFA) and freezing (cryo), Arrhenius/CEM43 damage.

    ρc ∂T/∂t = ∇·(k∇T) + ρ_b c_b ω (T_b − T) + Q            (Pennes, J Appl Physiol 1948;1:93)

Why an own engine: the device charts ignore perfusion and vessels; latplan must *show* the
heat-sink of a nearby vessel on the patient's anatomy. Pure numerics: no clinical logic.

Numerics (decisions)
--------------------
* Grid: a (cropped, resampled) box with per-voxel tissue labels (uint8) indexing a small
  property table (:class:`Tissue`); spacing may differ per axis. Outer faces are held at
  the initial temperature (Dirichlet) — keep the box a few centimetres larger than the zone.
* Time stepping: explicit Euler for conduction and source with the 7-point stencil (face
  conductivity = harmonic mean of the two voxels), the perfusion/vessel sink term implicit
  (unconditionally stable; same steady state). The step is checked against the conduction
  stability limit ``dt ≤ 1 / max(2α Σ 1/h²)`` and chosen at 0.95 of it unless given
  (a larger requested step raises :class:`~latplan.errors.InvalidInputError`).
* Kernel: one fused numba kernel per step, float32 fields, ``prange`` over slices, row by row:
  a branch-free inner loop over the whole row (per-voxel coefficients dt/ρc and ρ_b c_b ω,
  uniform conductivity or precomputed face conductivities) that LLVM vectorises, then — only on
  rows with a voxel above min(40 °C, gate) — the peak temperature and the damage integral. Two
  measured rules: the inner loop must run over ``range(1, n − 1)`` (numba can then prove the
  neighbour index ≥ 0 and drops its negative-index wrap-around, which otherwise blocks SIMD:
  ≈ 5× slower), and branchy work (damage, peak) stays out of it. While the field is still
  quiescent outside the source region the update runs only on k/j slabs that grow with the
  disturbance (see simulate_heating), so results are identical.
* Perfusion stops where the tissue is coagulated (Ω ≥ 1).
* Vessels (heat sinks): blood voxels whose temperature relaxes to T_b at a renewal rate
  u(D)/L_heated that grows with calibre D (data file), reduced for thin vessels whose blood
  equilibrates with the tissue (Chen–Holmes length u·a²/4α); vessels thinner than the occlusion
  calibre (3 mm) thrombose when coagulated and stop acting as sinks. Vessels can instead be
  held at T_b (``vessel_model="dirichlet"``).
* Damage: Arrhenius Ω = ∫ exp(ln A − E_a/(R T)) dt accumulated only at T ≥ the gate
  (45 °C by default, an assumption: the constants are fitted for ablative temperatures); CEM43 as an option (minutes at 43 °C, R = 0.5 above 43 °C,
  0.25 below). Ω is capped at 1e6 to stay finite in float32.
* MWA source: ``Q = P_abs(t) · s(r)`` with s a normalised teardrop around the antenna's feed point,
  ``exp(−2 r_eff/δ) / max(r_eff, r₀)²``, ``r_eff² = ρ² + (z/γ)²``; the absorbed power's fraction,
  power dependence and decline in time are calibrated per device on its ex vivo chart with
  perfusion off (:mod:`.calibration`); dried tissue absorbs no more power (it moves to wet tissue).
* Vaporisation: latent heat of tissue water over 99–100 °C by the enthalpy method (kernel helper
  ``_enthalpy_to_t``, shared with freezing); no temperature cap, energy is conserved.
* RFA source: ``Q ∝ |E|²`` of a uniformly charged active segment (monopolar electrode to a
  distant pad); the generator is temperature-controlled (P–I toward ``target_c``) and rolls
  off when the electrode reaches 100 °C (power off for a pause, then resumes): this, with
  perfusion and heat sink, limits single-electrode zones — not a fixed cap.
* Cryo: enthalpy form with latent heat over the freezing range (−8…−1 °C), frozen/mushy
  conductivity; sub-voxel probes (:mod:`.cryo`) held at their fitted surface temperature during
  freeze phases, insulating during thaw; lethal zone = minimum temperature ≤ −30 °C, the one
  lethal isotherm (Littrup 2009, tissue file and cryo_isotherms.yaml; zone band −40…−20 °C).

Layout: :mod:`.data` (tissue-property file, :class:`Tissue`, vessel sinks, result type),
:mod:`.kernels` (numba steps), :mod:`.grid` (tables, stability, time step; the one lazy door to
the optional CuPy path :mod:`.gpu`), :mod:`.sources` (MWA/RFA deposition), :mod:`.controllers`
(heating and cryo simulations, RFA generator), :mod:`.steady` (sparse steady state for the
analytic tests), :mod:`.calibration` (MWA chart calibration).
"""

from __future__ import annotations

from latplan.physics.bioheat.calibration import (
    MWA_CALIBRATION_ROWS,
    MWA_DEVICES,
    ChartCheck,
    MwaModel,
    MwaTable,
    build_mwa_table,
    calibrate_mwa,
    chart_consistency,
    chart_volume_ml,
    leave_one_out,
    mwa_model,
    mwa_table,
    run_mwa,
    simulate_mwa_zone,
)
from latplan.physics.bioheat.controllers import RfaController, simulate_heating
from latplan.physics.bioheat.cryo import CryoPhase, CryoProbe, probe_coupling, simulate_cryo
from latplan.physics.bioheat.data import (
    DATA_FILE,
    ENGINE_VERSION,
    GAS_CONSTANT_J_MOL_K,
    KELVIN,
    BioheatResult,
    Tissue,
    default_tissues,
    thermal_constants,
    vessel_tissue,
)
from latplan.physics.bioheat.grid import stability_limit_s, zone_dimensions_mm
from latplan.physics.bioheat.sources import antenna_shaft_mask, mwa_source, rfa_source
from latplan.physics.bioheat.steady import steady_state

__all__ = [
    "DATA_FILE",
    "ENGINE_VERSION",
    "GAS_CONSTANT_J_MOL_K",
    "KELVIN",
    "MWA_CALIBRATION_ROWS",
    "MWA_DEVICES",
    "BioheatResult",
    "ChartCheck",
    "CryoPhase",
    "CryoProbe",
    "MwaModel",
    "MwaTable",
    "RfaController",
    "Tissue",
    "antenna_shaft_mask",
    "build_mwa_table",
    "calibrate_mwa",
    "chart_consistency",
    "chart_volume_ml",
    "default_tissues",
    "leave_one_out",
    "mwa_model",
    "mwa_source",
    "mwa_table",
    "probe_coupling",
    "rfa_source",
    "run_mwa",
    "simulate_cryo",
    "simulate_heating",
    "simulate_mwa_zone",
    "stability_limit_s",
    "steady_state",
    "thermal_constants",
    "vessel_tissue",
    "zone_dimensions_mm",
]
