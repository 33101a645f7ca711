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


def _vaporisation_store(tissues: Sequence[Tissue], lab: np.ndarray, vaporisation_c: float | None,
                        initial_temperature_c: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
    """Latent heat of tissue water for the heating kernel: (store, capacity, t_lo, t_hi), store and
    capacity per voxel in K-equivalents (J/m³ ÷ ρc: capacity = W·L_v / c of the voxel's tissue,
    ≈ 450 K for liver), the store at equilibrium with the initial temperature, and whether it is
    on. Without vaporisation: 1-voxel dummies (the kernel skips the exchange)."""
    if vaporisation_c is None:
        z = np.zeros((1, 1, 1), np.float32)
        return z, z.copy(), 0.0, 1.0, False
    v = thermal_constants()["vaporisation"]
    t_hi = float(vaporisation_c)
    t_lo = t_hi - (float(v["range_c"][1]) - float(v["range_c"][0]))
    per_kg = float(v["water_mass_fraction"]) * float(v["latent_heat_j_kg"])
    cap_t = np.array([0.0 if t.fixed else per_kg / t.heat_capacity_j_kg_k for t in tissues], np.float32)
    vcap = np.ascontiguousarray(cap_t[lab])
    t0 = np.broadcast_to(np.asarray(initial_temperature_c, np.float32), lab.shape)
    lat = (vcap * np.clip((t0 - t_lo) / (t_hi - t_lo), 0.0, 1.0)).astype(np.float32)
    return lat, vcap, t_lo, t_hi, True


def _latent_j(lat: np.ndarray, tab: dict[str, np.ndarray], h_m: np.ndarray) -> float:
    """Energy (J) held as latent heat: Σ store (K-equivalents) × ρc × voxel volume."""
    return float(np.sum(lat.astype(np.float64) * tab["rc"][tab["labels"]])) * float(np.prod(h_m))


def _dried_source(q0: np.ndarray, lat: np.ndarray, vcap: np.ndarray, fraction: float) -> np.ndarray:
    """MWA source after dehydration: voxels whose latent store is full (water vaporised) keep
    ``fraction`` of their SAR; the whole is rescaled so that the absorbed power is unchanged
    (the antenna's absorbed power moves outward into wet tissue, Ji & Brace 2011)."""
    dried = (vcap > 0) & (lat >= 0.999 * vcap)
    if not dried.any():
        return q0
    q = np.where(dried, np.float32(fraction) * q0, q0)
    total = float(q0.sum(dtype=np.float64))
    out: np.ndarray = (q * np.float32(total / max(float(q.sum(dtype=np.float64)), 1e-30))).astype(np.float32)
    return out


def _snapshot(snaps: list[np.ndarray], times: list[float], now: float, dt: float, damage: Any,
              threshold: float) -> None:
    """Append the zone (damage ≥ threshold) for every snapshot time reached by ``now`` (± dt/2)."""
    while times and now >= times[0] - 0.5 * dt:
        times.pop(0)
        snaps.append(damage() >= threshold)


def _grow_box(t_old: np.ndarray, t0: float, box: np.ndarray, refresh: int, lo: np.ndarray, hi: np.ndarray,
              interior: np.ndarray) -> tuple[np.ndarray, bool]:
    """The quiescent box grown to where T moved from t0 (see :func:`_quiescent_start`); False once
    it is the whole interior (t_new equals t_old outside the box: both untouched since t0)."""
    act = _active_box(t_old, np.float32(t0), np.float32(1e-4), refresh + 2, lo, hi)
    box = np.array([min(act[0], box[0]), max(act[1], box[1]), min(act[2], box[2]),
                    max(act[3], box[3]), min(act[4], box[4]), max(act[5], box[5])], np.int64)
    return box, not np.array_equal(box, interior)


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
    zone_snapshots_s: Sequence[float] = (),
    dried_sar_fraction: float | None = None,
) -> BioheatResult:
    """Run a heating simulation (MWA: constant absorbed ``power_w``; RFA: ``rfa`` controller) →
    :class:`BioheatResult` with the zone = Ω ≥ 1 (or CEM43 ≥ 240 min).

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
    vaporisation_c, dried_sar_fraction:
        Latent heat of tissue water up to ``vaporisation_c`` (:func:`_vaporisation_store`; energy
        conserved, ``info["latent_j"]``); dried voxels' SAR share (:func:`_dried_source`). None = off.
    power_trace:
        ``(dt_s, W per interval)`` replayed instead of ``power_w`` / the controller (an earlier RFA
        run's delivered power; an MWA absorbed-power history, :mod:`.calibration`).
    zone_snapshots_s:
        Times (s) at which the zone is also recorded (``info["zone_snapshots"]``, bool arrays).
    backend:
        ``"cpu"`` (numba, the reference), ``"gpu"`` (CuPy/CUDA, :mod:`latplan.physics.bioheat.gpu`;
        :class:`~latplan.errors.NotAvailableError` without one) or ``"auto"`` (GPU when present).
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
    lat, vcap, t_lo, t_hi, latent_on = _vaporisation_store(tissues, tab["labels"], vaporisation_c, initial_temperature_c)
    t_old, t_new, peak, damage, q = _fields(shape, initial_temperature_c, source_w_m3_per_w)
    quiescent, box, t0, lo, hi, interior, refresh = _quiescent_start(initial_temperature_c, tab, lab, q, t_blood, gate)
    if len(tissues) > 127:
        raise InvalidInputError("the heating engine supports at most 127 tissues (label bit 7 marks coagulation).")
    lab = lab.copy()  # the kernel marks coagulated voxels in bit 7
    av, wv, k_uniform, kfk, kfj, kfi = _coefficients(tab, lab, h, dt)
    hot_c, powers = np.float32(min(40.0, gate)), np.zeros(n, np.float32)
    sensor_idx = np.nonzero(sensor) if sensor is not None else None
    if rfa is not None and sensor_idx is None:
        raise InvalidInputError("an RFA run needs the electrode sensor mask (from rfa_source).")
    p, integ, pause_until, rolloffs, updates = float(power_w), 0.0, -1.0, 0, 0
    kernel = _step_heat_serial if lab.size < SERIAL_BELOW_VOXELS else _step_heat
    gpu = _gpu_stepper(backend, t_old, damage, peak, lab, q, k_uniform, kfk, kfj, kfi, av, wv, tab["stop"], lat, vcap)
    snaps: list[np.ndarray] = []
    snap_t, q0, threshold = sorted(float(x) for x in zone_snapshots_s), q, float(arr["cem43_threshold_min"]) if cem43 else 1.0
    if dried_sar_fraction is not None and gpu is not None:
        raise InvalidInputError("dried_sar_fraction (MWA dehydration) runs on the CPU backend only.")
    start = time.perf_counter()
    for step in range(n):
        now = step * dt
        if power_trace is not None:
            p = float(power_trace[1][min(int(now / power_trace[0] + 1e-9), len(power_trace[1]) - 1)])
        elif rfa is not None:
            te = gpu.max_at(sensor_idx) if gpu is not None else float(t_old[sensor_idx].max())
            p, integ, pause_until, rolled = _generator_step(rfa, te, now, dt, integ, pause_until)
            rolloffs += rolled
        powers[step] = p
        if gpu is not None:
            gpu.step(p, t_blood, dt, ln_a, ea_r, hot_c, gate, cem43, t_lo, t_hi, latent_on)
            updates += int(np.prod([n_ - 2 for n_ in shape]))
        else:
            kernel(t_old, t_new, damage, peak, lab, q, np.float32(p), k_uniform, kfk, kfj, kfi, av, wv, tab["stop"],
                   np.float32(t_blood), np.float32(dt), ln_a, ea_r, hot_c, np.float32(gate), cem43, lat, vcap,
                   np.float32(t_lo), np.float32(t_hi), latent_on, box)
            updates, t_old, t_new = updates + int((box[1] - box[0]) * (box[3] - box[2]) * (box[5] - box[4])), t_new, t_old
        _snapshot(snaps, snap_t, (step + 1) * dt, dt, lambda: gpu.fetch()[2] if gpu is not None else damage, threshold)
        if gpu is None and dried_sar_fraction is not None and latent_on:
            q = _dried_source(q0, lat, vcap, float(dried_sar_fraction))
        if gpu is None and quiescent and (step + 1) % refresh == 0:
            box, quiescent = _grow_box(t_old, t0, box, refresh, lo, hi, interior)
    if gpu is not None:
        gpu.synchronize()
    wall = time.perf_counter() - start
    if gpu is not None:
        (t_old, peak, damage), lat = gpu.fetch(), gpu.latent() if latent_on else lat
    return _heating_result(t_old, peak, damage, spacing_kji_mm, dt, n, duration_s, wall, powers, {
        "voxel_updates": updates,
        "stability_limit_s": limit,
        "damage_gate_c": gate,
        "damage_model": "CEM43" if cem43 else "Arrhenius",
        "rolloffs": rolloffs,
        "energy_j": float(powers.sum() * dt),
        "latent_j": _latent_j(lat, tab, h) if latent_on else 0.0,
        "zone_snapshots": snaps,
        "backend": "gpu" if gpu is not None else "cpu",
    }, threshold)
