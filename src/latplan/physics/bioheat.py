"""Pennes bioheat engine: heating (MWA, RFA) and freezing (cryo), Arrhenius/CEM43 damage.

    ρc ∂T/∂t = ∇·(k∇T) + ρ_b c_b ω (T_b − T) + Q            (PHYSICS.md)

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
  (45 °C by default, PHYSICS.md); CEM43 as an option (minutes at 43 °C, R = 0.5 above 43 °C,
  0.25 below). Ω is capped at 1e6 to stay finite in float32.
* MWA source: ``Q = η P · s(r)`` with s a normalised teardrop around the antenna's feed point,
  ``exp(−2 r_eff/δ) / max(r_eff, r₀)²``, ``r_eff² = ρ² + (z/γ)²``; η (absorbed fraction) is
  calibrated on one chart setting (:func:`calibrate_mwa`).
* RFA source: ``Q ∝ |E|²`` of a uniformly charged active segment (monopolar electrode to a
  distant pad); the generator is temperature-controlled (P–I toward ``target_c``) and rolls
  off when the electrode reaches 100 °C (power off for a pause, then resumes): this, with
  perfusion and heat sink, limits single-electrode zones — not a fixed cap.
* Cryo: apparent heat capacity over the freezing range (latent heat spread over −8…−1 °C),
  frozen/mushy conductivity; probes are voxels held at the probe temperature during freeze
  phases and released during thaw; lethal zone = minimum temperature ≤ −40 °C (or −20 °C).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
import yaml

from latplan.errors import InvalidInputError, OutOfRangeError, SourceDataError

__all__ = [
    "MWA_CALIBRATION_ROWS",
    "BioheatResult",
    "CryoPhase",
    "MwaModel",
    "RfaController",
    "Tissue",
    "calibrate_mwa",
    "chart_consistency",
    "default_tissues",
    "mwa_model",
    "mwa_source",
    "rfa_source",
    "simulate_cryo",
    "simulate_heating",
    "simulate_mwa_zone",
    "stability_limit_s",
    "steady_state",
    "thermal_constants",
    "vessel_tissue",
    "zone_dimensions_mm",
]

DATA_FILE = Path(__file__).resolve().parent / "data" / "ablation" / "tissue_properties.yaml"
GAS_CONSTANT_J_MOL_K = 8.314462618
KELVIN = 273.15
ENGINE_VERSION = "bioheat-1.0"


@cache
def thermal_constants() -> dict[str, Any]:
    """The tissue-property data file (blood, Arrhenius, cryo, tissues, vessels), with citation."""
    try:
        data = yaml.safe_load(DATA_FILE.read_text())
    except (OSError, yaml.YAMLError) as exc:  # pragma: no cover - packaging error
        raise SourceDataError(f"cannot read {DATA_FILE}: {exc}") from exc
    for key in ("citation", "blood", "arrhenius", "cryo", "tissues", "vessels"):
        if key not in data:
            raise SourceDataError(f"{DATA_FILE} lacks the '{key}' section.")
    return data


@dataclass(frozen=True)
class Tissue:
    """Thermal properties of one label (SI units).

    ``perfusion_per_s`` ω (s⁻¹); ``perfusion_stops_when_coagulated``: True for tissue and
    small vessels; ``fixed`` voxels keep their temperature (Dirichlet), e.g. a cryoprobe.
    """

    name: str
    density_kg_m3: float
    heat_capacity_j_kg_k: float
    conductivity_w_m_k: float
    perfusion_per_s: float = 0.0
    perfusion_stops_when_coagulated: bool = True
    fixed: bool = False
    frozen_conductivity_w_m_k: float = 2.0
    frozen_heat_capacity_j_kg_k: float = 1860.0

    @property
    def rho_c(self) -> float:
        return self.density_kg_m3 * self.heat_capacity_j_kg_k


def default_tissues() -> dict[str, Tissue]:
    """Liver, tumour, blood and soft tissue from the data file (Go-Smart constants)."""
    out = {}
    for name, vals in thermal_constants()["tissues"].items():
        rho, c, k, w, kf, cf = (float(v) for v in vals)
        out[name] = Tissue(name, rho, c, k, w, True, False, kf, cf)
    return out


def vessel_tissue(calibre_mm: float, *, heated_length_mm: float | None = None) -> Tissue:
    """Blood voxel of a vessel of ``calibre_mm`` acting as a heat sink (see module doc).

    Renewal rate r = u(D)/L_heated · min(1, L_e/L_heated) with u = u_ref·D/D_ref and the
    thermal equilibration length L_e = u·a²/(4α_b); thin vessels (< occlusion calibre) stop
    when coagulated.
    """
    if not calibre_mm > 0:
        raise InvalidInputError(f"vessel calibre must be > 0 mm; got {calibre_mm}.")
    c = thermal_constants()
    v = c["vessels"]
    blood = default_tissues()["blood"]
    u = float(v["reference_velocity_m_s"]) * calibre_mm / float(v["reference_calibre_mm"])
    length_m = (heated_length_mm or float(v["heated_length_mm"])) / 1000.0
    # thermal equilibration (Chen & Holmes 1980): blood in a thin vessel takes the tissue
    # temperature within L_e = u·a²/(4α_b) (a = radius); only the fraction L_e/L of the
    # heated length still carries cold blood → thin vessels are weak sinks
    alpha_b = blood.conductivity_w_m_k / blood.rho_c
    l_eq = u * (0.5 * calibre_mm / 1000.0) ** 2 / (4.0 * alpha_b)
    rate = u / length_m * min(1.0, l_eq / length_m)
    # expressed as an equivalent perfusion of blood (ρ_b c_b r), in the vessel's own voxels
    return Tissue(
        f"vessel_{calibre_mm:g}mm",
        blood.density_kg_m3,
        blood.heat_capacity_j_kg_k,
        blood.conductivity_w_m_k,
        perfusion_per_s=rate,
        perfusion_stops_when_coagulated=calibre_mm < float(v["occlusion_calibre_mm"]),
    )


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
@dataclass
class BioheatResult:
    """Fields (k, j, i) of one simulation on its grid (spacing ``spacing_kji_mm``)."""

    temperature_c: np.ndarray
    peak_temperature_c: np.ndarray
    damage: np.ndarray | None                 # Arrhenius Ω (or CEM43 minutes when cem43=True)
    zone: np.ndarray                          # bool: Ω ≥ 1 (CEM43 ≥ threshold; cryo: T_min ≤ lethal)
    spacing_kji_mm: tuple[float, float, float]
    dt_s: float
    steps: int
    duration_s: float
    wall_s: float
    power_w: np.ndarray = field(default_factory=lambda: np.zeros(0))   # delivered power per step
    min_temperature_c: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def zone_volume_ml(self) -> float:
        return float(self.zone.sum()) * float(np.prod(self.spacing_kji_mm)) / 1000.0

    @property
    def voxel_updates_per_s(self) -> float:
        return float(self.info.get("voxel_updates", 0)) / max(self.wall_s, 1e-12)


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------
@nb.njit(parallel=True, fastmath=True, cache=True)
def _step_heat(t_old, t_new, damage, peak, lab, q, q_scale, k_uniform, kfk, kfj, kfi, av, wv, stop,
               t_blood, dt, ln_a, ea_r, hot_c, gate_c, cem43, t_cap, box):  # pragma: no cover
    """One explicit step on ``box``, row by row (k, j): a branch-free, SIMD-vectorised update
    of every voxel, then — only on rows where some voxel exceeds ``hot_c`` — the peak
    temperature and the damage integral.

    Per-voxel coefficients: ``av`` = dt/(ρc) (0 for fixed voxels, which then keep their
    temperature), ``wv`` = ρ_b c_b ω (set to 0 here when a voxel coagulates and its tissue's
    perfusion stops). Conduction: ``k_uniform`` (W/m/K, > 0) × 7-point Laplacian, or the
    face conductivities ``kfk/kfj/kfi`` (harmonic means, already divided by h², W/m³/K) of the
    face towards +k/+j/+i. Label bit 0x80 marks coagulated voxels (Ω ≥ 1).
    """
    # the box limits k and j only: inner loops run over the whole interior row so that numba can
    # prove i − 1 ≥ 0 (no negative-index wrap-around) and vectorise them (≈ 5× faster)
    k0, k1, j0, j1 = box[0], box[1], box[2], box[3]
    ni = t_old.shape[2]
    uniform = k_uniform > 0.0
    for k in nb.prange(k0, k1):
        for j in range(j0, j1):
            nhot = 0
            if uniform:
                for i in range(1, ni - 1):
                    t = t_old[k, j, i]
                    lap = (t_old[k - 1, j, i] + t_old[k + 1, j, i] + t_old[k, j - 1, i] + t_old[k, j + 1, i]
                           + t_old[k, j, i - 1] + t_old[k, j, i + 1] - 6.0 * t)
                    a = av[k, j, i]
                    w = wv[k, j, i]
                    # perfusion / vessel sink term implicit (unconditionally stable, same fixed point)
                    tn = (t + a * (k_uniform * lap + w * t_blood + q_scale * q[k, j, i])) / (1.0 + a * w)
                    tn = min(tn, t_cap)
                    t_new[k, j, i] = tn
                    nhot += tn > hot_c
            else:
                for i in range(1, ni - 1):
                    t = t_old[k, j, i]
                    cond = (kfk[k, j, i] * (t_old[k + 1, j, i] - t) + kfk[k - 1, j, i] * (t_old[k - 1, j, i] - t)
                            + kfj[k, j, i] * (t_old[k, j + 1, i] - t) + kfj[k, j - 1, i] * (t_old[k, j - 1, i] - t)
                            + kfi[k, j, i] * (t_old[k, j, i + 1] - t) + kfi[k, j, i - 1] * (t_old[k, j, i - 1] - t))
                    a = av[k, j, i]
                    w = wv[k, j, i]
                    tn = (t + a * (cond + w * t_blood + q_scale * q[k, j, i])) / (1.0 + a * w)
                    tn = min(tn, t_cap)
                    t_new[k, j, i] = tn
                    nhot += tn > hot_c
            if nhot == 0:
                continue
            for i in range(1, ni - 1):
                tn = t_new[k, j, i]
                if tn > hot_c:
                    if tn > peak[k, j, i]:
                        peak[k, j, i] = tn
                    if tn >= gate_c:
                        om = damage[k, j, i]
                        if om < 1e6:
                            if cem43:
                                r = 0.5 if tn >= 43.0 else 0.25
                                om = om + dt / 60.0 * r ** (43.0 - tn)
                            else:
                                om = om + dt * math.exp(ln_a - ea_r / (tn + 273.15))
                            damage[k, j, i] = om
                            lraw = lab[k, j, i]
                            if om >= 1.0 and lraw < 0x80:
                                lab[k, j, i] = lraw | 0x80
                                if stop[lraw]:
                                    wv[k, j, i] = 0.0


@nb.njit(parallel=True, cache=True)
def _active_box(t, t0, eps, margin, lo, hi):  # pragma: no cover
    """Bounding box (k0,k1,j0,j1,i0,i1) of voxels with |T − t0| > eps, grown by ``margin``."""
    nk, nj, ni = t.shape
    kmin = np.full(nk, nk, np.int64)
    kmax = np.full(nk, -1, np.int64)
    jmin = np.full(nk, nj, np.int64)
    jmax = np.full(nk, -1, np.int64)
    imin = np.full(nk, ni, np.int64)
    imax = np.full(nk, -1, np.int64)
    for k in nb.prange(nk):
        for j in range(nj):
            for i in range(ni):
                if abs(t[k, j, i] - t0) > eps:
                    kmin[k] = k
                    kmax[k] = k
                    if j < jmin[k]:
                        jmin[k] = j
                    if j > jmax[k]:
                        jmax[k] = j
                    if i < imin[k]:
                        imin[k] = i
                    if i > imax[k]:
                        imax[k] = i
    out = np.empty(6, np.int64)
    out[0] = max(kmin.min() - margin, lo[0])
    out[1] = min(kmax.max() + 1 + margin, hi[0])
    out[2] = max(jmin.min() - margin, lo[1])
    out[3] = min(jmax.max() + 1 + margin, hi[1])
    out[4] = max(imin.min() - margin, lo[2])
    out[5] = min(imax.max() + 1 + margin, hi[2])
    return out


@nb.njit(parallel=True, fastmath=True, cache=True)
def _conductivity_cryo(t, lab, kt, kf, t_sol, t_liq, kout):  # pragma: no cover
    nk, nj, ni = t.shape
    for k in nb.prange(nk):
        for j in range(nj):
            for i in range(ni):
                lb = lab[k, j, i]
                kout[k, j, i] = _k_of(kt[lb], kf[lb], t[k, j, i], t_sol, t_liq)


@nb.njit(parallel=True, fastmath=True, cache=True)
def _step_cryo(t_old, t_new, tmin, lab, kv, rc_u, rc_f, perf, fixed, t_blood, dt,
               ihk2, ihj2, ihi2, t_sol, t_liq, latent):  # pragma: no cover
    """One explicit step with apparent heat capacity; ``kv`` = per-voxel conductivity of t_old."""
    nk, nj, ni = t_old.shape
    for k in nb.prange(1, nk - 1):
        for j in range(1, nj - 1):
            for i in range(1, ni - 1):
                lb = lab[k, j, i]
                t = t_old[k, j, i]
                if fixed[lb]:
                    t_new[k, j, i] = t
                    continue
                kc = kv[k, j, i]
                acc = (_hm(kc, kv[k - 1, j, i]) * (t_old[k - 1, j, i] - t)
                       + _hm(kc, kv[k + 1, j, i]) * (t_old[k + 1, j, i] - t)) * ihk2
                acc += (_hm(kc, kv[k, j - 1, i]) * (t_old[k, j - 1, i] - t)
                        + _hm(kc, kv[k, j + 1, i]) * (t_old[k, j + 1, i] - t)) * ihj2
                acc += (_hm(kc, kv[k, j, i - 1]) * (t_old[k, j, i - 1] - t)
                        + _hm(kc, kv[k, j, i + 1]) * (t_old[k, j, i + 1] - t)) * ihi2
                if t >= t_liq:
                    rc = rc_u[lb]
                    w = perf[lb]
                elif t <= t_sol:
                    rc = rc_f[lb]
                    w = 0.0
                else:
                    rc = 0.5 * (rc_u[lb] + rc_f[lb]) + latent / (t_liq - t_sol)
                    w = 0.0
                a = dt / rc
                tn = (t + a * (acc + w * t_blood)) / (1.0 + a * w)  # implicit perfusion/sink term
                t_new[k, j, i] = tn
                if tn < tmin[k, j, i]:
                    tmin[k, j, i] = tn


@nb.njit(inline="always")
def _hm(a, b):  # pragma: no cover
    return 2.0 * a * b / (a + b)


@nb.njit(inline="always")
def _k_of(k_u, k_f, t, t_sol, t_liq):  # pragma: no cover
    if t >= t_liq:
        return k_u
    if t <= t_sol:
        return k_f
    f = (t_liq - t) / (t_liq - t_sol)
    return k_u + f * (k_f - k_u)


#: serial twins of the kernels: on small grids (or a busy machine) thread start-up per step
#: costs more than the update itself
SERIAL_BELOW_VOXELS = 300_000
#: Each twin is a renamed copy of the Python function: numba's on-disk cache is keyed by the
#: function's qualified name and line, so a twin made from the same function object shares the
#: parallel kernel's cache entry and overwrites it — a later process then loaded the serial
#: code for the parallel kernel (measured: 10-min MWA 1.85 s instead of 0.30 s).


def _renamed(func: Any, name: str) -> Any:
    import types

    twin = types.FunctionType(func.__code__.replace(co_name=name, co_qualname=name), func.__globals__, name,
                              func.__defaults__, func.__closure__)
    twin.__qualname__ = name
    return twin


_step_heat_serial = nb.njit(fastmath=True, cache=True)(_renamed(_step_heat.py_func, "_step_heat_serial"))
_step_cryo_serial = nb.njit(fastmath=True, cache=True)(_renamed(_step_cryo.py_func, "_step_cryo_serial"))
_conductivity_cryo_serial = nb.njit(fastmath=True, cache=True)(
    _renamed(_conductivity_cryo.py_func, "_conductivity_cryo_serial"))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _spacing_m(spacing_kji_mm: Sequence[float]) -> np.ndarray:
    sp = np.asarray(spacing_kji_mm, dtype=float)
    if sp.shape != (3,) or np.any(~np.isfinite(sp)) or np.any(sp <= 0):
        raise InvalidInputError(f"spacing_kji_mm must be three positive numbers (mm); got {sp.tolist()}.")
    return sp / 1000.0


def _tables(tissues: Sequence[Tissue], labels: np.ndarray) -> dict[str, np.ndarray]:
    if len(tissues) == 0 or len(tissues) > 255:
        raise InvalidInputError(f"need 1–255 tissues; got {len(tissues)}.")
    if labels.dtype != np.uint8:
        labels = labels.astype(np.uint8)
    if int(labels.max()) >= len(tissues):
        raise InvalidInputError(
            f"label value {int(labels.max())} has no tissue: the table has {len(tissues)} entries (0-based)."
        )
    blood = thermal_constants()["blood"]
    rho_b_c_b = float(blood["density_kg_m3"]) * float(blood["heat_capacity_j_kg_k"])
    k = np.array([t.conductivity_w_m_k for t in tissues], dtype=np.float64)
    kface = (2.0 * k[:, None] * k[None, :] / (k[:, None] + k[None, :])).astype(np.float32)
    return {
        "labels": np.ascontiguousarray(labels),
        "k": k.astype(np.float32),
        "kf": np.array([t.frozen_conductivity_w_m_k for t in tissues], np.float32),
        "kface": kface,
        "rc": np.array([t.rho_c for t in tissues], np.float32),
        "rcf": np.array([t.density_kg_m3 * t.frozen_heat_capacity_j_kg_k for t in tissues], np.float32),
        "irc": np.array([1.0 / t.rho_c for t in tissues], np.float32),
        "perf": np.array([rho_b_c_b * t.perfusion_per_s for t in tissues], np.float32),
        "stop": np.array([t.perfusion_stops_when_coagulated for t in tissues], np.bool_),
        "fixed": np.array([t.fixed for t in tissues], np.bool_),
    }


def _gpu_stepper(backend: str, *arrays: Any) -> Any:
    """The CUDA stepper for ``backend`` 'gpu' / 'auto' (None = use the CPU kernel)."""
    if backend not in ("cpu", "gpu", "auto"):
        raise InvalidInputError(f"backend must be 'cpu', 'gpu' or 'auto'; got {backend!r}.")
    if backend == "cpu":
        return None
    from latplan.physics import bioheat_gpu

    if backend == "auto" and not bioheat_gpu.gpu_available():
        return None
    return bioheat_gpu.GpuHeatStepper(*arrays)


def _face_conductivities(kface: np.ndarray, lab: np.ndarray, ih: np.ndarray) -> tuple[np.ndarray, ...]:
    """Face conductivities towards +k, +j, +i (harmonic mean of the two voxels, W/m/K) divided
    by h² (→ W/m³/K); the last slab along each axis is unused (outer faces are Dirichlet)."""
    out = []
    for ax in range(3):
        f = np.zeros(lab.shape, np.float32)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax] = slice(0, -1)
        hi[ax] = slice(1, None)
        f[tuple(lo)] = kface[lab[tuple(lo)], lab[tuple(hi)]] * ih[ax]
        out.append(f)
    return tuple(out)


def stability_limit_s(tissues: Sequence[Tissue], spacing_kji_mm: Sequence[float], *, frozen: bool = False) -> float:
    """Largest stable explicit step (s): 1 / max over tissues of 2α Σ 1/h².

    The perfusion/vessel sink term is integrated implicitly in both kernels, so it does not
    limit the step; ``frozen`` uses the frozen conductivity and heat capacity (cryo).
    """
    h = _spacing_m(spacing_kji_mm)
    s = float(np.sum(2.0 / h**2))
    worst = 0.0
    for t in tissues:
        if t.fixed:
            continue
        k = max(t.conductivity_w_m_k, t.frozen_conductivity_w_m_k) if frozen else t.conductivity_w_m_k
        rc = min(t.rho_c, t.density_kg_m3 * t.frozen_heat_capacity_j_kg_k) if frozen else t.rho_c
        worst = max(worst, k / rc * s)
    return 1.0 / worst if worst > 0 else math.inf


def _choose_dt(duration_s: float, limit_s: float, dt_s: float | None) -> tuple[float, int]:
    if not duration_s > 0:
        raise InvalidInputError(f"duration must be > 0 s; got {duration_s}.")
    if dt_s is not None:
        if dt_s > limit_s * (1 + 1e-9):
            raise InvalidInputError(
                f"time step {dt_s:g} s exceeds the explicit stability limit {limit_s:.4g} s for this grid; "
                "use a smaller step or leave dt_s unset."
            )
        n = max(1, math.ceil(duration_s / dt_s - 1e-9))
    else:
        n = max(1, math.ceil(duration_s / (0.95 * limit_s)))
    return duration_s / n, n


def zone_dimensions_mm(zone: np.ndarray, spacing_kji_mm: Sequence[float], axis_kji: Sequence[float],
                       through_kji: Sequence[float] | None = None) -> dict[str, float]:
    """Length (along ``axis_kji``) and the two widths across it of a boolean zone, in mm.

    Extents are measured as the projected span of the zone's voxels plus one voxel.
    """
    pts = np.argwhere(zone).astype(float) * np.asarray(spacing_kji_mm)
    if pts.size == 0:
        return {"length_mm": 0.0, "width_mm": 0.0, "depth_mm": 0.0, "volume_ml": 0.0}
    a = np.asarray(axis_kji, float)
    a /= np.linalg.norm(a)
    e = np.zeros(3)
    e[int(np.argmin(np.abs(a)))] = 1.0
    u = np.cross(a, e)
    u /= np.linalg.norm(u)
    v = np.cross(a, u)
    h = float(np.mean(spacing_kji_mm))
    out = {}
    for name, d in (("length_mm", a), ("width_mm", u), ("depth_mm", v)):
        p = pts @ d
        out[name] = float(p.max() - p.min() + h)
    out["volume_ml"] = float(zone.sum()) * float(np.prod(spacing_kji_mm)) / 1000.0
    return out


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------
def _coords_mm(shape: Sequence[int], spacing_kji_mm: Sequence[float]) -> list[np.ndarray]:
    return [np.arange(n, dtype=float)[(slice(None),) + (None,) * (2 - ax)] * spacing_kji_mm[ax]
            for ax, n in enumerate(shape)]


def mwa_source(shape: Sequence[int], spacing_kji_mm: Sequence[float], feed_kji_mm: Sequence[float],
               axis_kji: Sequence[float], *, penetration_mm: float = 12.0, elongation: float = 1.15,
               core_mm: float = 2.0) -> np.ndarray:
    """Normalised MWA deposition (W/m³ per absorbed W): teardrop around the feed point.

    ``feed_kji_mm`` is the feed point in grid mm (index × spacing), ``axis_kji`` the antenna
    direction (entry → tip). ``s = exp(−2 r_eff/δ)/max(r_eff, r₀)²``, r_eff² = ρ² + (z/γ)².
    """
    a = np.asarray(axis_kji, float)
    a /= np.linalg.norm(a)
    ck, cj, ci = _coords_mm(shape, spacing_kji_mm)
    dk, dj, di = ck - feed_kji_mm[0], cj - feed_kji_mm[1], ci - feed_kji_mm[2]
    z = dk * a[0] + dj * a[1] + di * a[2]
    r2 = dk**2 + dj**2 + di**2
    rho2 = np.maximum(r2 - z**2, 0.0)
    reff = np.sqrt(rho2 + (z / elongation) ** 2)
    s = np.exp(-2.0 * reff / penetration_mm) / np.maximum(reff, core_mm) ** 2
    vox_m3 = float(np.prod(spacing_kji_mm)) * 1e-9
    s /= s.sum() * vox_m3
    return s.astype(np.float32)


def rfa_source(shape: Sequence[int], spacing_kji_mm: Sequence[float], tip_kji_mm: Sequence[float],
               axis_kji: Sequence[float], *, active_length_mm: float = 30.0, radius_mm: float = 0.75,
               n_charges: int = 31) -> tuple[np.ndarray, np.ndarray]:
    """Normalised monopolar RFA deposition ∝ |E|² of a uniformly charged active segment.

    Returns (source W/m³ per delivered W, electrode voxel mask). The generator's sensor is
    the tissue shell around the electrode (see :func:`simulate_heating`).
    """
    a = np.asarray(axis_kji, float)
    a /= np.linalg.norm(a)
    ck, cj, ci = _coords_mm(shape, spacing_kji_mm)
    ek = np.zeros(np.broadcast_shapes(ck.shape, cj.shape, ci.shape))
    ej = np.zeros_like(ek)
    ei = np.zeros_like(ek)
    tip = np.asarray(tip_kji_mm, float)
    for s in np.linspace(0.0, active_length_mm, n_charges):
        p = tip - s * a
        dk, dj, di = ck - p[0], cj - p[1], ci - p[2]
        r = np.sqrt(dk**2 + dj**2 + di**2)
        r3 = np.maximum(r, radius_mm) ** 3
        ek += dk / r3
        ej += dj / r3
        ei += di / r3
    q = ek**2 + ej**2 + ei**2
    # distance to the segment for the electrode mask and the near-field clamp
    dk, dj, di = ck - tip[0], cj - tip[1], ci - tip[2]
    z = -(dk * a[0] + dj * a[1] + di * a[2])
    zc = np.clip(z, 0.0, active_length_mm)
    dist = np.sqrt((dk + zc * a[0]) ** 2 + (dj + zc * a[1]) ** 2 + (di + zc * a[2]) ** 2)
    h = float(np.max(spacing_kji_mm))
    electrode = dist <= max(radius_mm, 0.5 * h) + 1e-9
    qmax = q[~electrode].max() if np.any(~electrode) else q.max()
    q = np.where(electrode, 0.0, np.minimum(q, qmax))
    vox_m3 = float(np.prod(spacing_kji_mm)) * 1e-9
    q /= q.sum() * vox_m3
    return q.astype(np.float32), electrode


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
        RFA only: ``(dt_s, delivered W per step)`` of an earlier run (its ``dt_s`` and
        ``power_w``) replayed instead of the controller — the same energy history, so that two
        runs differ only by the tissue (e.g. with and without a vessel).
    backend:
        ``"cpu"`` (numba, the reference), ``"gpu"`` (CuPy/CUDA, :mod:`latplan.physics.bioheat_gpu`;
        :class:`~latplan.errors.NotAvailableError` without one) or ``"auto"`` (GPU when present).

    Returns
    -------
    BioheatResult with the zone = Ω ≥ 1 (or CEM43 ≥ 240 min).
    """
    if rfa is not None:
        if sensor is None:
            raise InvalidInputError("an RFA run needs the electrode mask (from rfa_source).")
        from scipy import ndimage

        electrode = np.asarray(sensor, bool)
        if rfa.cooled:
            # cooled electrode: its voxels are held at the coolant temperature; the generator
            # senses the hottest tissue within two voxels of it (impedance rises when it boils)
            labels = np.asarray(labels).astype(np.uint8).copy()
            labels[electrode] = len(tissues)
            tissues = [*tissues, Tissue("cooled_electrode", 8000.0, 500.0, 16.0, fixed=True)]
            t_init = np.full(np.shape(labels), float(np.asarray(initial_temperature_c).flat[0]), np.float32) \
                if np.isscalar(initial_temperature_c) else np.asarray(initial_temperature_c, np.float32).copy()
            t_init[electrode] = rfa.electrode_c
            initial_temperature_c = t_init
            sensor = ndimage.binary_dilation(electrode, iterations=2) & ~electrode
    tab = _tables(tissues, np.asarray(labels))
    lab = tab["labels"]
    shape = lab.shape
    if min(shape) < 3:
        raise InvalidInputError(f"the bioheat grid needs at least 3 voxels per axis; got {shape}.")
    consts = thermal_constants()
    t_blood = float(consts["blood"]["temperature_c"]) if blood_temperature_c is None else float(blood_temperature_c)
    arr = consts["arrhenius"]
    gate = float(arr["gate_c"]) if damage_gate_c is None else float(damage_gate_c)
    ln_a = math.log(float(arr["frequency_factor_per_s"]))
    ea_r = float(arr["activation_energy_j_mol"]) / GAS_CONSTANT_J_MOL_K
    h = _spacing_m(spacing_kji_mm)
    limit = stability_limit_s(tissues, spacing_kji_mm)
    dt, n = _choose_dt(duration_s, limit, dt_s)
    t_cap = 1e30 if vaporisation_c is None else float(vaporisation_c)

    t_old = np.empty(shape, np.float32)
    t_old[...] = initial_temperature_c
    t_new = t_old.copy()
    peak = t_old.copy()
    damage = np.zeros(shape, np.float32)
    q = np.zeros(shape, np.float32) if source_w_m3_per_w is None else np.ascontiguousarray(source_w_m3_per_w, np.float32)
    if q.shape != shape:
        raise InvalidInputError(f"source shape {q.shape} differs from the label grid {shape}.")

    # Quiescent start (uniform T0 at equilibrium): update only the box where T differs from T0
    # by more than 1e-4 K, grown by the number of steps until the next refresh + 2 voxels (the
    # explicit stencil moves a disturbance one voxel per step; beyond the margin it is < 1e-4 K).
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
    if len(tissues) > 127:
        raise InvalidInputError("the heating engine supports at most 127 tissues (label bit 7 marks coagulation).")
    lab = lab.copy()  # the kernel marks coagulated voxels in bit 7
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
    hot_c = np.float32(min(40.0, gate))
    powers = np.zeros(n, np.float32)
    sensor_idx = np.nonzero(sensor) if sensor is not None else None
    if rfa is not None and sensor_idx is None:
        raise InvalidInputError("an RFA run needs the electrode sensor mask (from rfa_source).")
    p = float(power_w)
    integ = 0.0
    pause_until = -1.0
    rolloffs = 0
    updates = 0
    kernel = _step_heat_serial if lab.size < SERIAL_BELOW_VOXELS else _step_heat
    gpu = _gpu_stepper(backend, t_old, damage, peak, lab, q, k_uniform, kfk, kfj, kfi, av, wv, tab["stop"])
    start = time.perf_counter()
    for step in range(n):
        now = step * dt
        if rfa is not None and power_trace is not None:
            p = float(power_trace[1][min(int(now / power_trace[0] + 1e-9), len(power_trace[1]) - 1)])
        elif rfa is not None:
            te = gpu.max_at(sensor_idx) if gpu is not None else float(t_old[sensor_idx].max())
            if te >= rfa.rolloff_c:
                pause_until = now + rfa.pause_s
                rolloffs += 1
                integ *= 0.7  # the generator restarts lower after an impedance rise
            if now < pause_until:
                p = 0.0
            else:
                err = rfa.target_c - te
                integ = min(max(integ + rfa.integral_w_per_k_s * err * dt, 0.0), rfa.max_power_w)
                p = min(max(rfa.gain_w_per_k * err + integ, 0.0), rfa.max_power_w)
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
    threshold = float(arr["cem43_threshold_min"]) if cem43 else 1.0
    return BioheatResult(
        temperature_c=t_old,
        peak_temperature_c=peak,
        damage=damage,
        zone=damage >= threshold,
        spacing_kji_mm=tuple(float(x) for x in spacing_kji_mm),
        dt_s=dt,
        steps=n,
        duration_s=float(duration_s),
        wall_s=wall,
        power_w=powers,
        info={
            "voxel_updates": updates,
            "stability_limit_s": limit,
            "damage_gate_c": gate,
            "damage_model": "CEM43" if cem43 else "Arrhenius",
            "rolloffs": rolloffs,
            "energy_j": float(powers.sum() * dt),
            "backend": "gpu" if gpu is not None else "cpu",
        },
    )


@dataclass(frozen=True)
class CryoPhase:
    """One phase of a cryo protocol: ``freeze`` (probes held at ``probe_c``) or thaw (released)."""

    kind: str
    duration_s: float
    probe_c: float = -150.0


def simulate_cryo(
    labels: np.ndarray,
    tissues: Sequence[Tissue],
    spacing_kji_mm: Sequence[float],
    probe_mask: np.ndarray,
    phases: Sequence[CryoPhase] = (CryoPhase("freeze", 600.0), CryoPhase("thaw", 300.0), CryoPhase("freeze", 600.0)),
    *,
    lethal_c: float | None = None,
    latent_heat_j_m3: float | None = None,
    initial_temperature_c: float = 37.0,
    dt_s: float | None = None,
) -> BioheatResult:
    """Freeze–thaw–freeze with latent heat (apparent heat capacity over the freezing range).

    ``probe_mask`` (bool) marks the probes' freezing segments. The zone is the voxels whose
    minimum temperature reached ``lethal_c`` (−40 °C default; −20 °C is the alternative).
    ``latent_heat_j_m3=0`` switches latent heat off (for comparison).
    """
    consts = thermal_constants()
    cryo = consts["cryo"]
    t_sol, t_liq = (float(x) for x in cryo["freezing_range_c"])
    latent = float(cryo["latent_heat_j_m3"]) if latent_heat_j_m3 is None else float(latent_heat_j_m3)
    lethal = float(cryo["lethal_isotherm_c"]) if lethal_c is None else float(lethal_c)
    t_blood = float(consts["blood"]["temperature_c"])
    probe_mask = np.asarray(probe_mask, bool)
    lab = np.asarray(labels).astype(np.uint8)
    if probe_mask.shape != lab.shape or not probe_mask.any():
        raise InvalidInputError("probe_mask must share the label grid and mark at least one voxel.")
    probe_label = len(tissues)
    all_t = [*tissues, Tissue("cryoprobe", 8000.0, 500.0, 16.0, fixed=True)]
    lab = lab.copy()
    lab[probe_mask] = probe_label
    tab = _tables(all_t, lab)
    lab = tab["labels"]
    h = _spacing_m(spacing_kji_mm)
    ih = (1.0 / h**2)
    limit = stability_limit_s(tissues, spacing_kji_mm, frozen=True)
    total = float(sum(p.duration_s for p in phases))
    dt, _ = _choose_dt(total, limit, dt_s)
    t_old = np.full(lab.shape, initial_temperature_c, np.float32)
    t_new = t_old.copy()
    tmin = t_old.copy()
    kv = np.zeros(lab.shape, np.float32)
    small = lab.size < SERIAL_BELOW_VOXELS
    kstep = _step_cryo_serial if small else _step_cryo
    kcond = _conductivity_cryo_serial if small else _conductivity_cryo
    start = time.perf_counter()
    steps = 0
    fixed_free = tab["fixed"].copy()
    fixed_free[probe_label] = False
    for ph in phases:
        if ph.kind not in ("freeze", "thaw"):
            raise InvalidInputError(f"cryo phase must be 'freeze' or 'thaw'; got {ph.kind!r}.")
        m = max(1, round(ph.duration_s / dt))
        if ph.kind == "freeze":
            t_old[probe_mask] = ph.probe_c
            t_new[probe_mask] = ph.probe_c
            fixed = tab["fixed"]
        else:
            fixed = fixed_free
        for _ in range(m):
            kcond(t_old, lab, tab["k"], tab["kf"], np.float32(t_sol), np.float32(t_liq), kv)
            kstep(t_old, t_new, tmin, lab, kv, tab["rc"], tab["rcf"], tab["perf"], fixed,
                       np.float32(t_blood), np.float32(dt), np.float32(ih[0]), np.float32(ih[1]), np.float32(ih[2]),
                       np.float32(t_sol), np.float32(t_liq), np.float32(latent))
            t_old, t_new = t_new, t_old
            steps += 1
    wall = time.perf_counter() - start
    zone = (tmin <= lethal) & ~probe_mask
    return BioheatResult(
        temperature_c=t_old,
        peak_temperature_c=np.maximum(t_old, initial_temperature_c),
        damage=None,
        zone=zone | probe_mask,
        spacing_kji_mm=tuple(float(x) for x in spacing_kji_mm),
        dt_s=dt,
        steps=steps,
        duration_s=total,
        wall_s=wall,
        min_temperature_c=tmin,
        info={"voxel_updates": steps * int(np.prod(np.array(lab.shape) - 2)), "lethal_c": lethal,
              "latent_heat_j_m3": latent, "iceball_0c": tmin <= 0.0},
    )


# --------------------------------------------------------------------------------------------
# steady state (same stencil, sparse solve) — for verification against analytic solutions
# --------------------------------------------------------------------------------------------
def steady_state(labels: np.ndarray, tissues: Sequence[Tissue], spacing_kji_mm: Sequence[float],
                 source_w_m3: np.ndarray, *, blood_temperature_c: float = 37.0, rtol: float = 1e-10) -> np.ndarray:
    """Steady temperature (°C) of the perfused, uncoagulated grid with the explicit stencil.

    Solves −∇·(k∇T) + ρ_b c_b ω (T − T_b) = Q with T = T_b on the outer faces (sparse CG
    with an AMG or Jacobi preconditioner). Used by the analytic tests: the
    transient kernel's fixed point is this same discrete system.
    """
    import scipy.sparse as sp

    tab = _tables(tissues, np.asarray(labels))
    lab = tab["labels"]
    shape = lab.shape
    h = _spacing_m(spacing_kji_mm)
    inner = lab[1:-1, 1:-1, 1:-1]
    ishape = inner.shape
    n = int(np.prod(ishape))
    idx = np.arange(n).reshape(ishape)
    rows, cols, vals = [], [], []
    diag = tab["perf"][inner].astype(float)
    for ax in range(3):
        for sgn in (-1, 1):
            sl = [slice(1, -1)] * 3
            sl[ax] = slice(1 + sgn, shape[ax] - 1 + sgn)
            nb_lab = lab[tuple(sl)]
            kf = tab["kface"][inner, nb_lab].astype(float) / h[ax] ** 2
            diag = diag + kf
            # neighbour inside the unknown block? (outer faces are θ = T − T_b = 0)
            src = [slice(None)] * 3
            dst = [slice(None)] * 3
            if sgn < 0:
                src[ax], dst[ax] = slice(1, None), slice(None, -1)
            else:
                src[ax], dst[ax] = slice(None, -1), slice(1, None)
            rows.append(idx[tuple(src)].ravel())
            cols.append(idx[tuple(dst)].ravel())
            vals.append(-kf[tuple(src)].ravel())
    rows.append(idx.ravel())
    cols.append(idx.ravel())
    vals.append(diag.ravel())
    a = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    b = np.asarray(source_w_m3, float)[1:-1, 1:-1, 1:-1].ravel()
    from latplan.physics.electroporation import _pcg, _preconditioner

    x, _its = _pcg(a, b, None, _preconditioner(a), rtol)
    out = np.zeros(shape)
    out[1:-1, 1:-1, 1:-1] = x.reshape(ishape)
    return out + blood_temperature_c


# --------------------------------------------------------------------------------------------
# MWA: calibration against a device chart
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MwaModel:
    """Calibrated MWA source of one antenna.

    ``efficiency`` η = absorbed / generator power, fitted so that the simulated zone volume
    equals the chart volume at ``calibration_setting`` (perfused liver, temperatures capped
    at ``vaporisation_c``); ``feed_offset_from_tip_mm`` = the chart's zone-centre offset at
    that setting (the teardrop is centred there).
    """

    device: str
    efficiency: float
    calibration_setting: tuple[float, float]
    feed_offset_from_tip_mm: float
    elongation: float
    penetration_mm: float = 15.0
    core_mm: float = 2.0
    vaporisation_c: float = 100.0
    spacing_mm: float = 1.5
    perfused: bool = True


def _mwa_box(length_mm: float, spacing_mm: float) -> int:
    return math.ceil((length_mm + 40.0) / spacing_mm) | 1


def simulate_mwa_zone(model: MwaModel, power_w: float, time_s: float, *, spacing_mm: float | None = None,
                      perfused: bool | None = None, box_mm: float | None = None) -> dict[str, float]:
    """Zone dimensions (mm, ml) of a single antenna in homogeneous liver (axis along k)."""
    h = spacing_mm or model.spacing_mm
    n = _mwa_box(box_mm or 100.0, h)
    sp_ = (h, h, h)
    liver = default_tissues()["liver"]
    perf = model.perfused if perfused is None else perfused
    if not perf:
        liver = Tissue(liver.name, liver.density_kg_m3, liver.heat_capacity_j_kg_k, liver.conductivity_w_m_k, 0.0)
    lab = np.zeros((n, n, n), np.uint8)
    c = (n // 2) * h
    q = mwa_source(lab.shape, sp_, (c, c, c), (1.0, 0.0, 0.0), penetration_mm=model.penetration_mm,
                   elongation=model.elongation, core_mm=model.core_mm)
    r = simulate_heating(lab, [liver], sp_, time_s, source_w_m3_per_w=q, power_w=model.efficiency * power_w,
                         vaporisation_c=model.vaporisation_c)
    return zone_dimensions_mm(r.zone, sp_, (1.0, 0.0, 0.0))


def calibrate_mwa(chart: Any, power_w: float, time_s: float, *, spacing_mm: float = 1.5,
                  tol_percent: float = 1.0) -> MwaModel:
    """Fit η so the simulated zone volume equals ``chart``'s volume at (power_w, time_s).

    ``chart`` is a :class:`latplan.physics.ablation_zones.DeviceChart`. Rows flagged
    inconsistent in the source are refused. Bisection on η (monotonic volume).
    """
    row = chart.row(power_w, time_s)
    if row is None:
        raise OutOfRangeError(f"{chart.label} has no chart row at {power_w:g} W / {time_s:g} s to calibrate on.")
    if row.flag:
        raise OutOfRangeError(f"the {power_w:g} W / {time_s:g} s row of {chart.label} is flagged "
                              f"'{row.flag}' in the source: choose another calibration row.")
    base = MwaModel(chart.key, 0.3, (power_w, time_s), row.centre_offset_from_tip_mm,
                    max(1.0, row.length_mm / row.width_mm), spacing_mm=spacing_mm)
    lo, hi = 0.02, 1.0
    eff = 0.3
    for _ in range(20):
        eff = 0.5 * (lo + hi)
        m = MwaModel(**{**base.__dict__, "efficiency": eff})
        v = simulate_mwa_zone(m, power_w, time_s, box_mm=row.length_mm)["volume_ml"]
        if abs(v / row.volume_ml - 1.0) * 100.0 <= tol_percent:
            break
        if v < row.volume_ml:
            lo = eff
        else:
            hi = eff
    return MwaModel(**{**base.__dict__, "efficiency": eff})


def chart_consistency(chart: Any, model: MwaModel, *, spacing_mm: float | None = None) -> list[dict[str, Any]]:
    """Simulated vs chart zone at every chart row: one dict per row (volume difference in %)."""
    out = []
    for r in chart.rows:
        d = simulate_mwa_zone(model, r.power_w, r.time_s, spacing_mm=spacing_mm, box_mm=r.length_mm)
        out.append({
            "power_w": r.power_w, "time_s": r.time_s, "chart_ml": r.volume_ml, "model_ml": round(d["volume_ml"], 2),
            "diff_percent": round(100.0 * (d["volume_ml"] / r.volume_ml - 1.0), 1),
            "chart_length_mm": r.length_mm, "model_length_mm": d["length_mm"],
            "chart_width_mm": r.width_mm, "model_width_mm": d["width_mm"],
            "flag": r.flag, "calibration_row": (r.power_w, r.time_s) == model.calibration_setting,
        })
    return out


#: calibration rows per antenna (decision: a mid-power, mid-time row without a source note)
MWA_CALIBRATION_ROWS: dict[str, tuple[float, float]] = {
    "covidien_emprint": (75.0, 300.0),
    "amica": (60.0, 300.0),
    "acculis": (100.0, 240.0),
}


@cache
def mwa_model(device: str = "covidien_emprint") -> MwaModel:
    """The calibrated model of an antenna (η from the data file when stored, else fitted now)."""
    from latplan.physics.ablation_zones import load_mwa_chart

    stored = thermal_constants().get("mwa_calibration", {}) or {}
    chart = load_mwa_chart(device)
    p, t = MWA_CALIBRATION_ROWS.get(device, (chart.calibration_rows()[0].power_w, chart.calibration_rows()[0].time_s))
    row = chart.row(p, t)
    assert row is not None
    if device in stored:
        return MwaModel(device, float(stored[device]), (p, t), row.centre_offset_from_tip_mm,
                        max(1.0, row.length_mm / row.width_mm))
    return calibrate_mwa(chart, p, t)
