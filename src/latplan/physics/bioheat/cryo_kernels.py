"""Cryo kernels: enthalpy-form freezing with sub-voxel probe coupling, advanced by RKL1
super-time-stepping, one fused numba call per protocol phase.

Scheme (see docs/ablation-physics.md, cryo):

* **Enthalpy form.** The state is the volumetric enthalpy H (J/m³, relative to the solidus).
  H(T) is piecewise linear: frozen ρc_f below the solidus, ρc_mushy = ½(ρc_f + ρc_u) + L/(T_liq − T_sol)
  between solidus and liquidus (the apparent heat capacity of the old kernel), unfrozen ρc_u
  above. T(H) is its exact inverse, so the latent heat is conserved for any step size (an
  apparent-capacity update can jump over the 7 K freezing range in one step and lose it).
  Same semantics as the heating path's enthalpy helper (latent heat of vaporisation).
* **Conduction** with temperature-dependent conductivity (unfrozen k_u, frozen k_f, linear across
  the freezing range; harmonic face means). Perfusion (Pennes) acts only on unfrozen voxels.
* **Sub-voxel probes.** The voxels within the probe radius (+ a quarter voxel, and at least the
  voxel nearest to each point of the axis) are removed from the conduction stencil (k = 0).
  Each tissue voxel face that touches them exchanges heat with the probe surface (radius r_p,
  temperature T_p) through the radial-conduction conductance of a cylinder: per face
  g_f = w·k·A_f/h_n with one w per probe chosen so that Σ_f g_f·ln(d_f/r_p) = 2π·k·L (d_f: the
  tissue voxel's distance from the axis, L: the freezing length). This is the discrete form of
  Q' = 2πk (T(d) − T_p)/ln(d/r_p) — the line-sink ("well index", Peaceman 1978) construction —
  exact for the logarithmic near-field of a cylinder, so the field beyond one voxel no longer
  depends on how the probe falls on the grid. During a (passive) thaw the probe is insulating.
* **RKL1 super-time-stepping** (Meyer, Balsara & Aslam 2014, J Comput Phys 257:594): s stages of
  the explicit operator advance τ ≤ Δt_FE·(s² + s)/2 stably; the cost per unit time falls as 1/s.
  Super-steps grow geometrically from a fine first step at the start of every phase (coarse-to-fine).
* **Active box.** With a quiescent start (uniform T0 at perfusion equilibrium) only the box
  around the disturbed region is updated; it is grown by s + 2 voxels before every super-step
  (one stage moves a disturbance one voxel).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from latplan.physics.bioheat.kernels import _renamed


@nb.njit(inline="always")
def _t_of_h(h, rc_f, rc_m, rc_u, t_sol, t_liq):  # type: ignore[no-untyped-def]  # numba kernel  # pragma: no cover
    """Temperature (°C) of volumetric enthalpy ``h`` (J/m³ relative to the solidus)."""
    if h <= 0.0:
        return t_sol + h / rc_f
    h_liq = rc_m * (t_liq - t_sol)
    if h < h_liq:
        return t_sol + h / rc_m
    return t_liq + (h - h_liq) / rc_u


@nb.njit(inline="always")
def _k_at(k_u, k_f, t, t_sol, t_liq):  # type: ignore[no-untyped-def]  # numba kernel  # pragma: no cover
    if t >= t_liq:
        return k_u
    if t <= t_sol:
        return k_f
    return k_u + (t_liq - t) / (t_liq - t_sol) * (k_f - k_u)


@nb.njit(inline="always")
def _hmean(a, b):  # type: ignore[no-untyped-def]  # numba kernel  # pragma: no cover
    s = a + b
    return 2.0 * a * b / s if s > 0.0 else 0.0


@nb.njit(parallel=True, fastmath=True, cache=True)
def _stage_par(hnew, hprev1, hprev2, t, kv, tout, kvout, lab, kind, sink, perf, ku, kf, rcf, rcm, rcu,  # type: ignore[no-untyped-def]  # numba kernel
           t_sol, t_liq, t_blood, t_probe, freeze, ihk2, ihj2, ihi2, mu, nu, mut, b):  # pragma: no cover
    """One RKL1 stage on the rows of box ``b``: hnew = μ·hprev1 + ν·hprev2 + μ̃τ·L(T(hprev1)),
    L = ∇·k∇T (face k = arithmetic mean, 0 towards probe voxels, whose k is 0) + perfusion
    (unfrozen voxels only) + probe exchange (freeze phases only); ``t``/``kv`` hold T and k of
    hprev1, and T, k of hnew go to ``tout``/``kvout`` (fused: one pass per stage)."""
    ni = t.shape[2]
    fz = 1.0 if freeze else 0.0
    dts = t_liq - t_sol
    for k in nb.prange(b[0], b[1]):
        for j in range(b[2], b[3]):
            for i in range(1, ni - 1):
                tc = t[k, j, i]
                kc = kv[k, j, i]
                k1 = kv[k - 1, j, i]
                k2 = kv[k + 1, j, i]
                k3 = kv[k, j - 1, i]
                k4 = kv[k, j + 1, i]
                k5 = kv[k, j, i - 1]
                k6 = kv[k, j, i + 1]
                acc = ((k1 > 0.0) * (kc + k1) * (t[k - 1, j, i] - tc)
                       + (k2 > 0.0) * (kc + k2) * (t[k + 1, j, i] - tc)) * (0.5 * ihk2)
                acc += ((k3 > 0.0) * (kc + k3) * (t[k, j - 1, i] - tc)
                        + (k4 > 0.0) * (kc + k4) * (t[k, j + 1, i] - tc)) * (0.5 * ihj2)
                acc += ((k5 > 0.0) * (kc + k5) * (t[k, j, i - 1] - tc)
                        + (k6 > 0.0) * (kc + k6) * (t[k, j, i + 1] - tc)) * (0.5 * ihi2)
                lb = lab[k, j, i]
                acc += (tc >= t_liq) * perf[lb] * (t_blood - tc)
                acc += fz * sink[k, j, i] * kc * (t_probe - tc)
                hp = hprev1[k, j, i]
                hn = mu * hp + nu * hprev2[k, j, i] + mut * acc
                # T(H) and k(T) of the new enthalpy (exact inverse of the piecewise-linear H(T))
                h_liq = rcm[lb] * dts
                tt = t_sol + hn / rcf[lb]
                if hn > 0.0:
                    tt = t_sol + hn / rcm[lb]
                if hn >= h_liq:
                    tt = t_liq + (hn - h_liq) / rcu[lb]
                f = min(max((t_liq - tt) / dts, 0.0), 1.0)
                tissue = kind[k, j, i] == 0
                hnew[k, j, i] = hn if tissue else hp
                tout[k, j, i] = tt if tissue else tc
                kvout[k, j, i] = (ku[lb] + f * (kf[lb] - ku[lb])) if tissue else kc


@nb.njit(cache=True)
def _grow_box(t, t0, eps, margin, box, lo, hi):  # type: ignore[no-untyped-def]  # numba kernel  # pragma: no cover
    """Grow ``box`` (in place, never shrinks) to hold every voxel with |T − t0| > eps + margin."""
    k0, k1, j0, j1, i0, i1 = box[1], box[0], box[3], box[2], box[5], box[4]
    for k in range(max(box[0] - 1, 0), min(box[1] + 1, t.shape[0])):
        for j in range(max(box[2] - 1, 0), min(box[3] + 1, t.shape[1])):
            for i in range(max(box[4] - 1, 0), min(box[5] + 1, t.shape[2])):
                if abs(t[k, j, i] - t0) > eps:
                    k0 = min(k0, k)
                    k1 = max(k1, k + 1)
                    j0 = min(j0, j)
                    j1 = max(j1, j + 1)
                    i0 = min(i0, i)
                    i1 = max(i1, i + 1)
    box[0] = max(min(box[0], k0 - margin), lo[0])
    box[1] = min(max(box[1], k1 + margin), hi[0])
    box[2] = max(min(box[2], j0 - margin), lo[1])
    box[3] = min(max(box[3], j1 + margin), hi[1])
    box[4] = max(min(box[4], i0 - margin), lo[2])
    box[5] = min(max(box[5], i1 + margin), hi[2])


@nb.njit(fastmath=True, cache=True)
def _finish(hsrc, h, t, tmin, kind, b):  # type: ignore[no-untyped-def]  # numba kernel  # pragma: no cover
    """Copy the super-step result into ``h`` and update the minimum temperature on the rows of box ``b``."""
    ni = t.shape[2]
    for k in range(b[0], b[1]):
        for j in range(b[2], b[3]):
            for i in range(1, ni - 1):
                h[k, j, i] = hsrc[k, j, i]
                if kind[k, j, i] == 0 and t[k, j, i] < tmin[k, j, i]:
                    tmin[k, j, i] = t[k, j, i]


_stage_ser = nb.njit(fastmath=True, cache=True)(_renamed(_stage_par.py_func, "_stage_ser"))


@nb.njit(cache=True)
def _stage_any(parallel, hnew, hprev1, hprev2, t, kv, tout, kvout, lab, kind, sink, perf, ku, kf, rcf, rcm, rcu,  # type: ignore[no-untyped-def]  # numba kernel
               t_sol, t_liq, t_blood, t_probe, freeze, ihk2, ihj2, ihi2, mu, nu, mut, b):  # pragma: no cover
    if parallel:
        _stage_par(hnew, hprev1, hprev2, t, kv, tout, kvout, lab, kind, sink, perf, ku, kf, rcf, rcm, rcu,
                   t_sol, t_liq, t_blood, t_probe, freeze, ihk2, ihj2, ihi2, mu, nu, mut, b)
    else:
        _stage_ser(hnew, hprev1, hprev2, t, kv, tout, kvout, lab, kind, sink, perf, ku, kf, rcf, rcm, rcu,
                   t_sol, t_liq, t_blood, t_probe, freeze, ihk2, ihj2, ihi2, mu, nu, mut, b)


@nb.njit(cache=True)
def run_cryo_phase(h, t, kv, t2, kv2, tmin, bufs, lab, kind, sink, perf, ku, kf, rcf, rcm, rcu,  # type: ignore[no-untyped-def]  # numba kernel
                   t_sol, t_liq, t_blood, t_probe, freeze, ihk2, ihj2, ihi2, dt_fe, duration_s,
                   tau_first_s, tau_max_s, growth, box, lo, hi, t0, quiescent, box_eps_k, margin_per_sqrt_s, parallel):  # pragma: no cover
    """Advance one protocol phase (``duration_s``) by RKL1 super-steps; returns (super-steps, stages).

    ``bufs`` (3, nk, nj, ni) are stage buffers and ``t2``/``kv2`` a second T/k buffer, all equal
    to ``h``/``t``/``kv`` outside the box. The super-step grows from ``tau_first_s`` by
    ``growth`` per step up to ``tau_max_s``; each uses the least number of stages s with
    Δt_FE·(s² + s)/2 ≥ τ. The box grows by the diffusion reach 3√(α_u τ) (``margin_per_sqrt_s``
    = 3√α_u / h voxels) + 2 beyond the voxels that moved more than ``box_eps_k``.
    """
    now = 0.0
    tau = tau_first_s
    n_super = 0
    n_stage = 0
    inner = np.empty(6, np.int64)
    while now < duration_s - 1e-9:
        tau = min(tau, duration_s - now)
        s = 1
        while dt_fe * (s * s + s) / 2.0 < tau:
            s += 1
        if quiescent:
            margin = min(s, math.ceil(margin_per_sqrt_s * math.sqrt(tau))) + 2
            _grow_box(t, t0, box_eps_k, margin, box, lo, hi)
        for a in range(6):
            inner[a] = box[a]
        w1 = 2.0 / (s * s + s)
        # stage 1: Y1 = Y0 + μ̃1 τ L(Y0)   (Y0 = h, whose T/k are in t/kv)
        _stage_any(parallel, bufs[0], h, h, t, kv, t2, kv2, lab, kind, sink, perf, ku, kf, rcf, rcm, rcu,
               t_sol, t_liq, t_blood, t_probe, freeze, ihk2, ihj2, ihi2, 1.0, 0.0, w1 * tau, inner)
        p2 = -1  # index of Y_{j-2} in bufs (-1 = h)
        p1 = 0
        flip = True  # T/k of Y_{j-1} are in t2/kv2
        for jj in range(2, s + 1):
            mu = (2.0 * jj - 1.0) / jj
            nu = (1.0 - jj) / jj
            dst = 0
            while dst == p1 or dst == p2:
                dst += 1
            hp2 = h if p2 < 0 else bufs[p2]
            if flip:
                _stage_any(parallel, bufs[dst], bufs[p1], hp2, t2, kv2, t, kv, lab, kind, sink, perf, ku, kf, rcf, rcm, rcu,
                       t_sol, t_liq, t_blood, t_probe, freeze, ihk2, ihj2, ihi2, mu, nu, mu * w1 * tau, inner)
            else:
                _stage_any(parallel, bufs[dst], bufs[p1], hp2, t, kv, t2, kv2, lab, kind, sink, perf, ku, kf, rcf, rcm, rcu,
                       t_sol, t_liq, t_blood, t_probe, freeze, ihk2, ihj2, ihi2, mu, nu, mu * w1 * tau, inner)
            flip = not flip
            p2 = p1
            p1 = dst
        if flip:  # the result's T/k are in t2/kv2: bring them to t/kv
            _copy_rows(t2, t, inner)
            _copy_rows(kv2, kv, inner)
        else:
            _copy_rows(t, t2, inner)
            _copy_rows(kv, kv2, inner)
        _finish(bufs[p1], h, t, tmin, kind, inner)
        now += tau
        tau = min(tau * growth, tau_max_s)
        n_super += 1
        n_stage += s
    return n_super, n_stage


@nb.njit(fastmath=True, cache=True)
def _copy_rows(src, dst, b):  # type: ignore[no-untyped-def]  # numba kernel  # pragma: no cover
    ni = src.shape[2]
    for k in range(b[0], b[1]):
        for j in range(b[2], b[3]):
            for i in range(1, ni - 1):
                dst[k, j, i] = src[k, j, i]
