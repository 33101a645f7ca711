"""Bioheat numba kernels (heating and freezing steps) and their serial twins."""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------
@nb.njit(parallel=True, fastmath=True, cache=True)
def _step_heat(t_old, t_new, damage, peak, lab, q, q_scale, k_uniform, kfk, kfj, kfi, av, wv, stop,  # type: ignore[no-untyped-def]  # numba kernel
               t_blood, dt, ln_a, ea_r, hot_c, gate_c, cem43, lat, vcap, t_lo, t_hi, latent_on, box):  # pragma: no cover
    """One explicit step on ``box``, row by row (k, j): a branch-free, SIMD-vectorised update
    of every voxel, then — only on rows where some voxel exceeds ``hot_c`` — the peak
    temperature and the damage integral.

    Per-voxel coefficients: ``av`` = dt/(ρc) (0 for fixed voxels, which then keep their
    temperature), ``wv`` = ρ_b c_b ω (set to 0 here when a voxel coagulates and its tissue's
    perfusion stops). Conduction: ``k_uniform`` (W/m/K, > 0) × 7-point Laplacian, or the
    face conductivities ``kfk/kfj/kfi`` (harmonic means, already divided by h², W/m³/K) of the
    face towards +k/+j/+i. Label bit 0x80 marks coagulated voxels (Ω ≥ 1).

    Latent heat (``latent_on``): ``lat`` = per-voxel latent store and ``vcap`` = its capacity,
    both in K-equivalents (J/m³ ÷ ρc); the sensible predictor plus the store is the enthalpy,
    mapped back to T by :func:`_enthalpy_to_t` over [t_lo, t_hi] — exact energy bookkeeping.
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
                    if latent_on:
                        e = tn + lat[k, j, i]
                        tn = _enthalpy_to_t(e, vcap[k, j, i], t_lo, t_hi)
                        lat[k, j, i] = e - tn
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
                    if latent_on:
                        e = tn + lat[k, j, i]
                        tn = _enthalpy_to_t(e, vcap[k, j, i], t_lo, t_hi)
                        lat[k, j, i] = e - tn
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
def _active_box(t, t0, eps, margin, lo, hi):  # type: ignore[no-untyped-def]  # numba kernel: argument types come from the call  # pragma: no cover
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


@nb.njit(inline="always")
def _enthalpy_to_t(e, cap, t_lo, t_hi):  # type: ignore[no-untyped-def]  # numba kernel: argument types come from the call  # pragma: no cover
    """Temperature of a voxel from its enthalpy (shared latent-heat mechanism, heating and freezing).

    Enthalpy method (Abraham & Sparrow, Int J Heat Mass Transfer 2007;50:2537): in K-equivalents
    (J/m³ ÷ ρc) e = T + s(T), with the latent store s(T) = cap · clamp((T − t_lo)/(t_hi − t_lo), 0, 1)
    — the apparent heat capacity ρc(1 + cap/(t_hi − t_lo)) on [t_lo, t_hi] (Yang et al., IEEE TBME
    2007;54:1382, 99–100 °C for water vaporisation), but conservative for any step: the caller
    keeps ``e − T`` as the new store. Branch-free inverse of the piecewise-linear e(T): T =
    max(min(e, T_mid), e − cap), T_mid = t_lo + (e − t_lo)(t_hi − t_lo)/(t_hi − t_lo + cap).
    Freezing uses the same map with the store full (= cap) above the liquidus, empty below the solidus.
    """
    w = t_hi - t_lo
    t_mid = t_lo + (e - t_lo) * (w / (w + cap))
    return max(min(e, t_mid), e - cap)


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
