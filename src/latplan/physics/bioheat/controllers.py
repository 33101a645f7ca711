"""Bioheat simulations: heating under a constant power or an RFA generator controller
(freeze–thaw cryo protocols: :mod:`latplan.physics.bioheat.cryo`)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from latplan.errors import InvalidInputError
from latplan.physics.bioheat.data import GAS_CONSTANT_J_MOL_K, BioheatResult, Tissue, thermal_constants
from latplan.physics.bioheat.grid import (
    _choose_dt,
    _face_conductivities,
    _gpu_stepper,
    _spacing_m,
    _tables,
    stability_limit_s,
)
from latplan.physics.bioheat.kernels import (
    SERIAL_BELOW_VOXELS,
    _active_box,
    _step_heat,
    _step_heat_serial,
)


# --------------------------------------------------------------------------------------------
# simulations
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RfaController:
    """Temperature-controlled RFA generator with impedance roll-off (decisions, see module doc)."""

    max_power_w: float = 200.0
    target_c: float = 90.0
    rolloff_c: float = 100.0
    pause_s: float = 15.0
    gain_w_per_k: float = 2.0
    integral_w_per_k_s: float = 0.5
    cooled: bool = True        # internally cooled electrode (Cool-tip): electrode voxels held at electrode_c
    electrode_c: float = 25.0


def _cooled_electrode(rfa: RfaController, labels: np.ndarray, tissues: Sequence[Tissue],
                      initial_temperature_c: float | np.ndarray, sensor: np.ndarray | None,
                      ) -> tuple[np.ndarray, Sequence[Tissue], float | np.ndarray, np.ndarray]:
    """RFA set-up: with a cooled electrode, its voxels are held at the coolant temperature and
    the generator senses the hottest tissue within two voxels of it (impedance rises when it
    boils). Returns (labels, tissues, initial temperature, sensor mask)."""
    if sensor is None:
        raise InvalidInputError("an RFA run needs the electrode mask (from rfa_source).")
    electrode = np.asarray(sensor, bool)
    if not rfa.cooled:
        return np.asarray(labels), tissues, initial_temperature_c, electrode
    labels = np.asarray(labels).astype(np.uint8).copy()
    labels[electrode] = len(tissues)
    tissues = [*tissues, Tissue("cooled_electrode", 8000.0, 500.0, 16.0, fixed=True)]
    t_init = np.full(np.shape(labels), float(np.asarray(initial_temperature_c).flat[0]), np.float32) \
        if np.isscalar(initial_temperature_c) else np.asarray(initial_temperature_c, np.float32).copy()
    t_init[electrode] = rfa.electrode_c
    return labels, tissues, t_init, ndimage.binary_dilation(electrode, iterations=2) & ~electrode


def _quiescent_start(initial_temperature_c: float | np.ndarray, tab: dict[str, np.ndarray], lab: np.ndarray,
                     q: np.ndarray, t_blood: float, gate: float,
                     ) -> tuple[bool, np.ndarray, float, np.ndarray, np.ndarray, np.ndarray, int]:
    """Quiescent start (uniform T0 at equilibrium): update only the box where T differs from T0
    by more than 1e-4 K, grown by the number of steps until the next refresh + 2 voxels (the
    explicit stencil moves a disturbance one voxel per step; beyond the margin it is < 1e-4 K).
    Returns (quiescent, box, t0, lo, hi, interior, refresh)."""
    shape = lab.shape
    uniform_t0 = np.isscalar(initial_temperature_c) or np.ptp(np.asarray(initial_temperature_c)) == 0
    t0 = float(np.asarray(initial_temperature_c).flat[0])
    any_perf = bool(np.any(tab["perf"][np.unique(lab)] > 0))
    quiescent = uniform_t0 and (t0 == t_blood or not any_perf) and t0 < gate
    lo = np.array([1, 1, 1], np.int64)
    hi = np.array([shape[0] - 1, shape[1] - 1, shape[2] - 1], np.int64)
    interior = np.array([1, hi[0], 1, hi[1], 1, hi[2]], np.int64)
    refresh = 8
    src_mask = q > 0
    if quiescent and src_mask.any():
        src_box = _active_box(src_mask.astype(np.float32), np.float32(0.0), np.float32(0.5), refresh + 2, lo, hi)
        box = src_box.copy()
    else:
        quiescent = False
        src_box = interior
        box = interior.copy()
    return quiescent, box, t0, lo, hi, interior, refresh


def _coefficients(tab: dict[str, np.ndarray], lab: np.ndarray, h: np.ndarray, dt: float,
                  ) -> tuple[np.ndarray, np.ndarray, np.float32, np.ndarray, np.ndarray, np.ndarray]:
    """Per-voxel coefficients (see _step_heat): dt/ρc (0 = fixed voxel) and ρ_b c_b ω, and the
    uniform conductivity / h² (0 when not uniform) or the face conductivities / h²."""
    used = np.unique(lab)
    k_used = tab["k"][used]
    ih = (1.0 / h**2).astype(np.float32)
    # per-voxel coefficients (see _step_heat): dt/ρc (0 = fixed voxel) and ρ_b c_b ω
    av = np.where(tab["fixed"][lab], np.float32(0.0), (dt * tab["irc"].astype(np.float64))[lab]).astype(np.float32)
    wv = np.where(tab["fixed"][lab], np.float32(0.0), tab["perf"][lab]).astype(np.float32)
    if np.all(k_used == k_used[0]):
        k_uniform = np.float32(k_used[0] * ih[0]) if ih[0] == ih[1] == ih[2] else np.float32(0.0)
    else:
        k_uniform = np.float32(0.0)
    if k_uniform > 0:
        kfk = kfj = kfi = np.zeros((1, 1, 1), np.float32)
    else:
        kfk, kfj, kfi = _face_conductivities(tab["kface"], lab, ih)
    return av, wv, k_uniform, kfk, kfj, kfi


def _fields(shape: tuple[int, ...], initial_temperature_c: float | np.ndarray, source_w_m3_per_w: np.ndarray | None,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Float32 fields: temperature (old, new), peak, damage and the normalised source."""
    t_old = np.empty(shape, np.float32)
    t_old[...] = initial_temperature_c
    q = np.zeros(shape, np.float32) if source_w_m3_per_w is None else np.ascontiguousarray(source_w_m3_per_w, np.float32)
    if q.shape != shape:
        raise InvalidInputError(f"source shape {q.shape} differs from the label grid {shape}.")
    return t_old, t_old.copy(), t_old.copy(), np.zeros(shape, np.float32), q


def _heating_result(t_old: np.ndarray, peak: np.ndarray, damage: np.ndarray, spacing_kji_mm: Sequence[float],
                    dt: float, n: int, duration_s: float, wall: float, powers: np.ndarray,
                    info: dict[str, Any], threshold: float) -> BioheatResult:
    """The result of a heating run: zone = damage ≥ threshold (Ω ≥ 1 or CEM43 minutes)."""
    return BioheatResult(
        temperature_c=t_old,
        peak_temperature_c=peak,
        damage=damage,
        zone=damage >= threshold,
        spacing_kji_mm=(float(spacing_kji_mm[0]), float(spacing_kji_mm[1]), float(spacing_kji_mm[2])),
        dt_s=dt,
        steps=n,
        duration_s=float(duration_s),
        wall_s=wall,
        power_w=powers,
        info=info,
    )


def _heat_constants(blood_temperature_c: float | None, damage_gate_c: float | None,
                    ) -> tuple[float, float, float, float, dict[str, Any]]:
    """(blood °C, damage gate °C, ln A, E_a/R, the Arrhenius section) from the data file."""
    consts = thermal_constants()
    t_blood = float(consts["blood"]["temperature_c"]) if blood_temperature_c is None else float(blood_temperature_c)
    arr = consts["arrhenius"]
    gate = float(arr["gate_c"]) if damage_gate_c is None else float(damage_gate_c)
    ln_a = math.log(float(arr["frequency_factor_per_s"]))
    return t_blood, gate, ln_a, float(arr["activation_energy_j_mol"]) / GAS_CONSTANT_J_MOL_K, arr


def _generator_step(rfa: RfaController, te: float, now: float, dt: float, integ: float,
                    pause_until: float) -> tuple[float, float, float, int]:
    """One step of the temperature-controlled generator: (power W, integral, pause end, roll-off 0/1)."""
    rolled = 0
    if te >= rfa.rolloff_c:
        pause_until = now + rfa.pause_s
        rolled = 1
        integ *= 0.7  # the generator restarts lower after an impedance rise
    if now < pause_until:
        return 0.0, integ, pause_until, rolled
    err = rfa.target_c - te
    integ = min(max(integ + rfa.integral_w_per_k_s * err * dt, 0.0), rfa.max_power_w)
    return min(max(rfa.gain_w_per_k * err + integ, 0.0), rfa.max_power_w), integ, pause_until, rolled


def simulate_heating(
    labels: np.ndarray,
    tissues: Sequence[Tissue],
    spacing_kji_mm: Sequence[float],
    duration_s: float,
    *,
    source_w_m3_per_w: np.ndarray | None = None,
    power_w: float = 0.0,
    rfa: RfaController | None = None,
    sensor: np.ndarray | None = None,
    initial_temperature_c: float | np.ndarray = 37.0,
    blood_temperature_c: float | None = None,
    damage_gate_c: float | None = None,
    cem43: bool = False,
    dt_s: float | None = None,
    vaporisation_c: float | None = None,
    backend: str = "cpu",
    power_trace: tuple[float, np.ndarray] | None = None,
) -> BioheatResult:
    """Run a heating simulation (MWA: constant absorbed ``power_w``; RFA: ``rfa`` controller).

    Parameters
    ----------
    labels:
        uint8 array (k, j, i) indexing ``tissues``.
    source_w_m3_per_w:
        Normalised deposition (W/m³ per W, integrates to 1 W) from :func:`mwa_source` or
        :func:`rfa_source`; None = no source.
    power_w:
        Absorbed power (W) for a constant-power run (ignored when ``rfa`` is given).
    rfa, sensor:
        Generator model and the boolean electrode mask (from :func:`rfa_source`); with a
        cooled electrode the sensor is the tissue shell within two voxels of it.
    initial_temperature_c:
        Scalar or array (°C); outer faces stay at it.
    damage_gate_c, cem43:
        Arrhenius gate (°C; data-file default 45 °C) or CEM43 instead of Arrhenius.
    vaporisation_c:
        When set (e.g. 100 °C), tissue temperature is capped there and the surplus energy is
        counted as lost to vaporisation (steam leaving the tissue) — see the MWA calibration.
        None = no cap (energy-conserving; used by the analytic tests).
    power_trace:
        RFA only: ``(dt_s, delivered W per step)`` of an earlier run replayed instead of the
        controller (same energy history: two runs differ only by the tissue).
    backend:
        ``"cpu"`` (numba, the reference), ``"gpu"`` (CuPy/CUDA, :mod:`latplan.physics.bioheat.gpu`;
        :class:`~latplan.errors.NotAvailableError` without one) or ``"auto"`` (GPU when present).

    Returns
    -------
    BioheatResult with the zone = Ω ≥ 1 (or CEM43 ≥ 240 min).
    """
    if rfa is not None:
        labels, tissues, initial_temperature_c, sensor = _cooled_electrode(rfa, labels, tissues, initial_temperature_c, sensor)
    tab = _tables(tissues, np.asarray(labels))
    lab = tab["labels"]
    shape = lab.shape
    if min(shape) < 3:
        raise InvalidInputError(f"the bioheat grid needs at least 3 voxels per axis; got {shape}.")
    t_blood, gate, ln_a, ea_r, arr = _heat_constants(blood_temperature_c, damage_gate_c)
    h = _spacing_m(spacing_kji_mm)
    limit = stability_limit_s(tissues, spacing_kji_mm)
    dt, n = _choose_dt(duration_s, limit, dt_s)
    t_cap = 1e30 if vaporisation_c is None else float(vaporisation_c)

    t_old, t_new, peak, damage, q = _fields(shape, initial_temperature_c, source_w_m3_per_w)

    quiescent, box, t0, lo, hi, interior, refresh = _quiescent_start(initial_temperature_c, tab, lab, q, t_blood, gate)
    if len(tissues) > 127:
        raise InvalidInputError("the heating engine supports at most 127 tissues (label bit 7 marks coagulation).")
    lab = lab.copy()  # the kernel marks coagulated voxels in bit 7
    av, wv, k_uniform, kfk, kfj, kfi = _coefficients(tab, lab, h, dt)
    hot_c = np.float32(min(40.0, gate))
    powers = np.zeros(n, np.float32)
    sensor_idx = np.nonzero(sensor) if sensor is not None else None
    if rfa is not None and sensor_idx is None:
        raise InvalidInputError("an RFA run needs the electrode sensor mask (from rfa_source).")
    p = float(power_w)
    integ, pause_until, rolloffs, updates = 0.0, -1.0, 0, 0
    kernel = _step_heat_serial if lab.size < SERIAL_BELOW_VOXELS else _step_heat
    gpu = _gpu_stepper(backend, t_old, damage, peak, lab, q, k_uniform, kfk, kfj, kfi, av, wv, tab["stop"])
    start = time.perf_counter()
    for step in range(n):
        now = step * dt
        if rfa is not None and power_trace is not None:
            p = float(power_trace[1][min(int(now / power_trace[0] + 1e-9), len(power_trace[1]) - 1)])
        elif rfa is not None:
            te = gpu.max_at(sensor_idx) if gpu is not None else float(t_old[sensor_idx].max())
            p, integ, pause_until, rolled = _generator_step(rfa, te, now, dt, integ, pause_until)
            rolloffs += rolled
        powers[step] = p
        if gpu is not None:
            gpu.step(p, t_blood, dt, ln_a, ea_r, hot_c, gate, cem43, t_cap)
            updates += int(np.prod([n_ - 2 for n_ in shape]))
            continue
        kernel(t_old, t_new, damage, peak, lab, q, np.float32(p), k_uniform, kfk, kfj, kfi, av, wv, tab["stop"],
               np.float32(t_blood), np.float32(dt), ln_a, ea_r, hot_c, np.float32(gate), cem43, np.float32(t_cap), box)
        updates += int((box[1] - box[0]) * (box[3] - box[2]) * (box[5] - box[4]))
        t_old, t_new = t_new, t_old
        if quiescent and (step + 1) % refresh == 0:
            act = _active_box(t_old, np.float32(t0), np.float32(1e-4), refresh + 2, lo, hi)
            box = np.array([min(act[0], box[0]), max(act[1], box[1]), min(act[2], box[2]),
                            max(act[3], box[3]), min(act[4], box[4]), max(act[5], box[5])], np.int64)
            # t_new must equal t_old outside the box: both were untouched there since t0
            if np.array_equal(box, interior):
                quiescent = False
    if gpu is not None:
        gpu.synchronize()
    wall = time.perf_counter() - start
    if gpu is not None:
        t_old, peak, damage = gpu.fetch()
    return _heating_result(t_old, peak, damage, spacing_kji_mm, dt, n, duration_s, wall, powers, {
        "voxel_updates": updates,
        "stability_limit_s": limit,
        "damage_gate_c": gate,
        "damage_model": "CEM43" if cem43 else "Arrhenius",
        "rolloffs": rolloffs,
        "energy_j": float(powers.sum() * dt),
        "backend": "gpu" if gpu is not None else "cpu",
    }, float(arr["cem43_threshold_min"]) if cem43 else 1.0)
