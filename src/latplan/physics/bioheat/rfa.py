"""Monopolar RFA from an electric potential solve with σ(T) and an impedance-controlled generator.

    ∇·(σ(T)∇φ) = 0,  φ = U on the electrode, 0 at the box surface;   Q = σ|∇φ|²

Decisions
---------
* The potential is solved with the field solver of :mod:`latplan.physics.electroporation`
  (7-point finite volumes, MIC(0)-preconditioned CG, sub-voxel thin-needle correction: a 17 G
  electrode is a voxel line whose faces act as a 0.735 mm needle on any grid). The dispersive pads
  are far away: the box surface is an open (monopole, first-order absorbing) boundary, so the
  box acts as the infinite liver around it and neither impedance nor field depend on its size.
* Q is the Joule power of every face (g Δφ², half to each voxel; exactly U·I of the discrete
  circuit). The solve is repeated every ``solve_interval_s`` of simulated time (σ follows T),
  warm-started from the previous potential; between solves Q keeps its shape and scales with
  the generator power.
* σ(T) = σ₃₇ (1 + α (T − 37)) rising ≈ 1.5 %/°C, collapsing by two orders of magnitude between
  99 and 100 °C (desiccation; reversible when the tissue cools) — data file ``rfa_generator.yaml``.
* k(T) = k₃₇ (1 + β (T − 37)) up to 90 °C (β = 0.0082 /°C, Guntur et al. 2013; data file
  ``thermal``): the face conductivities follow the temperature at every potential solve.
* Perfused liver: :func:`in_vivo_tissues` gives liver the data file's in vivo perfusion (CT-measured,
  Bader et al. 2000); callers apply it explicitly (perfusion off = ex vivo). The Pennes sink stops
  where the tissue coagulates (the kernel's Ω ≥ 1 rule).
* Internally cooled electrode: its voxels are held at the coolant temperature.
* Boiling is latent heat (the kernel's enthalpy store between 99 and 100 °C, as for MWA): no
  temperature cap, no energy deleted.
* Generator (impedance control as on the Cool-tip): power ramps towards the maximum; when the
  impedance rises a set amount above its lowest value since the last restart the output is cut
  for a pause, then restarts lower and ramps again (roll-off and recovery).
* Several electrodes: one generator, a switching controller (:class:`_Drive`) feeds one electrode
  at a time — moves on after ``switch_dwell_s`` or at a roll-off (switching monopolar RFA,
  Haemmerich et al., Radiology 2005;234:563).

Pure physics: the device is an electrode geometry and a generator; nothing clinical.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
import yaml

from latplan.errors import InvalidInputError, PlanningError, SourceDataError
from latplan.physics.bioheat.controllers import (
    _coefficients,
    _fields,
    _heat_constants,
    _heating_result,
    _latent_j,
    _vaporisation_store,
)
from latplan.physics.bioheat.data import BioheatResult, Tissue
from latplan.physics.bioheat.grid import (
    _choose_dt,
    _face_conductivities,
    _spacing_m,
    _tables,
    stability_limit_s,
)
from latplan.physics.bioheat.kernels import SERIAL_BELOW_VOXELS, _step_heat, _step_heat_serial
from latplan.physics.electroporation import Needle, _pcg_stencil, electrode_voxels
from latplan.physics.field_stencil import face_conductances_into, gather_system_into

RFA_DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "ablation" / "rfa_generator.yaml"
#: largest thermal step of an RFA run (s): the generator reacts within seconds
RFA_MAX_DT_S = 1.0
#: tissue water boils here (°C): the latent store fills between 99 and 100 °C, where σ collapses
VAPORISATION_C = 100.0


@nb.njit(cache=True)
def _face_g(sigma, boost, ax, k, j, i, h):  # type: ignore[no-untyped-def]  # numba  # pragma: no cover
    """Conductance / h² (S/m³) of the face between voxel (k, j, i) and its +ax neighbour."""
    a = sigma[k, j, i]
    b = sigma[k + 1, j, i] if ax == 0 else (sigma[k, j + 1, i] if ax == 1 else sigma[k, j, i + 1])
    if a + b <= 0.0:
        return 0.0
    g: float = 2.0 * a * b / (a + b) / (h * h) * boost[k, j, i]
    return g


@nb.njit(cache=True)
def _assemble(sigma, b0, b1, b2, fixed, fixed_val, h0, h1, h2, outer):  # type: ignore[no-untyped-def]  # numba  # pragma: no cover
    """The padded 7-point system of :func:`latplan.physics.electroporation._stencil_system`
    (same arrays, same elimination of the Dirichlet voxels; assembled by
    :func:`latplan.physics.field_stencil.gather_system_into`), plus the open-boundary conductance
    ``outer`` × σ on the diagonal of the box's surface voxels."""
    nk, nj, ni = sigma.shape
    g0 = np.empty(b0.shape)
    g1 = np.empty(b1.shape)
    g2 = np.empty(b2.shape)
    face_conductances_into(sigma, b0, 0, h0 * h0, g0)
    face_conductances_into(sigma, b1, 1, h1 * h1, g1)
    face_conductances_into(sigma, b2, 2, h2 * h2, g2)
    d0 = np.empty((nk, nj, ni))
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                d0[k, j, i] = outer[k, j, i] * sigma[k, j, i]
    diag = np.ones((nk + 2, nj + 2, ni + 2))
    rhs = np.zeros((nk + 2, nj + 2, ni + 2))
    ck = np.zeros((nk + 2, nj + 2, ni + 2))
    cj = np.zeros((nk + 2, nj + 2, ni + 2))
    ci = np.zeros((nk + 2, nj + 2, ni + 2))
    gather_system_into(g0, g1, g2, d0, fixed, fixed_val, diag, ck, cj, ci, rhs)
    return diag, ck, cj, ci, rhs


@nb.njit(cache=True)
def _joule_current(phi, sigma, b0, b1, b2, fixed, mask, h0, h1, h2, inside):  # type: ignore[no-untyped-def]  # numba  # pragma: no cover
    """Face Joule density (W/m³) and the current out of ``mask`` (A), as
    :func:`latplan.physics.electroporation._face_joule_w_m3` / ``_needle_current`` except that a
    face between a Dirichlet voxel and tissue gives all its power g·Δφ² to the tissue voxel (the
    electrode voxel is metal held at the coolant temperature, not tissue), less the share
    ``inside`` dissipated within the electrode voxel's own cell (next to the coolant, removed by it;
    see :func:`_inside_share`)."""
    nk, nj, ni = phi.shape
    vol = h0 * h1 * h2
    out = np.zeros(phi.shape)
    current = 0.0
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                for ax in range(3):
                    if ax == 0:
                        if k + 1 >= nk:
                            continue
                        kb, jb, ib = k + 1, j, i
                        gs = _face_g(sigma, b0, 0, k, j, i, h0) * h0 * h1 * h2
                    elif ax == 1:
                        if j + 1 >= nj:
                            continue
                        kb, jb, ib = k, j + 1, i
                        gs = _face_g(sigma, b1, 1, k, j, i, h1) * h1 * h0 * h2
                    else:
                        if i + 1 >= ni:
                            continue
                        kb, jb, ib = k, j, i + 1
                        gs = _face_g(sigma, b2, 2, k, j, i, h2) * h2 * h0 * h1
                    d = phi[k, j, i] - phi[kb, jb, ib]
                    ma, mb = mask[k, j, i], mask[kb, jb, ib]
                    if ma and not mb:
                        current += gs * d
                    elif mb and not ma:
                        current -= gs * d
                    fa, fb = fixed[k, j, i], fixed[kb, jb, ib]
                    if fa and fb:
                        continue
                    p = gs * d * d / vol
                    if fa:            # a face of the electrode (or the ground): the tissue side gets
                        out[kb, jb, ib] += p * (1.0 - inside * ma)   # what is not dissipated inside the electrode's cell
                    elif fb:
                        out[k, j, i] += p * (1.0 - inside * mb)
                    else:
                        out[k, j, i] += 0.5 * p
                        out[kb, jb, ib] += 0.5 * p
    return out, current


@nb.njit(cache=True)
def _sigma_t(sig37, t, alpha, t_ref, t0, t1, frac):  # type: ignore[no-untyped-def]  # numba  # pragma: no cover
    """σ(T) of :func:`conductivity_at`, one pass."""
    nk, nj, ni = t.shape
    out = np.empty((nk, nj, ni))
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                tt = float(t[k, j, i])
                rise = max(1.0 + alpha * (min(tt, t0) - t_ref), 0.05)
                drop = min(max((tt - t0) / (t1 - t0), 0.0), 1.0)
                out[k, j, i] = sig37[k, j, i] * rise * (1.0 - (1.0 - frac) * drop)
    return out


@cache
def rfa_constants() -> dict[str, Any]:
    """The RFA data file (σ(T), electrode, generator, reference values), with citation."""
    try:
        data = yaml.safe_load(RFA_DATA_FILE.read_text())
    except (OSError, yaml.YAMLError) as exc:  # pragma: no cover - packaging error
        raise SourceDataError(f"cannot read {RFA_DATA_FILE}: {exc}") from exc
    for key in ("citation", "electrical", "thermal", "perfusion", "electrode", "generator", "reference", "calibration"):
        if key not in data:
            raise SourceDataError(f"{RFA_DATA_FILE} lacks the '{key}' section.")
    out: dict[str, Any] = data
    return out


@dataclass(frozen=True)
class RfaGenerator:
    """Impedance-controlled generator and its internally cooled electrode (see module doc)."""

    max_power_w: float
    ramp_w_per_s: float
    rolloff_rise_ohm: float
    pause_s: float
    restart_fraction: float
    initial_power_w: float
    solve_interval_s: float
    coolant_c: float
    radius_mm: float
    active_length_mm: float
    switch_dwell_s: float = 30.0   # several electrodes: the switching controller's longest dwell

    def __post_init__(self) -> None:
        if not (self.max_power_w > 0 and self.ramp_w_per_s >= 0 and self.rolloff_rise_ohm > 0
                and self.pause_s >= 0 and 0 <= self.restart_fraction <= 1 and self.solve_interval_s > 0
                and self.switch_dwell_s > 0):
            raise InvalidInputError(f"RFA generator settings out of range: {self}; see {RFA_DATA_FILE.name}.")


def default_generator(**overrides: float) -> RfaGenerator:
    """The data file's generator and electrode (Cool-tip 17 G, 3 cm), with ``overrides``."""
    c = rfa_constants()
    g, e = c["generator"], c["electrode"]
    vals = {k: float(g[k]) for k in ("max_power_w", "ramp_w_per_s", "rolloff_rise_ohm", "pause_s",
                                     "restart_fraction", "initial_power_w", "solve_interval_s",
                                     "switch_dwell_s")}
    vals.update(coolant_c=float(e["coolant_c"]), radius_mm=float(e["radius_mm"]),
                active_length_mm=float(e["active_length_mm"]))
    vals.update({k: float(v) for k, v in overrides.items()})
    return RfaGenerator(**vals)


def _open_boundary(shape: Sequence[int], spacing_kji_mm: Sequence[float], centre_kji_mm: np.ndarray) -> np.ndarray:
    """Open-boundary conductance per voxel volume and per S/m (1/m²) of the box's surface voxels.

    Far from the electrode the potential is a monopole, φ ∝ 1/r, so ∂φ/∂n = −(r̂·n) φ / r: each
    outer face of area A passes the current σ A (r̂·n) φ / r to the ground at infinity (first-order
    absorbing condition, Bayliss & Turkel, Commun Pure Appl Math 1980). The box then acts as the
    infinite liver around it, with the dispersive pads far away; nothing depends on where it ends."""
    sp = np.asarray(spacing_kji_mm, float) / 1000.0
    c = np.asarray(centre_kji_mm, float) / 1000.0
    out = np.zeros(tuple(shape))
    grids = np.meshgrid(*(np.arange(n) * sp[ax] for ax, n in enumerate(shape)), indexing="ij")
    for ax in range(3):
        for side, idx in ((-1.0, 0), (1.0, shape[ax] - 1)):
            sl = tuple(idx if a == ax else slice(None) for a in range(3))
            pos = [g[sl] for g in grids]
            pos[ax] = pos[ax] + side * 0.5 * sp[ax]          # the outer face's centre
            d = [p - cc for p, cc in zip(pos, c, strict=True)]
            r = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
            cos = np.clip(side * d[ax] / np.maximum(r, 1e-12), 0.05, 1.0)
            out[sl] += cos / (np.maximum(r, 1e-12) * sp[ax])
    return out


def _inside_share(spacing_kji_mm: Sequence[float], needle: Needle) -> float:
    """Share of an electrode face's Joule power dissipated inside the electrode voxel's cell.

    Around a thin needle of radius a the power density falls as 1/r², so the power between a and r
    grows as ln(r/a); the face to the next voxel carries the resistance ln(0.955 h/a) (well index,
    :class:`~latplan.physics.electroporation.ElectrodeVoxels`) and the electrode's cell reaches the
    radius of its own area, h/√π. That part lies against the cooled metal and goes to the coolant."""
    sp = np.asarray(spacing_kji_mm, float)
    a = np.abs(np.asarray(needle.direction_kji))
    dom = int(np.argmax(a / sp))
    across = [ax for ax in range(3) if ax != dom]
    h = float(np.sqrt(sp[across[0]] * sp[across[1]]))
    outer = math.log(math.exp(0.5 * math.pi) * 0.1985 * h / needle.radius_mm)
    if outer <= 0.0:
        return 0.0
    return min(max(math.log(h / (math.sqrt(math.pi) * needle.radius_mm)) / outer, 0.0), 1.0)


def electrode_needle(tip_kji_mm: Sequence[float], direction_kji: Sequence[float],
                     generator: RfaGenerator | None = None) -> Needle:
    """The generator's electrode (radius, active length) with its tip at ``tip_kji_mm`` (grid mm),
    ``direction_kji`` from the entry toward the tip."""
    g = generator or default_generator()
    return Needle((float(tip_kji_mm[0]), float(tip_kji_mm[1]), float(tip_kji_mm[2])),
                  (float(direction_kji[0]), float(direction_kji[1]), float(direction_kji[2])),
                  g.active_length_mm, g.radius_mm)


def tissue_conductivity_s_m(tissues: Sequence[Tissue]) -> np.ndarray:
    """σ at 37 °C (S/m) of each tissue: the data file's value of the longest name it starts with."""
    table = rfa_constants()["electrical"]["conductivity_s_m"]
    out = []
    for t in tissues:
        keys = [k for k in table if t.name == k or t.name.startswith(k)]
        if not keys:
            raise InvalidInputError(f"no electrical conductivity for tissue {t.name!r}: add it to "
                                    f"{RFA_DATA_FILE} (electrical.conductivity_s_m) or pass sigma_s_m.")
        out.append(float(table[max(keys, key=len)]))
    return np.asarray(out)


def in_vivo_tissues(tissues: Sequence[Tissue]) -> list[Tissue]:
    """``tissues`` with the data file's in vivo perfusion (``perfusion.liver_in_vivo_per_s``) for the
    tissue named ``liver`` (the other tissues unchanged): the RFA model's perfused liver."""
    w = float(rfa_constants()["perfusion"]["liver_in_vivo_per_s"])
    return [replace(t, perfusion_per_s=w) if t.name == "liver" else t for t in tissues]


def conductivity_at(sigma37_s_m: np.ndarray, temperature_c: np.ndarray) -> np.ndarray:
    """σ(T) (S/m): +α per °C from 37 °C, falling linearly to ``desiccated_fraction`` between the
    desiccation start and end temperatures (data file)."""
    e = rfa_constants()["electrical"]
    alpha = float(e["temperature_coefficient_per_c"])
    t_ref, t0, t1 = float(e["reference_temperature_c"]), float(e["desiccation_start_c"]), float(e["desiccation_end_c"])
    frac = float(e["desiccated_fraction"])
    t = np.asarray(temperature_c, np.float64)
    rise = 1.0 + alpha * (np.minimum(t, t0) - t_ref)
    drop = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)
    out: np.ndarray = sigma37_s_m * np.maximum(rise, 0.05) * (1.0 - (1.0 - frac) * drop)
    return out


#: CG tolerance (‖r‖/‖b‖) of the potential solves in a run. 3e-4 instead of the solver's 1e-4: on a
#: 3-electrode planner run (12 min, 2 mm) the same energy (81.76 kJ), roll-offs (9) and zone
#: (5746 vs 5744 voxels, 0.03 %) in 25 % fewer CG iterations; with the extrapolated warm start of
#: ``PotentialSolver.solve_raw`` 4786 → 2922 iterations in all (−39 %; round 2, 2026-12-05)
RUN_CG_RTOL = 3e-4


class PotentialSolver:
    """Repeated potential solves on one grid: electrode at 1 V, box surface at 0 V, warm start."""

    def __init__(self, shape: tuple[int, int, int], spacing_kji_mm: Sequence[float], needles: Sequence[Needle],
                 rtol: float = 1e-4) -> None:
        self.spacing_m = _spacing_m(spacing_kji_mm)
        self.mask = np.zeros(shape, bool)
        self.boost = [np.ones(tuple(n - (1 if ax == a else 0) for a, n in enumerate(shape))) for ax in range(3)]
        for nd in needles:  # needles at one potential (wired together): union of voxels, product of face factors
            ev = electrode_voxels(shape, spacing_kji_mm, nd)
            self.mask |= ev.mask
            self.boost = [b * f for b, f in zip(self.boost, ev.face_factors(shape), strict=True)]
        if not self.mask.any():
            raise InvalidInputError("the RFA electrode lies outside the simulation box; move it or grow the box.")
        self.surface = np.ones(shape, bool)
        self.surface[1:-1, 1:-1, 1:-1] = False
        if np.any(self.mask & self.surface):
            raise InvalidInputError("the RFA electrode touches the box surface (the open boundary); grow the box.")
        self.inside = _inside_share(spacing_kji_mm, needles[0])
        self.fixed = self.mask.copy()
        self.fixed_val = np.where(self.mask, 1.0, 0.0)
        centre = np.mean([np.asarray(nd.tip_kji_mm) - 0.5 * nd.active_length_mm * np.asarray(nd.direction_kji)
                          for nd in needles], axis=0)
        self.outer = _open_boundary(shape, spacing_kji_mm, centre)
        self.x = np.zeros(tuple(n + 2 for n in shape))
        self.x_prev: np.ndarray | None = None
        self.rtol = rtol
        self.iterations = 0

    def solve_raw(self, sigma: np.ndarray, extrapolate: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
        """(potential, face Joule density W/m³, electrode current A) at 1 V on the electrode.

        ``extrapolate``: the last two solves were one cadence apart — start CG from their linear
        extrapolation (only the initial guess; the result is the same within ``rtol``: ≈ 17 % fewer
        iterations, measured on a 3-electrode planner run, round 2)."""
        cur = self.x.copy()
        if extrapolate and self.x_prev is not None:
            self.x += cur - self.x_prev
        self.x_prev = cur if extrapolate else None  # a fresh stretch: the next guess is the plain warm start
        h0, h1, h2 = (float(x) for x in self.spacing_m)
        b0, b1, b2 = self.boost
        diag, ck, cj, ci, rhs = _assemble(sigma, b0, b1, b2, self.fixed, self.fixed_val, h0, h1, h2, self.outer)
        n, res = _pcg_stencil(diag, ck, cj, ci, rhs, self.x, self.rtol, 5000, True)
        self.iterations += int(n)
        if res > 10.0 * self.rtol:
            raise PlanningError(f"RFA potential solve did not converge ({n} CG iterations, residual {res:.1e}).")
        phi = np.where(self.fixed, self.fixed_val, self.x[1:-1, 1:-1, 1:-1])
        joule, current_a = _joule_current(phi, sigma, b0, b1, b2, self.fixed, self.mask, h0, h1, h2, self.inside)
        return phi, joule, float(current_a)

    def solve(self, sigma: np.ndarray, extrapolate: bool = False) -> tuple[np.ndarray, float]:
        """(Joule density W/m³ per W delivered by the generator, impedance Ω incl. the tissue beyond the box)."""
        _, joule, current_a = self.solve_raw(sigma, extrapolate)
        # U = 1 V: the generator's power is I; the box dissipates Σ joule·vol, the rest goes beyond it
        q: np.ndarray = joule / max(current_a, 1e-30)
        z = 1.0 / max(current_a, 1e-30)
        return q, z


def _conductivity_law() -> tuple[float, float]:
    """k(T) of the data file: (linear temperature coefficient 1/°C, temperature °C above which k stays)."""
    th = rfa_constants()["thermal"]
    return float(th["conductivity_temperature_coefficient_per_c"]), float(th["conductivity_rise_until_c"])


@nb.njit(cache=True)
def _conductivity_with_temperature(b0, b1, b2, o0, o1, o2, t, cold, beta, t_ref, t_max):  # type: ignore[no-untyped-def]  # numba  # pragma: no cover
    """k(T) = k₃₇ (1 + β (T − 37)) up to ``t_max``, in place on the face conductivities ``o0..o2``
    (towards +k, +j, +i; ``b0..b2`` those at 37 °C): each face takes the mean factor of its two
    voxels; a face of the cooled electrode or shaft the factor of its tissue side (the metal's own
    conductivity does not change)."""
    nk, nj, ni = t.shape
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                ma = max(1.0 + beta * (min(float(t[k, j, i]), t_max) - t_ref), 0.05)
                ca = cold[k, j, i]
                for ax in range(3):
                    if ax == 0:
                        if k + 1 >= nk:
                            continue
                        kb, jb, ib = k + 1, j, i
                    elif ax == 1:
                        if j + 1 >= nj:
                            continue
                        kb, jb, ib = k, j + 1, i
                    else:
                        if i + 1 >= ni:
                            continue
                        kb, jb, ib = k, j, i + 1
                    mb = max(1.0 + beta * (min(float(t[kb, jb, ib]), t_max) - t_ref), 0.05)
                    cb = cold[kb, jb, ib]
                    f = mb if ca else (ma if cb else 0.5 * (ma + mb))
                    if ax == 0:
                        o0[k, j, i] = b0[k, j, i] * f
                    elif ax == 1:
                        o1[k, j, i] = b1[k, j, i] * f
                    else:
                        o2[k, j, i] = b2[k, j, i] * f


@dataclass
class _Control:
    """Generator state: power, restart level, lowest impedance since the restart, pause end."""

    power_w: float
    z_min: float = math.inf
    pause_until: float = -1.0
    cut_power_w: float = 0.0
    rolloffs: int = 0
    paused: bool = False

    def step(self, g: RfaGenerator, z: float, now: float, dt: float) -> float:
        if self.paused:
            if now < self.pause_until:
                return 0.0
            self.paused = False
            self.power_w = max(g.restart_fraction * self.cut_power_w, g.initial_power_w)
            self.z_min = z
        self.z_min = min(self.z_min, z)
        if z > self.z_min + g.rolloff_rise_ohm:
            self.paused, self.pause_until, self.cut_power_w = True, now + g.pause_s, self.power_w
            self.rolloffs += 1
            return 0.0
        self.power_w = min(self.power_w + g.ramp_w_per_s * dt, g.max_power_w)
        return self.power_w


class _Drive:
    """Which electrode the one generator feeds, and at what power (see the module doc).

    One electrode: the impedance control of :class:`_Control`. Several: a **switching controller**
    — the generator feeds one electrode at a time and moves on to the next after
    ``switch_dwell_s`` or at once when the active electrode rolls off (its impedance rises
    ``rolloff_rise_ohm`` above its lowest value since it was last restarted); a rolled-off electrode
    rests ``pause_s`` and is skipped. The generator's rule of one electrode is kept, only its pause
    is spent on the next electrode: at a roll-off the output restarts at ``restart_fraction`` of the
    power at the cut, on the next electrode at once; with every electrode resting the output is off.
    (Assumption; keeping the full output across a roll-off instead was measured and is in the docs.) ``active_trace`` (one electrode
    index per step, −1 = off) replays an earlier run's switching together with its power.
    """

    def __init__(self, solvers: Sequence[PotentialSolver], g: RfaGenerator,
                 replay: tuple[float, np.ndarray] | None) -> None:
        self.solvers, self.g, self.replay = list(solvers), g, replay
        n = len(self.solvers)
        self.ctl = _Control(g.initial_power_w)
        self.active, self.since, self.rolloffs = 0, 0.0, 0
        self.z_min, self.rest_until = [math.inf] * n, [-1.0] * n
        self.q: np.ndarray | None = None
        self.z = math.inf
        self.z_trace: list[float] = []
        self.last_solved = -1

    def _solve(self, sigma: np.ndarray) -> None:
        # the same electrode as the last solve: its solution moves smoothly, extrapolate the guess
        self.q, self.z = self.solvers[self.active].solve(sigma, extrapolate=self.active == self.last_solved)
        self.last_solved = self.active
        self.z_trace.append(self.z)

    def _replayed(self, now: float) -> int:
        assert self.replay is not None
        dt_s, trace = self.replay
        return max(int(trace[min(int(now / dt_s + 1e-9), len(trace) - 1)]), 0)

    def switch_due(self, now: float) -> bool:
        """A replayed switch falls between two solves (the replay may run on another time step)."""
        return self.replay is not None and self._replayed(now) != self.active

    def solve(self, sigma: np.ndarray, now: float) -> None:
        """The potential of the electrode fed now (σ of this instant); switches where due."""
        if self.replay is not None:
            self.active = self._replayed(now)
            self._solve(sigma)
            return
        if self.active < 0:  # all resting: wake the first whose rest is over
            if now < min(self.rest_until):
                return
            self.active = min(range(len(self.solvers)), key=lambda c: self.rest_until[c])
            self.since, self.z_min[self.active] = now, math.inf
        self._solve(sigma)
        if len(self.solvers) == 1:
            return
        a = self.active
        self.z_min[a] = min(self.z_min[a], self.z)
        rolled = self.z > self.z_min[a] + self.g.rolloff_rise_ohm
        if rolled:
            self.rest_until[a], self.z_min[a] = now + self.g.pause_s, math.inf
            self.rolloffs += 1
            self.ctl.power_w = max(self.g.restart_fraction * self.ctl.power_w, self.g.initial_power_w)
        if not (rolled or now - self.since >= self.g.switch_dwell_s):
            return
        free = [c for c in (np.arange(1, len(self.solvers) + 1) + a) % len(self.solvers) if now >= self.rest_until[c]]
        if not free:  # every electrode rests: the output is off
            self.active = -1
            return
        if int(free[0]) != a:
            self.active, self.since = int(free[0]), now
            self._solve(sigma)
            self.z_min[self.active] = min(self.z_min[self.active], self.z)
        else:
            self.since = now

    def power(self, now: float, dt: float, power_trace: tuple[float, np.ndarray] | None) -> float:
        if power_trace is not None:
            return float(power_trace[1][min(int(now / power_trace[0] + 1e-9), len(power_trace[1]) - 1)])
        if len(self.solvers) == 1:
            p = self.ctl.step(self.g, self.z, now, dt)
            self.rolloffs = self.ctl.rolloffs
            return p
        if self.active < 0:
            return 0.0
        self.ctl.power_w = min(self.ctl.power_w + self.g.ramp_w_per_s * dt, self.g.max_power_w)
        return self.ctl.power_w


def _electrodes(shape: tuple[int, int, int], spacing_kji_mm: Sequence[float], nds: Sequence[Needle],
                g: RfaGenerator, power_trace: tuple[float, np.ndarray] | None,
                active_trace: np.ndarray | None) -> tuple[_Drive, np.ndarray, list[np.ndarray]]:
    """One potential solver per electrode (each fed alone), their switching drive, the union of
    the electrode voxels and the product of their sub-voxel face factors."""
    if not nds:
        raise InvalidInputError("an RFA run needs at least one electrode.")
    if active_trace is not None and power_trace is None:
        raise InvalidInputError("active_trace replays a switching run together with its power_trace.")
    solvers = [PotentialSolver(shape, spacing_kji_mm, [nd], rtol=RUN_CG_RTOL) for nd in nds]
    el = np.logical_or.reduce([sv.mask for sv in solvers])
    boost = [np.prod([sv.boost[ax] for sv in solvers], axis=0) for ax in range(3)]
    replay = None if active_trace is None or power_trace is None else (float(power_trace[0]), np.asarray(active_trace))
    return _Drive(solvers, g, replay), el, boost


def _cooled_shafts(shape: tuple[int, int, int], spacing_kji_mm: Sequence[float], needles: Sequence[Needle],
                   active: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The electrodes' insulated shafts (from the active part back to the box surface): the coolant
    flows through them, so they are held at the coolant temperature (thermal sub-voxel factors as
    the active part) but carry no current. Returns (mask, face factors)."""
    mask = np.zeros(shape, bool)
    boost = [np.ones(tuple(n - (1 if ax == a else 0) for a, n in enumerate(shape))) for ax in range(3)]
    reach = float(np.linalg.norm(np.asarray(shape) * np.asarray(spacing_kji_mm, float)))
    for nd in needles:
        d = np.asarray(nd.direction_kji)
        back = np.asarray(nd.tip_kji_mm) - nd.active_length_mm * d
        ev = electrode_voxels(shape, spacing_kji_mm, Needle(tuple(back.tolist()), nd.direction_kji, reach, nd.radius_mm))
        m = ev.mask & ~active
        if not m.any():
            continue
        mask |= m
        factors = ev.face_factors(shape)
        for ax in range(3):   # only the faces of shaft voxels that do not also touch the active part
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[ax], hi[ax] = slice(0, shape[ax] - 1), slice(1, shape[ax])
            touch = (m[tuple(lo)] | m[tuple(hi)]) & ~(active[tuple(lo)] | active[tuple(hi)])
            boost[ax] = np.where(touch, boost[ax] * factors[ax], boost[ax])
    return mask, boost


def _damage_of_the_track(damage: np.ndarray, cold: np.ndarray) -> None:
    """The cooled electrode's and shaft's own voxels (metal held at the coolant temperature) take the
    largest damage of their tissue face neighbours: the track lies inside the zone it makes, not a
    hole in it (in place)."""
    from scipy import ndimage

    if not cold.any():
        return
    tissue = np.where(cold, 0.0, damage.astype(np.float64))
    cross = ndimage.generate_binary_structure(3, 1)
    near = ndimage.grey_dilation(tissue, footprint=cross)
    damage[cold] = near[cold].astype(damage.dtype)


def _rfa_setup(labels: np.ndarray, tissues: Sequence[Tissue], g: RfaGenerator,
               initial_temperature_c: float, electrode_mask: np.ndarray,
               ) -> tuple[np.ndarray, list[Tissue], np.ndarray]:
    """Labels with the cooled electrode as a fixed tissue, and the initial temperature field."""
    lab = np.asarray(labels).astype(np.uint8).copy()
    if len(tissues) >= 127:
        raise InvalidInputError("the heating engine supports at most 126 tissues plus the electrode.")
    lab[electrode_mask] = len(tissues)
    all_t = [*tissues, Tissue("cooled_electrode", 8000.0, 500.0, 16.0, fixed=True)]
    t_init = np.full(lab.shape, float(initial_temperature_c), np.float32)
    t_init[electrode_mask] = g.coolant_c
    return lab, all_t, t_init


def simulate_rfa(
    labels: np.ndarray,
    tissues: Sequence[Tissue],
    spacing_kji_mm: Sequence[float],
    duration_s: float,
    needles: Needle | Sequence[Needle],
    *,
    generator: RfaGenerator | None = None,
    sigma_s_m: Sequence[float] | None = None,
    initial_temperature_c: float = 37.0,
    power_trace: tuple[float, np.ndarray] | None = None,
    active_trace: np.ndarray | None = None,
) -> BioheatResult:
    """One RFA run: potential solve with σ(T) every ``solve_interval_s``, Pennes heating, generator.

    ``needles``: the electrode's active tip in grid mm (:class:`~latplan.physics.electroporation.Needle`,
    see :func:`electrode_needle`), or several electrodes fed in turn by one generator through a
    switching controller (:class:`_Drive`; ``max_power_w`` is the generator's, shared). ``sigma_s_m``: σ at 37 °C per tissue (default: data file by tissue
    name). ``power_trace`` ``(dt_s, W per step)`` replays an earlier run's generator power instead,
    ``active_trace`` (per step of that trace, ``info["active_electrode"]``) its switching.
    Tissue water boils as latent heat (``_vaporisation_store`` at ``VAPORISATION_C``, the kernel's
    enthalpy exchange as for MWA): no temperature cap, no energy deleted; the first law holds to
    the kernel's accuracy (``energy_latent_j`` holds what the vaporisation store took).

    ``info``: ``energy_j`` (generator output), ``energy_tissue_j`` (dissipated inside the box), ``rolloffs``,
    ``baseline_impedance_ohm``, ``impedance_ohm`` (per solve), ``solves``, ``cg_iterations``, ``electrode``.
    """
    g = generator or default_generator()
    lab0 = np.asarray(labels)
    shape = tuple(int(x) for x in lab0.shape)
    if len(shape) != 3 or min(shape) < 5:
        raise InvalidInputError(f"the RFA grid needs ≥ 5 voxels per axis; got {shape}.")
    sig37_t = np.asarray(sigma_s_m, float) if sigma_s_m is not None else tissue_conductivity_s_m(tissues)
    if sig37_t.shape != (len(tissues),) or np.any(sig37_t <= 0):
        raise InvalidInputError(f"sigma_s_m needs one conductivity > 0 S/m per tissue ({len(tissues)}).")
    nds = [needles] if isinstance(needles, Needle) else list(needles)
    drive, el, boost = _electrodes((shape[0], shape[1], shape[2]), spacing_kji_mm, nds, g, power_trace, active_trace)
    shaft, shaft_boost = _cooled_shafts((shape[0], shape[1], shape[2]), spacing_kji_mm, nds, el)
    lab, all_t, t_init = _rfa_setup(lab0, tissues, g, initial_temperature_c, el | shaft)
    tab = _tables(all_t, lab)
    lab = tab["labels"].copy()
    # electrode voxels: the boundary-layer tissue's σ (the faces carry the sub-voxel factor);
    # the insulated shaft conducts no current
    sig37 = np.where(shaft, 1e-6 * float(sig37_t.min()), sig37_t[np.asarray(lab0, np.intp)])
    t_blood, gate, ln_a, ea_r, _ = _heat_constants(None, None)
    h = _spacing_m(spacing_kji_mm)
    dt, n = _choose_dt(duration_s, min(stability_limit_s(tissues, spacing_kji_mm), RFA_MAX_DT_S), None)
    t_old, t_new, peak, damage, _ = _fields(shape, t_init, None)
    # boiling as latent heat (no cap): the store fills between 99 and 100 °C, where σ collapses
    lat, vcap, t_lo, t_hi, latent_on = _vaporisation_store(all_t, tab["labels"], VAPORISATION_C, t_init)
    lat0 = _latent_j(lat, tab, h)
    cold = el | shaft
    e_c = rfa_constants()["electrical"]
    s_args = tuple(float(e_c[k]) for k in ("temperature_coefficient_per_c", "reference_temperature_c",
                                           "desiccation_start_c", "desiccation_end_c", "desiccated_fraction"))
    av, wv, _, _, _, _ = _coefficients(tab, lab, h, dt)
    # conduction into the cooled electrode with the same sub-voxel factors as the current: the
    # voxel line then draws the heat of a 0.735 mm cylinder on any grid (faces of the electrode
    # carry the tissue's own conductivity × the factor)
    k_uniform = np.float32(0.0)
    kfk, kfj, kfi = _face_conductivities(tab["kface"], np.asarray(lab0, np.uint8), (1.0 / h**2).astype(np.float32))
    for ax, (kf, b) in enumerate(zip((kfk, kfj, kfi), [a * b for a, b in zip(boost, shaft_boost, strict=True)],
                                     strict=True)):
        kf[tuple(slice(0, shape[ax] - 1) if a == ax else slice(None) for a in range(3))] *= b.astype(np.float32)
    k_beta, k_until_c = _conductivity_law()
    kf_base = (kfk.copy(), kfj.copy(), kfi.copy()) if k_beta != 0.0 else None
    box = np.array([1, shape[0] - 1, 1, shape[1] - 1, 1, shape[2] - 1], np.int64)
    kernel = _step_heat_serial if lab.size < SERIAL_BELOW_VOXELS else _step_heat
    hot_c = np.float32(min(40.0, gate))
    every = max(1, round(g.solve_interval_s / dt))
    powers = np.zeros(n, np.float32)
    actives = np.zeros(n, np.int8)
    q = np.zeros(shape, np.float32)
    tissue_j, in_box = 0.0, 0.0
    vox_m3 = float(np.prod(h))
    start = time.perf_counter()
    for step in range(n):
        now = step * dt
        if step % every == 0 or drive.switch_due(now):
            sig_t = _sigma_t(sig37, t_old, *s_args)
            if kf_base is not None:
                _conductivity_with_temperature(*kf_base, kfk, kfj, kfi, t_old, cold, k_beta, s_args[1], k_until_c)
            drive.solve(sig_t, now)
            assert drive.q is not None
            q[...] = drive.q
            in_box = float(drive.q.sum()) * vox_m3
        p = drive.power(now, dt, power_trace)
        powers[step], actives[step] = p, drive.active
        tissue_j += p * dt * in_box
        kernel(t_old, t_new, damage, peak, lab, q, np.float32(p), k_uniform, kfk, kfj, kfi, av, wv, tab["stop"],
               np.float32(t_blood), np.float32(dt), ln_a, ea_r, hot_c, np.float32(gate), False, lat, vcap,
               np.float32(t_lo), np.float32(t_hi), latent_on, box)
        t_old, t_new = t_new, t_old
    wall = time.perf_counter() - start
    _damage_of_the_track(damage, cold)
    return _heating_result(t_old, peak, damage, spacing_kji_mm, dt, n, duration_s, wall, powers, {
        "voxel_updates": n * int(np.prod(np.array(shape) - 2)),
        "damage_gate_c": gate,
        "damage_model": "Arrhenius",
        "rolloffs": drive.rolloffs,
        "energy_j": float(powers.sum() * dt),
        "energy_tissue_j": tissue_j,
        "energy_latent_j": _latent_j(lat, tab, h) - lat0,
        "baseline_impedance_ohm": drive.z_trace[0],
        "impedance_ohm": np.asarray(drive.z_trace),
        "solve_interval_s": every * dt,
        "solves": len(drive.z_trace),
        "cg_iterations": sum(sv.iterations for sv in drive.solvers),
        "active_electrode": actives,
        "electrode": el,
        "cooled": cold,
        "backend": "cpu",
    }, 1.0)
