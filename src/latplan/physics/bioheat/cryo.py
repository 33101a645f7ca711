"""Cryoablation simulation: freeze–thaw protocols with sub-voxel probes (scheme in
:mod:`latplan.physics.bioheat.cryo_kernels`)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latplan.errors import InvalidInputError
from latplan.physics.bioheat.cryo_kernels import run_cryo_phase
from latplan.physics.bioheat.data import BioheatResult, Tissue, thermal_constants
from latplan.physics.bioheat.grid import _spacing_m, _tables

#: first super-step of every phase (s) and the largest one; growth factor per super-step
TAU_FIRST_S = 0.5
TAU_MAX_S = 20.0
TAU_GROWTH = 1.3
#: the active box holds every voxel that moved more than this from the start temperature (+ margin);
#: beyond it the tissue is held at the start temperature (an error below this, K)
BOX_EPS_K = 0.05
#: grids from this size run the multi-threaded stage (numba prange over k); smaller ones the serial twin
PARALLEL_FROM_VOXELS = 1_000_000


@dataclass(frozen=True)
class CryoPhase:
    """One phase of a cryo protocol: ``freeze`` (probes at ``probe_c``) or ``thaw`` (passive:
    the probe is insulating)."""

    kind: str
    duration_s: float
    probe_c: float = -150.0


@dataclass(frozen=True)
class CryoProbe:
    """A cryoprobe's freezing segment: a cylinder of ``diameter_mm`` from ``tip_kji_mm`` back
    along ``-direction_kji`` over ``active_length_mm`` (grid mm: index × spacing)."""

    tip_kji_mm: tuple[float, float, float]
    direction_kji: tuple[float, float, float]
    active_length_mm: float
    diameter_mm: float


def _segment_offset_mm(pts: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Vectors (mm) from the nearest point of segment p0–p1 to each point."""
    d = p1 - p0
    u = np.clip(((pts - p0) @ d) / float(d @ d), 0.0, 1.0)
    return np.asarray(pts - (p0 + u[:, None] * d))


def _probe_voxels(shape: tuple[int, ...], h: np.ndarray, p: CryoProbe, n: int,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Voxels (m, 3) removed for probe ``p``: centre within r_p + h/4 of the axis, and the voxel
    nearest to every point of the axis. Returns (voxels, p0, p1, r_p)."""
    d = np.asarray(p.direction_kji, float)
    if not (np.isfinite(d).all() and np.linalg.norm(d) > 0 and p.active_length_mm > 0 and p.diameter_mm > 0):
        raise InvalidInputError(f"cryoprobe {n}: direction must be non-zero, length and diameter > 0; got {p}.")
    d = d / np.linalg.norm(d)
    p1 = np.asarray(p.tip_kji_mm, float)
    p0 = p1 - p.active_length_mm * d
    r = 0.5 * p.diameter_mm
    reach = r + 2.5 * float(h.max())
    lo = np.maximum(np.floor((np.minimum(p0, p1) - reach) / h).astype(int), 0)
    hi = np.minimum(np.ceil((np.maximum(p0, p1) + reach) / h).astype(int) + 1, np.array(shape))
    if np.any(hi <= lo):
        raise InvalidInputError(f"cryoprobe {n} lies outside the simulation grid {shape}.")
    idx = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1)
    idx = idx.reshape(-1, 3)
    dist = np.linalg.norm(_segment_offset_mm(idx * h, p0, p1), axis=1)
    inside = idx[dist < r + 0.25 * float(h.min())]
    samples = p0 + np.linspace(0.0, 1.0, max(2, int(4 * p.active_length_mm / h.min()) + 1))[:, None] * (p1 - p0)
    near = np.clip(np.rint(samples / h).astype(int), 0, np.array(shape) - 1)
    return np.concatenate([inside, near]), p0, p1, r


def probe_coupling(shape: tuple[int, int, int], spacing_kji_mm: Sequence[float], probes: Sequence[CryoProbe],
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(probe voxels, sink coefficient 1/m² per voxel) of sub-voxel probes.

    Each tissue-voxel face f touching a probe's removed voxels gets the radial conductance of a
    cylinder sector, g_f = k·θ_f ℓ_f / ln(d_f/r_p) (d_f: the voxel centre's distance from the
    axis). The sector θ_f ℓ_f is the face's share of the probe's 2π·L, in proportion to the
    angle it subtends, a_f = A_f |n_f·r̂_f| / d_f. Axis-centred on a cubic grid this is the
    line-sink well index 2πk/ln(h/r_p) split over the four faces (Peaceman 1978)."""
    h = np.asarray(spacing_kji_mm, float)
    removed = np.zeros(shape, bool)
    owner = np.full(shape, -1, np.int32)
    segs = []
    for n, p in enumerate(probes):
        vox, p0, p1, r = _probe_voxels(shape, h, p, n)
        removed[tuple(vox.T)] = True
        owner[tuple(vox.T)] = n
        segs.append((p0, p1, r, p.active_length_mm))
    sink = np.zeros(shape, np.float64)
    vol_mm3 = float(np.prod(h))
    faces = []
    for ax in range(3):
        area = float(np.prod(np.delete(h, ax)))
        for sgn in (1, -1):
            nb_removed = np.roll(removed, -sgn, axis=ax)
            nb_owner = np.roll(owner, -sgn, axis=ax)
            edge = [slice(None)] * 3
            edge[ax] = slice(-1, None) if sgn == 1 else slice(0, 1)
            nb_removed[tuple(edge)] = False
            face = ~removed & nb_removed
            normal = np.zeros(3)
            normal[ax] = 1.0
            faces.append((np.argwhere(face), nb_owner[face], area, normal))
    for n, (p0, p1, r, length_mm) in enumerate(segs):
        rows = []
        for idx, own, area, normal in faces:
            sel = idx[own == n]
            if not len(sel):
                continue
            off = _segment_offset_mm(sel * h, p0, p1)
            dist = np.maximum(np.linalg.norm(off, axis=1), 1.05 * r)
            cos = np.abs(off @ normal) / dist
            rows.append((sel, area * np.maximum(cos, 0.05) / dist, dist))
        total = sum(float(a.sum()) for _, a, _ in rows)
        if total <= 0:
            raise InvalidInputError(f"cryoprobe {n} touches no tissue voxel (grid too coarse or probe outside).")
        for sel, a, dist in rows:
            g_over_k_mm = 2.0 * math.pi * length_mm * a / total / np.log(dist / r)   # mm
            np.add.at(sink, tuple(sel.T), g_over_k_mm / vol_mm3 * 1e6)   # 1/mm² → 1/m²
    return removed, sink


def _legacy_coupling(mask: np.ndarray, spacing_kji_mm: Sequence[float]) -> np.ndarray:
    """Sink of a bare voxel-mask probe: each face to a probe voxel is a Dirichlet face (w = 1)."""
    h = np.asarray(spacing_kji_mm, float) * 1e-3
    sink = np.zeros(mask.shape, np.float64)
    for ax in range(3):
        for sgn in (1, -1):
            nb = np.roll(mask, -sgn, axis=ax)
            edge = [slice(None)] * 3
            edge[ax] = slice(-1, None) if sgn == 1 else slice(0, 1)
            nb[tuple(edge)] = False
            sink[~mask & nb] += 1.0 / h[ax] ** 2
    return sink


def _fe_limit_s(tab: dict[str, np.ndarray], lab: np.ndarray, kind: np.ndarray, sink: np.ndarray,
                ih2: np.ndarray) -> float:
    """Forward-Euler limit of the enthalpy update (Gershgorin): min over tissue voxels of
    ρc_min / (k_max (2Σ1/h² + sink) + ρ_b c_b ω). The perfusion term is explicit in the stages
    too: a large vessel's renewal rate (ρ_b c_b ω ≈ 10 MW/m³/K for 10 mm) far exceeds the
    conduction term of a 2 mm grid (≈ 0.8 MW/m³/K), and leaving it out made the super-steps
    unstable (−396 °C in a vessel beside the probes)."""
    kmax = np.maximum(tab["k"], tab["kf"]).astype(np.float64)
    rcmin = np.minimum(tab["rc"], tab["rcf"]).astype(np.float64)
    perf = tab["perf"].astype(np.float64)
    tissue = kind == 0
    used = np.unique(lab[tissue])
    base = float(np.min(rcmin[used] / (kmax[used] * 2.0 * ih2.sum() + perf[used])))
    s = sink[tissue]
    if s.max() > 0:
        sel = s > 0
        lb = lab[tissue][sel]
        base = min(base, float(np.min(rcmin[lb] / (kmax[lb] * (2.0 * ih2.sum() + s[sel]) + perf[lb]))))
    return base


def simulate_cryo(
    labels: np.ndarray,
    tissues: Sequence[Tissue],
    spacing_kji_mm: Sequence[float],
    probe_mask: np.ndarray | None = None,
    phases: Sequence[CryoPhase] = (CryoPhase("freeze", 600.0), CryoPhase("thaw", 480.0), CryoPhase("freeze", 600.0)),
    *,
    probes: Sequence[CryoProbe] = (),
    lethal_c: float | None = None,
    latent_heat_j_m3: float | None = None,
    initial_temperature_c: float | None = None,
    freezing_range_c: tuple[float, float] | None = None,
    tau_max_s: float = TAU_MAX_S,
    parallel: bool | None = None,
) -> BioheatResult:
    """Freeze–thaw protocol with latent heat (enthalpy form) and sub-voxel probes.

    ``probes`` (:class:`CryoProbe`) are sub-voxel cylinders; a bare ``probe_mask`` (bool voxels
    held at the probe temperature, faces as Dirichlet faces) is kept for comparison. The zone is
    the voxels whose minimum temperature reached ``lethal_c`` (data-file default, the one lethal
    isotherm shared with the cryo chart), plus the probe voxels. ``latent_heat_j_m3=0`` switches
    latent heat off; ``initial_temperature_c`` defaults to blood temperature (quiescent start);
    ``freezing_range_c`` (solidus, liquidus) overrides the tissue file's (e.g. a water phantom).
    """
    consts = thermal_constants()
    cryo = consts["cryo"]
    t_sol, t_liq = (float(x) for x in (cryo["freezing_range_c"] if freezing_range_c is None else freezing_range_c))
    latent = float(cryo["latent_heat_j_m3"]) if latent_heat_j_m3 is None else float(latent_heat_j_m3)
    lethal = float(cryo["lethal_isotherm_c"]) if lethal_c is None else float(lethal_c)
    t_blood = float(consts["blood"]["temperature_c"])
    t0 = t_blood if initial_temperature_c is None else float(initial_temperature_c)
    lab = np.ascontiguousarray(np.asarray(labels).astype(np.uint8))
    shape = lab.shape
    if len(shape) != 3 or min(shape) < 3:
        raise InvalidInputError(f"the cryo grid needs three axes of at least 3 voxels; got {shape}.")
    if probes:
        removed, sink = probe_coupling(shape, spacing_kji_mm, probes)
    elif probe_mask is not None and np.asarray(probe_mask).shape == shape and np.asarray(probe_mask).any():
        removed = np.asarray(probe_mask, bool)
        sink = _legacy_coupling(removed, spacing_kji_mm)
    else:
        raise InvalidInputError("simulate_cryo needs `probes` (CryoProbe) or a probe_mask on the label grid.")
    tab = _tables(tissues, lab)
    ih2 = 1.0 / _spacing_m(spacing_kji_mm) ** 2
    kind = np.where(removed, 1, np.where(tab["fixed"][lab], 2, 0)).astype(np.uint8)
    rcf = tab["rcf"].astype(np.float64)
    rcu = tab["rc"].astype(np.float64)
    rcm = 0.5 * (rcf + rcu) + latent / (t_liq - t_sol)
    ku = tab["k"].astype(np.float64)
    kf = tab["kf"].astype(np.float64)
    # enthalpy of the start temperature (relative to the solidus), per voxel
    lb = lab
    h_liq = rcm[lb] * (t_liq - t_sol)
    if t0 >= t_liq:
        h = h_liq + rcu[lb] * (t0 - t_liq)
    elif t0 <= t_sol:
        h = rcf[lb] * (t0 - t_sol)
    else:
        h = rcm[lb] * (t0 - t_sol)
    h = np.ascontiguousarray(h, np.float64)
    t = np.full(shape, t0, np.float64)
    kv = np.where(kind == 1, 0.0, np.where(t0 >= t_liq, ku[lb], np.where(t0 <= t_sol, kf[lb], 0.5 * (ku[lb] + kf[lb]))))
    kv = np.ascontiguousarray(kv, np.float64)
    tmin = t.copy()
    t2 = t.copy()
    kv2 = kv.copy()
    alpha_u = float(np.max(ku[np.unique(lab)] / rcu[np.unique(lab)]))
    margin_per_sqrt_s = 3.0 * math.sqrt(alpha_u) / (float(np.min(spacing_kji_mm)) * 1e-3)
    bufs = np.ascontiguousarray(np.broadcast_to(h, (3, *shape)).copy())
    perf = tab["perf"].astype(np.float64)
    dt_fe = _fe_limit_s(tab, lab, kind, sink, ih2)
    quiescent = bool(t0 == t_blood or not np.any(perf[np.unique(lab)] > 0))
    lo = np.ones(3, np.int64)
    hi = np.array(shape, np.int64) - 1
    if quiescent:
        nz = np.argwhere(removed | (sink > 0))
        box = np.array([nz[:, 0].min(), nz[:, 0].max() + 1, nz[:, 1].min(), nz[:, 1].max() + 1,
                        nz[:, 2].min(), nz[:, 2].max() + 1], np.int64)
        box = np.array([max(box[0], 1), min(box[1], hi[0]), max(box[2], 1), min(box[3], hi[1]),
                        max(box[4], 1), min(box[5], hi[2])], np.int64)
    else:
        box = np.array([1, hi[0], 1, hi[1], 1, hi[2]], np.int64)
    parallel = lab.size >= PARALLEL_FROM_VOXELS if parallel is None else parallel
    start = time.perf_counter()
    n_super = n_stage = 0
    updates = 0
    for ph in phases:
        if ph.kind not in ("freeze", "thaw") or not ph.duration_s > 0:
            raise InvalidInputError(f"cryo phase must be 'freeze' or 'thaw' with a duration > 0 s; got {ph}.")
        freeze = ph.kind == "freeze"
        if freeze:
            t[removed] = ph.probe_c
        a, b = run_cryo_phase(h, t, kv, t2, kv2, tmin, bufs, lab, kind, sink, perf, ku, kf, rcf, rcm, rcu,
                              t_sol, t_liq, t_blood, float(ph.probe_c), freeze, ih2[0], ih2[1], ih2[2], dt_fe,
                              float(ph.duration_s), min(TAU_FIRST_S, tau_max_s), float(tau_max_s), TAU_GROWTH,
                              box, lo, hi, t0, quiescent, BOX_EPS_K, margin_per_sqrt_s,
                              parallel)
        n_super += a
        n_stage += b
        updates += b * int((box[1] - box[0]) * (box[3] - box[2]) * (box[5] - box[4]))
    wall = time.perf_counter() - start
    total = float(sum(p.duration_s for p in phases))
    tmin_out = tmin.astype(np.float32)
    zone = ((tmin <= lethal) & ~removed) | removed
    return BioheatResult(
        temperature_c=t.astype(np.float32),
        peak_temperature_c=np.maximum(t, t0).astype(np.float32),
        damage=None,
        zone=zone,
        spacing_kji_mm=(float(spacing_kji_mm[0]), float(spacing_kji_mm[1]), float(spacing_kji_mm[2])),
        dt_s=total / max(n_super, 1),
        steps=n_super,
        duration_s=total,
        wall_s=wall,
        min_temperature_c=tmin_out,
        info={"voxel_updates": updates, "lethal_c": lethal, "latent_heat_j_m3": latent,
              "iceball_0c": (tmin <= 0.0) | removed, "probe_voxels": removed, "stages": n_stage,
              "forward_euler_limit_s": dt_fe, "scheme": "enthalpy + RKL1 super-steps, sub-voxel probes"},
    )
