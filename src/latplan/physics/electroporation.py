"""Electric field of needle electrodes for electrochemotherapy (ECT) and IRE.

    ∇·(σ(E) ∇Φ) = 0     per electrode pair, Φ = U on one needle, 0 on the other

Why: ECT/IRE treat what the field reaches above a tissue threshold (reversible for ECT,
irreversible for IRE); U/d alone can misjudge the local field badly (Čorović et al., BioMed Eng OnLine 2007;6:37), so the
field is solved on the patient grid. Pure numerics: thresholds and voltages are parameters
(defaults in ``data/ablation/electroporation.yaml`` with citations).

Numerics (decisions)
--------------------
* Cell-centred finite volumes on the (k, j, i) grid, face conductivity = harmonic mean; the
  outer faces are insulating (zero flux); needle voxels (within the needle radius of its
  active segment, at least the voxel line through the axis) are Dirichlet and eliminated
  symmetrically into the right-hand side (the operator on the free voxels stays SPD).
* A needle thinner than the voxel (radius ≤ 0.75 h, e.g. 0.6 mm on 1–2 mm grids) is one voxel
  per slice with a sub-voxel face correction (:class:`ElectrodeVoxels`), so it acts as an
  electrode of its true radius on any grid: a bare Dirichlet voxel line acts as one of ≈ 0.2 h
  and drove 23 % (1 mm) / 8 % (2 mm) too little field at a given voltage.
* Needles that are not part of the pair are left as tissue (they are disconnected/floating
  in the generator's switching; their metal is not modelled) — a known limit.
* Solver: matrix-free conjugate gradients on the 7-point stencil, preconditioned by the
  modified incomplete Cholesky factorisation MIC(0) (ω = 0.97, with the usual fallback to the
  diagonal where the pivot would fall below ¼ of it), written as serial numba kernels that
  release the GIL; the pulsed pairs are solved concurrently in a thread pool (``workers``).
  The relative residual tolerance is 1e-6 (the benchmark field differs ≤ 0.005 % from a 1e-10
  solve). σ(E) is updated from the field and the system re-solved from the previous potential
  (warm start): by default to the fixed point, under-relaxed (ω = 0.5) until the relative
  change ‖σ(E(σ)) − σ‖/‖σ‖ < 1 % (the plain update oscillates with period 2 on IRE settings);
  ``converged``, ``iterations`` and ``residual`` are in the result.
* Computed once: the σ-independent part of a pair's system (Dirichlet voxels, electrode face
  factors, padded buffers; :class:`_PairSystem`) is built once per pair and each σ(E) iteration
  only refills the coefficients in place (numba); |E|, σ(E) and the change come from one numba
  pass with plain sums (no BLAS: on the busy 2-core machine OpenBLAS's threads made a norm of
  35 k values cost 24 ms instead of 5 µs). Early iterations solve the potential only to
  ``LOOSE_CG_RTOL`` × the last change (inexact Picard); the field that is kept is always re-solved
  to ``rtol``. ``warm_start`` (a :class:`WarmStart` from ``keep_states=True``) starts a solve of the
  same pairs from an earlier one — another grid of the same box (trilinear) or other voltages
  (scaled): CG from its potential, σ from σ(E) of its field, a plain first update (the guess is
  replaced by this grid's own σ(E)) and at least two solves, then the same stop rule. On the fig1
  demo lesion the planner's ECT + IRE took ≈ 3.4× less CPU and wall time at the same load
  (``benchmarks/bench_field.py``, planning table), and its numbers moved towards a reference solved to 0.1 % change and rtol 1e-8 (IRE minimum
  margin −2.12 → −1.50 mm, reference −1.50; minimum tumour field 289 → 305 V/cm, reference 304).
* Thin needles sit at their true sub-voxel position: the voxel line's faces along each cross
  axis get f·(1 ± s(δ)) for the axis offset δ of the needle from the voxel centre (far-field
  dipole at the true position; :func:`_split`), so a 15 mm pair stays 15 mm.
* |E| per voxel is the mean of its face fields (potential drop / h × the face factor): the field
  that carries the face current; Joule power per face g·Δφ², split to its two voxels (sums to
  U·I); the adiabatic rise over a pulse train is :meth:`FieldResult.adiabatic_temperature_rise_c`.
  Measured (benchmarks/bench_field.py, 7-needle array, 12 pairs × 3 iterations, 61³ voxels at
  1 mm, shared 2-core machine, best of 3): Jacobi-PCG with scipy sparse products 59 s (before);
  pyamg set-up 0.8–3.8 s per matrix and 90–160 ms per V-cycle here (≈ 1–2 s per solve, slower
  than Jacobi-PCG, so not used); numba Jacobi-PCG 300 iterations, 0.26 s per cold solve;
  numba MIC(0)-PCG 58 iterations, 0.13 s per cold solve — the default. Whole benchmark:
  59–82 s before, 3.6 s now (2 threads; 5.8 s with 1 thread; goal 20 s). Numba's own
  ``parallel=True`` loops were 20× slower on the busy 2-core machine (threads barrier-wait
  for descheduled peers), hence serial kernels and pair-level threads.
* σ(E): ``linear`` (σ₀ below the reversible threshold, σ₁ above the irreversible one,
  linear between) or ``sigmoid`` (centred between the thresholds).
* |E| from central differences of Φ (one-sided at borders), V/cm; the voxel-wise maximum
  over all pairs is the treatment field. The pair current (A) is the finite-volume flux
  out of the anode needle with the conductivity of the last solve.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import yaml

from latplan.errors import InvalidInputError, PlanningError, SourceDataError
from latplan.physics.field_stencil import face_conductances_into, gather_system_into

__all__ = [
    "ElectroTissue",
    "ElectrodeVoxels",
    "FieldResult",
    "Needle",
    "WarmStart",
    "coverage_curve",
    "default_electro_tissues",
    "electrode_voxels",
    "electroporation_constants",
    "fit_lethal_threshold_v_per_cm",
    "hexagonal_array",
    "hexagonal_pairs",
    "lethal_thresholds_v_per_cm",
    "needle_mask",
    "pair_distance_mm",
    "parallel_pair",
    "protocol_tissues",
    "solve_field",
    "zone_extents_mm",
]

DATA_FILE = Path(__file__).resolve().parent / "data" / "ablation" / "electroporation.yaml"
ENGINE_VERSION = "efield-2.0"


@cache
def electroporation_constants() -> dict[str, Any]:
    """Tissue constants and pulse settings (data file, with citation)."""
    try:
        data = yaml.safe_load(DATA_FILE.read_text())
    except (OSError, yaml.YAMLError) as exc:  # pragma: no cover
        raise SourceDataError(f"cannot read {DATA_FILE}: {exc}") from exc
    for key in ("citation", "tissues", "pulses", "needle"):
        if key not in data:
            raise SourceDataError(f"{DATA_FILE} lacks '{key}'.")
    out: dict[str, Any] = data
    return out


@dataclass(frozen=True)
class ElectroTissue:
    """Conductivity σ₀ → σ₁ (S/m) between the reversible and irreversible thresholds (V/cm)."""

    name: str
    sigma0_s_m: float
    sigma1_s_m: float
    reversible_v_per_cm: float
    irreversible_v_per_cm: float

    def sigma(self, e_v_per_cm: np.ndarray, model: str = "linear") -> np.ndarray:
        """σ(E) in S/m for a field array in V/cm."""
        lo, hi = self.reversible_v_per_cm, self.irreversible_v_per_cm
        if model == "linear":
            f = np.clip((e_v_per_cm - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
        elif model == "sigmoid":
            mid, width = 0.5 * (lo + hi), max(hi - lo, 1e-9) / 8.0
            f = 1.0 / (1.0 + np.exp(-(e_v_per_cm - mid) / width))
        else:
            raise InvalidInputError(f"conductivity model must be 'linear' or 'sigmoid'; got {model!r}.")
        return self.sigma0_s_m + (self.sigma1_s_m - self.sigma0_s_m) * f


def default_electro_tissues() -> dict[str, ElectroTissue]:
    """Liver, tumour, blood, soft tissue from the data file (Go-Smart constants)."""
    return {n: ElectroTissue(n, *(float(x) for x in v)) for n, v in electroporation_constants()["tissues"].items()}


@dataclass(frozen=True)
class Needle:
    """A needle electrode in grid millimetres (k, j, i order, origin = centre of voxel 0).

    ``direction`` points from the entry toward the tip; the active (uninsulated) part runs
    from the tip back ``active_length_mm``.
    """

    tip_kji_mm: tuple[float, float, float]
    direction_kji: tuple[float, float, float]
    active_length_mm: float = 20.0
    radius_mm: float = 0.6

    def __post_init__(self) -> None:
        d = np.asarray(self.direction_kji, float)
        if np.linalg.norm(d) < 1e-9:
            raise InvalidInputError("a needle direction must be a non-zero vector.")
        object.__setattr__(self, "direction_kji", tuple((d / np.linalg.norm(d)).tolist()))
        if self.active_length_mm <= 0 or self.radius_mm <= 0:
            raise InvalidInputError("needle active length and radius must be > 0 mm.")


def needle_mask(shape: Sequence[int], spacing_kji_mm: Sequence[float], needle: Needle) -> np.ndarray:
    """Boolean mask of voxels within the needle radius of its active segment (≥ the axis voxels)."""
    sp_ = np.asarray(spacing_kji_mm, float)
    a = np.asarray(needle.direction_kji)
    tip = np.asarray(needle.tip_kji_mm)
    back = tip - needle.active_length_mm * a
    r = max(needle.radius_mm, 0.5 * float(sp_.min())) + 1e-6
    lo = np.floor((np.minimum(tip, back) - r) / sp_).astype(int) - 1
    hi = np.ceil((np.maximum(tip, back) + r) / sp_).astype(int) + 2
    lo = np.clip(lo, 0, shape)
    hi = np.clip(hi, 0, shape)
    out = np.zeros(tuple(shape), bool)
    if np.any(hi <= lo):
        return out
    g = np.meshgrid(*(np.arange(a0, b0) * s for a0, b0, s in zip(lo, hi, sp_, strict=True)), indexing="ij")
    p = np.stack(g, axis=-1) - tip
    t = np.clip(-(p @ a), 0.0, needle.active_length_mm)
    d = np.linalg.norm(p + t[..., None] * a, axis=-1)
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = d <= r
    if not out.any():  # needle thinner than a voxel and off-centre: mark the axis voxels
        for s in np.linspace(0.0, needle.active_length_mm, max(2, int(needle.active_length_mm / sp_.min()) + 1)):
            idx = np.round((tip - s * a) / sp_).astype(int)
            if np.all(idx >= 0) and np.all(idx < np.asarray(shape)):
                out[tuple(idx)] = True
    return out


#: a needle with radius ≤ this fraction of the in-plane voxel size is a voxel line with the
#: sub-voxel (well-index) correction; thicker needles are the voxels within their radius
THIN_NEEDLE_MAX_RATIO = 0.75
#: r_e / h: a single Dirichlet voxel of the 5-point stencil acts as an electrode of radius r_e
#: (Peaceman, SPE J 1983: exact lattice value e^(−γ)/(2√2) ≈ 0.1985)
PEACEMAN_RE_RATIO = 0.1985
SUBVOXEL_SPLIT = 2.0
SUBVOXEL_KNEE = 0.25
SUBVOXEL_TAIL_SLOPE = 0.72


def _split(delta: np.ndarray) -> np.ndarray:
    """Face split s(δ) (faces f·(1 ± s)): 2δ up to |δ| = 0.25 (the far-field dipole at the true
    position), then flatter towards 0.68 at |δ| = 0.5 (a face with f·0 cuts the needle's main path)."""
    a = np.abs(delta)
    s = np.where(a <= SUBVOXEL_KNEE, SUBVOXEL_SPLIT * a,
                 SUBVOXEL_SPLIT * SUBVOXEL_KNEE + SUBVOXEL_TAIL_SLOPE * (a - SUBVOXEL_KNEE))
    out: np.ndarray = np.sign(delta) * s
    return out


@dataclass(frozen=True)
class ElectrodeVoxels:
    """Voxels of one needle electrode and the factor on its faces normal to ``boosted_axes``.

    Why: a Dirichlet voxel line acts as an electrode of radius ≈ 0.2 h, not the needle's: at 1 mm
    a 0.6 mm needle would drive ≈ 23 % too little field at the same voltage, and the error changes
    with the grid. For a needle thinner than the voxel the faces around the line get the factor
    f = (π/2) / ln(0.955 h / a) (the lattice resistance of the first ring of faces, π/2 in units of
    1/(2πσ), replaced by the analytic ln(0.955 h / a); 0.955 = e^(π/2) · 0.1985), so the line acts
    as an electrode of the needle's radius a on any grid. Exact for grid-aligned needles (the
    faces across the line's dominant axis); oblique needles are a one-voxel-per-slice staircase.
    """

    mask: np.ndarray
    boosted_axes: tuple[int, ...] = ()
    factor: float = 1.0
    #: (n, 3) voxel indices of the line and (n, 3) offsets of the true axis from each voxel centre
    #: in voxel units (−0.5…0.5; only the boosted axes are used): the two faces of a voxel along a
    #: boosted axis get f·(1 ± 2δ), which moves the line's current centroid (its far-field dipole)
    #: to the true position instead of the voxel centre (no snapping: a 15 mm pair stays 15 mm)
    index: np.ndarray | None = None
    offset: np.ndarray | None = None

    def face_factors(self, shape: Sequence[int]) -> list[np.ndarray]:
        """Per-face factors (3 arrays, each with n − 1 faces along its axis) of this electrode."""
        out = [np.ones(tuple(n - (1 if ax == a else 0) for a, n in enumerate(shape))) for ax in range(3)]
        if not self.boosted_axes:
            return out
        idx = self.index if self.index is not None else np.argwhere(self.mask)
        off = self.offset if self.offset is not None else np.zeros(idx.shape)
        for ax in self.boosted_axes:
            f = out[ax]
            for sgn, shift in ((1.0, 0), (-1.0, -1)):
                face = idx.copy()
                face[:, ax] += shift            # upper face of voxel p is face p; lower face is p − 1
                ok = (face[:, ax] >= 0) & (face[:, ax] < shape[ax] - 1)
                vals = self.factor * (1.0 + sgn * _split(off[:, ax]))
                f[tuple(face[ok].T)] = vals[ok]
        return out


def electrode_voxels(shape: Sequence[int], spacing_kji_mm: Sequence[float], needle: Needle) -> ElectrodeVoxels:
    """Electrode voxels of ``needle``: a voxel line with the sub-voxel correction for a thin needle
    (radius ≤ ``THIN_NEEDLE_MAX_RATIO`` × in-plane voxel size), else :func:`needle_mask`."""
    sp_ = np.asarray(spacing_kji_mm, float)
    a = np.asarray(needle.direction_kji)
    dom = int(np.argmax(np.abs(a) / sp_))
    across = [ax for ax in range(3) if ax != dom]
    h_perp = float(np.sqrt(sp_[across[0]] * sp_[across[1]]))
    if needle.radius_mm > THIN_NEEDLE_MAX_RATIO * h_perp:
        return ElectrodeVoxels(needle_mask(shape, spacing_kji_mm, needle))
    tip = np.asarray(needle.tip_kji_mm)
    back = tip - needle.active_length_mm * a
    # one voxel per slice along the dominant axis (slice centres within the active segment)
    s0, s1 = sorted((tip[dom] / sp_[dom], back[dom] / sp_[dom]))
    slices = np.arange(math.ceil(s0 - 0.5), math.floor(s1 + 0.5) + 1)
    if slices.size == 0:
        slices = np.array([round(0.5 * (s0 + s1))])
    t = np.clip((tip[dom] - slices * sp_[dom]) / a[dom], 0.0, needle.active_length_mm)
    idx = np.rint((tip[None, :] - t[:, None] * a[None, :]) / sp_).astype(int)
    idx[:, dom] = slices
    ok = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
    out = np.zeros(tuple(shape), bool)
    out[tuple(idx[ok].T)] = True
    factor = 0.5 * math.pi / math.log(math.exp(0.5 * math.pi) * PEACEMAN_RE_RATIO * h_perp / needle.radius_mm)
    true_pos = (tip[None, :] - t[:, None] * a[None, :]) / sp_
    offset = np.clip(true_pos - idx, -0.5, 0.5)
    offset[:, dom] = 0.0
    return ElectrodeVoxels(out, tuple(across), factor, idx[ok], offset[ok])


def parallel_pair(centre_kji_mm: Sequence[float], direction_kji: Sequence[float], distance_mm: float, *,
                  active_length_mm: float = 20.0, radius_mm: float = 0.6) -> list[Needle]:
    """Two parallel needles ``distance_mm`` apart, tips level, centred on ``centre_kji_mm``
    (the middle of the active parts)."""
    a = np.asarray(direction_kji, float)
    a /= np.linalg.norm(a)
    u = _perp(a)
    c = np.asarray(centre_kji_mm, float) + 0.5 * active_length_mm * a
    return [Needle(tuple((c + s * 0.5 * distance_mm * u).tolist()), tuple(a.tolist()), active_length_mm, radius_mm)
            for s in (-1.0, 1.0)]


def hexagonal_array(centre_kji_mm: Sequence[float], direction_kji: Sequence[float], side_mm: float, *,
                    active_length_mm: float = 20.0, radius_mm: float = 0.6) -> list[Needle]:
    """The 7-needle hexagonal array: one centre needle and six at ``side_mm`` around it."""
    a = np.asarray(direction_kji, float)
    a /= np.linalg.norm(a)
    u = _perp(a)
    v = np.cross(a, u)
    c = np.asarray(centre_kji_mm, float) + 0.5 * active_length_mm * a
    tips = [c] + [c + side_mm * (math.cos(t) * u + math.sin(t) * v) for t in np.arange(6) * math.pi / 3]
    return [Needle(tuple(p.tolist()), tuple(a.tolist()), active_length_mm, radius_mm) for p in tips]


def hexagonal_pairs() -> list[tuple[int, int]]:
    """The 12 pulsed pairs of the hexagonal array: centre–each outer and adjacent outer needles."""
    return [(0, i) for i in range(1, 7)] + [(i, i % 6 + 1) for i in range(1, 7)]


def _perp(a: np.ndarray) -> np.ndarray:
    e = np.zeros(3)
    e[int(np.argmin(np.abs(a)))] = 1.0
    u = np.cross(a, e)
    out: np.ndarray = u / np.linalg.norm(u)
    return out


@dataclass
class FieldResult:
    """Max |E| over pairs (V/cm) on the grid, with per-pair details and timings."""

    field_v_per_cm: np.ndarray
    spacing_kji_mm: tuple[float, float, float]
    pairs: list[tuple[int, int]]
    voltages_v: list[float]
    currents_a: list[float]
    wall_s: float
    info: dict[str, Any] = field(default_factory=dict)
    #: σ(E) fixed point reached in every pair (relative change < the tolerance)
    converged: bool = True
    #: the most solves any pair needed
    iterations: int = 1
    #: the largest fixed-point residual ‖σ(E(σ)) − σ‖/‖σ‖ over the pairs
    residual: float = 0.0
    #: Σ over pairs of σ|E|² during one pulse of that pair (W/m³), for the Joule-heating estimate
    joule_w_m3: np.ndarray | None = None
    #: per-pair potential and field (``solve_field(keep_states=True)``), to warm-start a later solve
    warm_start: WarmStart | None = None

    def adiabatic_temperature_rise_c(self, pulses: int, pulse_width_s: float, rho_c_j_m3_k: float) -> np.ndarray:
        """Joule heating upper bound (K): every pair delivers ``pulses`` pulses of ``pulse_width_s``,
        ΔT = Σ_pairs σE² · n · τ / ρc, with no conduction or perfusion between pulses (adiabatic:
        an upper bound of the rise at the end of the train)."""
        if self.joule_w_m3 is None:
            raise InvalidInputError("this field result carries no Joule density (solve_field made it).")
        if pulses < 1 or not pulse_width_s > 0 or not rho_c_j_m3_k > 0:
            raise InvalidInputError("pulses ≥ 1, pulse width > 0 s and ρc > 0 J/m³/K are needed.")
        return self.joule_w_m3 * float(pulses) * float(pulse_width_s) / float(rho_c_j_m3_k)

    def zone(self, threshold_v_per_cm: float | np.ndarray) -> np.ndarray:
        """Boolean mask where the field reaches ``threshold_v_per_cm`` (scalar or per-voxel)."""
        return self.field_v_per_cm >= threshold_v_per_cm


def _stencil_system(sigma: np.ndarray, spacing_m: np.ndarray, fixed: np.ndarray, fixed_val: np.ndarray,
                    boost: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """7-point finite-volume operator of the free voxels on a grid padded by one voxel.

    Returns (diag, ck, cj, ci, rhs), each (nk+2, nj+2, ni+2): ``ck[k, j, i]`` is the conductance
    (S/m per m²) of the face between padded voxels (k, j, i) and (k+1, j, i) when both are free
    (0 otherwise: the padding, the insulating outer faces and faces to Dirichlet needle voxels);
    ``diag`` sums every face conductance of a free voxel, including those to needles, whose
    potential moves to ``rhs`` (symmetric elimination); ``boost`` (one array of faces per axis)
    multiplies the faces of electrode voxels (:meth:`ElectrodeVoxels.face_factors`). Needle and padding voxels get diag = 1, rhs = 0:
    their unknown stays 0 and decouples (the operator stays SPD).
    """
    shape = sigma.shape
    padded = tuple(s + 2 for s in shape)
    inner = (slice(1, -1),) * 3
    diag = np.zeros(shape)
    rhs = np.zeros(shape)
    couplings = []
    free = ~fixed
    for ax in range(3):
        c = np.zeros(padded)
        couplings.append(c)
        if shape[ax] < 2:
            continue
        s0 = [slice(None)] * 3
        s1 = [slice(None)] * 3
        s0[ax] = slice(None, -1)
        s1[ax] = slice(1, None)
        lo, hi = tuple(s0), tuple(s1)
        g = _face_conductance(sigma, spacing_m, ax) * boost[ax]
        fa, fb = free[lo], free[hi]
        diag[lo] += np.where(fa, g, 0.0)
        diag[hi] += np.where(fb, g, 0.0)
        rhs[lo] += np.where(fa & ~fb, g * fixed_val[hi], 0.0)
        rhs[hi] += np.where(fb & ~fa, g * fixed_val[lo], 0.0)
        dst = [slice(1, -1)] * 3
        dst[ax] = slice(1, shape[ax])
        c[tuple(dst)] = np.where(fa & fb, g, 0.0)
    diag[fixed | (diag <= 0.0)] = 1.0
    rhs[fixed] = 0.0
    d = np.ones(padded)
    d[inner] = diag
    r = np.zeros(padded)
    r[inner] = rhs
    return d, couplings[0], couplings[1], couplings[2], r


#: MIC(0) relaxation ω (0 = IC(0), 1 = MIC: 0.97 measured fastest, 58 vs 119 iterations for IC(0))
MIC_OMEGA = 0.97
#: MIC(0) pivot safety: a pivot below this fraction of the diagonal falls back to the diagonal
MIC_SAFETY = 0.25


@nb.njit(nogil=True, cache=True)
def _mic_factor(diag: np.ndarray, ck: np.ndarray, cj: np.ndarray, ci: np.ndarray, omega: float,
                safety: float) -> np.ndarray:  # pragma: no cover - numba
    """Inverse pivots 1/e of MIC(0) (natural (k, j, i) order) of the padded 7-point operator."""
    nk, nj, ni = diag.shape[0] - 2, diag.shape[1] - 2, diag.shape[2] - 2
    inv_e = np.zeros_like(diag)
    for k in range(1, nk + 1):
        for j in range(1, nj + 1):
            for i in range(1, ni + 1):
                a = diag[k, j, i]
                gk = ck[k - 1, j, i]
                gj = cj[k, j - 1, i]
                gi = ci[k, j, i - 1]
                pk = inv_e[k - 1, j, i]
                pj = inv_e[k, j - 1, i]
                pi = inv_e[k, j, i - 1]
                e = a - gk * gk * pk - gj * gj * pj - gi * gi * pi
                e -= omega * (gk * (cj[k - 1, j, i] + ci[k - 1, j, i]) * pk
                              + gj * (ck[k, j - 1, i] + ci[k, j - 1, i]) * pj
                              + gi * (ck[k, j, i - 1] + cj[k, j, i - 1]) * pi)
                if e < safety * a:
                    e = a
                inv_e[k, j, i] = 1.0 / e
    return inv_e


@nb.njit(nogil=True, fastmath=True, cache=True, inline="always")
def _forward(inv_e: np.ndarray, ck: np.ndarray, cj: np.ndarray, ci: np.ndarray, r: np.ndarray, z: np.ndarray,
             k: int, j: int, i: int) -> None:  # pragma: no cover - numba
    """The forward MIC(0) sweep at one voxel (needs z of its −k, −j, −i neighbours)."""
    z[k, j, i] = inv_e[k, j, i] * (r[k, j, i] + ck[k - 1, j, i] * z[k - 1, j, i]
                                   + cj[k, j - 1, i] * z[k, j - 1, i] + ci[k, j, i - 1] * z[k, j, i - 1])


@nb.njit(nogil=True, fastmath=True, cache=True, inline="always")
def _backward(inv_e: np.ndarray, ck: np.ndarray, cj: np.ndarray, ci: np.ndarray, r: np.ndarray, z: np.ndarray,
              k: int, j: int, i: int) -> float:  # pragma: no cover - numba
    """The backward MIC(0) sweep at one voxel (needs z of its +k, +j, +i neighbours); returns r·z there."""
    zv = z[k, j, i] + inv_e[k, j, i] * (ck[k, j, i] * z[k + 1, j, i] + cj[k, j, i] * z[k, j + 1, i]
                                        + ci[k, j, i] * z[k, j, i + 1])
    z[k, j, i] = zv
    return float(zv * r[k, j, i])


@nb.njit(nogil=True, fastmath=True, cache=True)
def _precondition(inv_e: np.ndarray, ck: np.ndarray, cj: np.ndarray, ci: np.ndarray, r: np.ndarray,
                  z: np.ndarray, mic: bool) -> float:  # pragma: no cover - numba
    """z = M⁻¹ r (MIC(0): forward and backward sweeps; else Jacobi); returns r·z.

    Each sweep is a chain (a voxel needs its row neighbour's new z): two rows go together, the second
    one voxel behind the first (it needs the first row's z at the same i), so the core runs two
    independent chains at once — the same z, voxel by voxel, in ≈ 15 % less time (measured on a
    70×60×64 needle-pair system, round 2 session 4)."""
    nk, nj, ni = r.shape[0] - 2, r.shape[1] - 2, r.shape[2] - 2
    rz = 0.0
    if not mic:
        for k in range(1, nk + 1):
            for j in range(1, nj + 1):
                for i in range(1, ni + 1):
                    zv = inv_e[k, j, i] * r[k, j, i]
                    z[k, j, i] = zv
                    rz += zv * r[k, j, i]
        return rz
    for k in range(1, nk + 1):
        j = 1
        while j + 1 <= nj:  # rows j and j + 1, the second one voxel behind
            _forward(inv_e, ck, cj, ci, r, z, k, j, 1)
            for i in range(2, ni + 1):
                _forward(inv_e, ck, cj, ci, r, z, k, j, i)
                _forward(inv_e, ck, cj, ci, r, z, k, j + 1, i - 1)
            _forward(inv_e, ck, cj, ci, r, z, k, j + 1, ni)
            j += 2
        if j == nj:
            for i in range(1, ni + 1):
                _forward(inv_e, ck, cj, ci, r, z, k, j, i)
    for k in range(nk, 0, -1):
        j = nj
        while j - 1 >= 1:  # rows j and j − 1, the second one voxel behind
            rz += _backward(inv_e, ck, cj, ci, r, z, k, j, ni)
            for i in range(ni - 1, 0, -1):
                rz += _backward(inv_e, ck, cj, ci, r, z, k, j, i)
                rz += _backward(inv_e, ck, cj, ci, r, z, k, j - 1, i + 1)
            rz += _backward(inv_e, ck, cj, ci, r, z, k, j - 1, 1)
            j -= 2
        if j == 1:
            for i in range(ni, 0, -1):
                rz += _backward(inv_e, ck, cj, ci, r, z, k, j, i)
    return rz


@nb.njit(nogil=True, fastmath=True, cache=True)
def _pcg_stencil(diag: np.ndarray, ck: np.ndarray, cj: np.ndarray, ci: np.ndarray, b: np.ndarray,
                 x: np.ndarray, rtol: float, maxiter: int, mic: bool) -> tuple[int, float]:  # pragma: no cover
    """Preconditioned CG on the padded 7-point operator, x updated in place (warm start).

    Returns (iterations, final ‖r‖/‖b‖). One pass updates p a plane ahead of A·p.
    """
    nk, nj, ni = x.shape[0] - 2, x.shape[1] - 2, x.shape[2] - 2
    inv_e = _mic_factor(diag, ck, cj, ci, MIC_OMEGA, MIC_SAFETY) if mic else 1.0 / diag
    r = np.zeros_like(x)
    z = np.zeros_like(x)
    p = np.zeros_like(x)
    ap = np.zeros_like(x)
    bb = 0.0
    rr = 0.0
    for k in range(1, nk + 1):
        for j in range(1, nj + 1):
            for i in range(1, ni + 1):
                v = (diag[k, j, i] * x[k, j, i] - ck[k, j, i] * x[k + 1, j, i] - ck[k - 1, j, i] * x[k - 1, j, i]
                     - cj[k, j, i] * x[k, j + 1, i] - cj[k, j - 1, i] * x[k, j - 1, i]
                     - ci[k, j, i] * x[k, j, i + 1] - ci[k, j, i - 1] * x[k, j, i - 1])
                rv = b[k, j, i] - v
                r[k, j, i] = rv
                rr += rv * rv
                bb += b[k, j, i] * b[k, j, i]
    bn = math.sqrt(bb)
    if bn == 0.0:
        bn = 1.0
    rz = _precondition(inv_e, ck, cj, ci, r, z, mic)
    beta = 0.0
    it = 0
    while it < maxiter and math.sqrt(rr) > rtol * bn:
        for j in range(1, nj + 1):
            for i in range(1, ni + 1):
                p[1, j, i] = z[1, j, i] + beta * p[1, j, i]
        pap = 0.0
        for k in range(1, nk + 1):
            if k < nk:
                for j in range(1, nj + 1):
                    for i in range(1, ni + 1):
                        p[k + 1, j, i] = z[k + 1, j, i] + beta * p[k + 1, j, i]
            for j in range(1, nj + 1):
                for i in range(1, ni + 1):
                    v = (diag[k, j, i] * p[k, j, i] - ck[k, j, i] * p[k + 1, j, i] - ck[k - 1, j, i] * p[k - 1, j, i]
                         - cj[k, j, i] * p[k, j + 1, i] - cj[k, j - 1, i] * p[k, j - 1, i]
                         - ci[k, j, i] * p[k, j, i + 1] - ci[k, j, i - 1] * p[k, j, i - 1])
                    ap[k, j, i] = v
                    pap += v * p[k, j, i]
        if pap <= 0.0:
            break
        alpha = rz / pap
        rr = 0.0
        for k in range(1, nk + 1):
            for j in range(1, nj + 1):
                for i in range(1, ni + 1):
                    x[k, j, i] += alpha * p[k, j, i]
                    rv = r[k, j, i] - alpha * ap[k, j, i]
                    r[k, j, i] = rv
                    rr += rv * rv
        rz_new = _precondition(inv_e, ck, cj, ci, r, z, mic)
        beta = rz_new / rz
        rz = rz_new
        it += 1
    return it, math.sqrt(rr) / bn


def _field_magnitude_v_per_cm(phi: np.ndarray, spacing_m: np.ndarray,
                              boost: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """|E| (V/cm) per voxel: each component is the mean of the field on the voxel's two faces
    along that axis (one face at the border), the face field being the potential drop / h times
    the face's electrode factor — the field that carries the face's current (J = σE). With all
    factors 1 this is the central difference; next to a thin needle it is the field of the current
    the sub-voxel electrode actually drives (the plain difference to the Dirichlet voxel is not)."""
    e2 = np.zeros(phi.shape)
    for ax in range(3):
        n = phi.shape[ax]
        if n < 2:
            continue
        d = np.diff(phi, axis=ax) / spacing_m[ax]
        if boost is not None:
            d = d * boost[ax]
        g = np.zeros(phi.shape)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax] = slice(0, n - 1)
        hi[ax] = slice(1, n)
        g[tuple(lo)] += d
        g[tuple(hi)] += d
        inner = [slice(None)] * 3
        inner[ax] = slice(1, n - 1)
        g[tuple(inner)] *= 0.5
        e2 += g * g
    return np.sqrt(e2) / 100.0


def _face_joule_w_m3(phi: np.ndarray, sigma: np.ndarray, spacing_m: np.ndarray, boost: Sequence[np.ndarray],
                     fixed: np.ndarray) -> np.ndarray:
    """Joule power density (W/m³): each face dissipates g·Δφ² (g its conductance, S), split half to
    each of its two voxels; faces between two electrode voxels carry no current. The sum over the
    grid is exactly U·I of the discrete circuit (energy conservation)."""
    vol = float(np.prod(spacing_m))
    out = np.zeros(phi.shape)
    area = (spacing_m[1] * spacing_m[2], spacing_m[0] * spacing_m[2], spacing_m[0] * spacing_m[1])
    for ax in range(3):
        n = phi.shape[ax]
        if n < 2:
            continue
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax] = slice(0, n - 1)
        hi[ax] = slice(1, n)
        g = _face_conductance(sigma, spacing_m, ax) * boost[ax] * spacing_m[ax] * area[ax]
        p = g * np.diff(phi, axis=ax) ** 2
        p[fixed[tuple(lo)] & fixed[tuple(hi)]] = 0.0
        out[tuple(lo)] += 0.5 * p
        out[tuple(hi)] += 0.5 * p
    return out / vol


def _face_conductance(sigma: np.ndarray, spacing_m: np.ndarray, ax: int) -> np.ndarray:
    """Harmonic-mean face conductivity over h² (S/m³) of the faces normal to ``ax`` (n−1 along ax)."""
    s0 = [slice(None)] * 3
    s1 = [slice(None)] * 3
    s0[ax] = slice(None, -1)
    s1[ax] = slice(1, None)
    a, b = sigma[tuple(s0)], sigma[tuple(s1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        g: np.ndarray = np.where(a + b > 0.0, 2.0 * a * b / (a + b), 0.0) / spacing_m[ax] ** 2
        return g


def _needle_current(phi: np.ndarray, sigma: np.ndarray, spacing_m: np.ndarray, mask: np.ndarray,
                    boost: Sequence[np.ndarray]) -> float:
    """Current (A) out of the needle ``mask``: Σ face conductivity × area / h × potential drop."""
    total = 0.0
    area = (spacing_m[1] * spacing_m[2], spacing_m[0] * spacing_m[2], spacing_m[0] * spacing_m[1])
    for ax in range(3):
        if phi.shape[ax] < 2:
            continue
        s0 = [slice(None)] * 3
        s1 = [slice(None)] * 3
        s0[ax] = slice(None, -1)
        s1[ax] = slice(1, None)
        g = _face_conductance(sigma, spacing_m, ax) * boost[ax]
        g = g * spacing_m[ax] * area[ax]  # S
        d = phi[tuple(s0)] - phi[tuple(s1)]
        ma, mb = mask[tuple(s0)], mask[tuple(s1)]
        total += float(np.sum((g * d)[ma & ~mb])) - float(np.sum((g * d)[mb & ~ma]))
    return total


def _voxel_sigma(e_v_per_cm: np.ndarray, params: np.ndarray, model: str) -> np.ndarray:
    """σ(E) (S/m) with per-voxel (σ₀, σ₁, reversible, irreversible) in ``params`` (4, k, j, i)."""
    s0, s1, lo, hi = params
    if model == "linear":
        f = np.clip((e_v_per_cm - lo) / np.maximum(hi - lo, 1e-9), 0.0, 1.0)
    else:
        width = np.maximum(hi - lo, 1e-9) / 8.0
        f = 1.0 / (1.0 + np.exp(np.clip(-(e_v_per_cm - 0.5 * (lo + hi)) / width, -700.0, 700.0)))
    out: np.ndarray = s0 + (s1 - s0) * f
    return out


# ------------------------------------------------------------------------------------------------
# One pair's σ(E) loop: the stencil's structure is built once per pair (free voxels, electrode face
# factors / h², the padded arrays); each σ(E) iteration only refills the coefficients in place.
# ------------------------------------------------------------------------------------------------
#: CG tolerance of the early σ(E) iterations (relative residual, × the last fixed-point change): an
#: iterate far from the fixed point needs no 1e-6 potential (inexact Picard); every accepted field
#: comes from a solve at ``rtol`` (benchmarks/bench_field.py: CG iterations −45 %, field unchanged)
LOOSE_CG_RTOL = 1e-2


@nb.njit(nogil=True, fastmath=False, cache=True, inline="always")
def _mean_face_field(p: float, below: float, above: float, f_below: float, f_above: float, has_below: bool,
                     has_above: bool) -> float:  # pragma: no cover - numba
    """One axis's field component at a voxel of potential ``p``: the mean over its faces along the axis
    (one at the border) of the potential drop × the face's factor / h (``below``/``above``: the
    neighbours' potentials, read only where ``has_below``/``has_above``)."""
    s = 0.0
    c = 0
    if has_below:
        s += (p - below) * f_below
        c += 1
    if has_above:
        s += (above - p) * f_above
        c += 1
    return s / c


@nb.njit(nogil=True, fastmath=False, cache=True)
def _field_sigma_step(x: np.ndarray, fixed: np.ndarray, fixed_val: np.ndarray, f0: np.ndarray, f1: np.ndarray,
                      f2: np.ndarray, params: np.ndarray, sigmoid: bool, sigma: np.ndarray, phi: np.ndarray,
                      e: np.ndarray, target: np.ndarray) -> float:  # pragma: no cover - numba
    """Potential, |E| (V/cm; as :func:`_field_magnitude_v_per_cm`, ``f*`` = face factor / h in 1/m) and
    σ(E) (as :func:`_voxel_sigma`) of one solve, written into ``phi``, ``e`` and ``target``; returns the
    relative fixed-point change ‖σ(E) − σ‖/‖σ‖ over the free voxels (plain sums: no BLAS call, whose
    threads spin for milliseconds on a busy machine)."""
    nk, nj, ni = phi.shape
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                phi[k, j, i] = fixed_val[k, j, i] if fixed[k, j, i] else x[k + 1, j + 1, i + 1]
    num = 0.0
    den = 0.0
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                p = phi[k, j, i]
                e2 = 0.0
                if nk > 1:
                    lo, hi = max(k - 1, 0), min(k + 1, nk - 1)
                    s = _mean_face_field(p, phi[lo, j, i], phi[hi, j, i], f0[lo, j, i], f0[min(k, nk - 2), j, i],
                                         k > 0, k < nk - 1)
                    e2 += s * s
                if nj > 1:
                    lo, hi = max(j - 1, 0), min(j + 1, nj - 1)
                    s = _mean_face_field(p, phi[k, lo, i], phi[k, hi, i], f1[k, lo, i], f1[k, min(j, nj - 2), i],
                                         j > 0, j < nj - 1)
                    e2 += s * s
                if ni > 1:
                    lo, hi = max(i - 1, 0), min(i + 1, ni - 1)
                    s = _mean_face_field(p, phi[k, j, lo], phi[k, j, hi], f2[k, j, lo], f2[k, j, min(i, ni - 2)],
                                         i > 0, i < ni - 1)
                    e2 += s * s
                ev = math.sqrt(e2) / 100.0
                e[k, j, i] = ev
                s0 = params[0, k, j, i]
                s1 = params[1, k, j, i]
                lo = params[2, k, j, i]
                hi = params[3, k, j, i]
                if sigmoid:
                    width = max(hi - lo, 1e-9) / 8.0
                    arg = min(max(-(ev - 0.5 * (lo + hi)) / width, -700.0), 700.0)
                    f = 1.0 / (1.0 + math.exp(arg))
                else:
                    f = min(max((ev - lo) / max(hi - lo, 1e-9), 0.0), 1.0)
                t = s0 + (s1 - s0) * f
                target[k, j, i] = t
                if not fixed[k, j, i]:
                    d = t - sigma[k, j, i]
                    num += d * d
                    den += sigma[k, j, i] * sigma[k, j, i]
    return math.sqrt(num) / max(math.sqrt(den), 1e-30)


@dataclass(frozen=True)
class WarmStart:
    """Per-pair potential (V) and |E| (V/cm) of an earlier solve, to start a solve of the same pairs
    from (another grid of the same box, or other voltages): see :func:`solve_field`. float32, on the
    grid of ``spacing_kji_mm`` whose voxel 0 centre is the origin."""

    spacing_kji_mm: tuple[float, float, float]
    voltages_v: tuple[float, ...]
    potentials_v: tuple[np.ndarray, ...]
    fields_v_per_cm: tuple[np.ndarray, ...]


def _resample_linear(a: np.ndarray, src_h: Sequence[float], shape: Sequence[int], dst_h: Sequence[float]) -> np.ndarray:
    """Trilinear values of ``a`` (grid ``src_h`` mm) at the voxel centres of a grid ``shape``/``dst_h``
    with the same origin (voxel 0 centre), clamped at the borders; separable (three 1-D passes)."""
    out = np.asarray(a, np.float64)
    for ax in range(3):
        n_src = out.shape[ax]
        pos = np.arange(int(shape[ax])) * float(dst_h[ax]) / float(src_h[ax])
        if n_src == 1:
            out = np.take(out, np.zeros(pos.size, int), axis=ax)
            continue
        i0 = np.clip(np.floor(pos).astype(int), 0, n_src - 2)
        w = np.clip(pos - i0, 0.0, 1.0)
        wshape = [1, 1, 1]
        wshape[ax] = pos.size
        w = w.reshape(wshape)
        out = np.take(out, i0, axis=ax) * (1.0 - w) + np.take(out, i0 + 1, axis=ax) * w
    return np.ascontiguousarray(out)


@dataclass
class _PairResult:
    field_v_per_cm: np.ndarray
    current_a: float
    cg_iterations: int
    residual: float
    joule_w_m3: np.ndarray           # σ|E|² during a pulse of this pair (W/m³)
    solves: int
    sigma_residual: float            # ‖σ(E(σ)) − σ‖/‖σ‖ of the last solve (fixed-point residual)
    converged: bool
    potential_v: np.ndarray | None = None  # kept for a later warm start (float32)


@dataclass
class _PairSystem:
    """The σ-independent part of one pair's system, built once: Dirichlet voxels and values, the
    electrode face factors (with 1/h² for the operator and 1/h for the field), padded buffers."""

    fixed: np.ndarray
    fixed_val: np.ndarray
    boost: list[np.ndarray]
    w: list[np.ndarray]
    f: list[np.ndarray]
    bufs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    faces: list[np.ndarray]          # face conductances of the current σ (buffers, towards +k, +j, +i)
    no_diag: np.ndarray              # the diagonal's start: 0 (no open boundary in the field solver)

    @classmethod
    def build(cls, anode: ElectrodeVoxels, cathode: ElectrodeVoxels, volt: float, spacing_m: np.ndarray) -> _PairSystem:
        fixed = anode.mask | cathode.mask
        shape = fixed.shape
        boost = [a * b for a, b in zip(anode.face_factors(shape), cathode.face_factors(shape), strict=True)]
        padded = tuple(n + 2 for n in shape)
        diag = np.ones(padded)
        bufs = (diag, np.zeros(padded), np.zeros(padded), np.zeros(padded), np.zeros(padded))
        return cls(fixed, np.where(anode.mask, volt, 0.0), boost,
                   [np.ascontiguousarray(b / spacing_m[ax] ** 2) for ax, b in enumerate(boost)],
                   [np.ascontiguousarray(b / spacing_m[ax]) for ax, b in enumerate(boost)], bufs,
                   [np.zeros(b.shape) for b in boost], np.zeros(shape))

    def assemble(self, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The padded system of :func:`_stencil_system` for ``sigma``, in the preallocated buffers
        (:mod:`latplan.physics.field_stencil`: face conductances, then the gather assembly)."""
        diag, ck, cj, ci, rhs = self.bufs
        for ax in range(3):
            face_conductances_into(sigma, self.w[ax], ax, 1.0, self.faces[ax])
        g0, g1, g2 = self.faces
        gather_system_into(g0, g1, g2, self.no_diag, self.fixed, self.fixed_val, diag, ck, cj, ci, rhs)
        return self.bufs


def _solve_pair(params: np.ndarray, spacing_m: np.ndarray, anode: ElectrodeVoxels, cathode: ElectrodeVoxels,
                volt: float, iterations: int | None, model: str, rtol: float, mic: bool, maxiter: int,
                relaxation: float, tolerance: float, max_iterations: int,
                warm: tuple[np.ndarray, np.ndarray] | None = None, keep_state: bool = False) -> _PairResult:
    """σ(E) iterations of one pulsed pair, each solve warm-started from the previous potential.

    ``iterations`` None: under-relaxed fixed point σ ← σ + ω (σ(E(σ)) − σ) until the relative
    change ‖σ(E(σ)) − σ‖/‖σ‖ < ``tolerance`` (or ``max_iterations`` solves); an int: exactly
    that many solves (plain update unless ``relaxation`` < 1), 1 = constant σ₀. Early iterations
    solve the potential to a looser CG tolerance (:data:`LOOSE_CG_RTOL`); the accepted field is
    re-solved to ``rtol``. ``warm`` = (potential V, |E| V/cm) on this grid at this voltage: the
    potential starts CG; with ``iterations`` None σ starts at σ(E) of that field, the first update is
    a plain one (it replaces the guess by this grid's own σ(E)) and at least two solves are made."""
    system = _PairSystem.build(anode, cathode, volt, spacing_m)
    fixed = system.fixed
    shape = fixed.shape
    x = np.zeros(tuple(n + 2 for n in shape))
    converge = iterations is None
    if warm is not None:
        x[1:-1, 1:-1, 1:-1] = np.where(fixed, 0.0, warm[0])
    sigma = _voxel_sigma(warm[1], params, model) if (warm is not None and converge) else params[0].copy()
    min_solves = 2 if (warm is not None and converge) else 1
    phi, e, target = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    sigmoid = model == "sigmoid"
    its = 0
    res = 0.0

    def solve(cg_rtol: float) -> float:
        nonlocal its, res
        n, res = _pcg_stencil(*system.assemble(sigma), x, cg_rtol, maxiter, mic)
        its += int(n)
        if res > 10.0 * cg_rtol:
            raise PlanningError(f"field solve did not converge ({n} CG iterations, relative residual {res:.1e} > "
                                f"{cg_rtol:g}): check the conductivities (all > 0 S/m) or coarsen the grid.")
        return float(_field_sigma_step(x, fixed, system.fixed_val, system.f[0], system.f[1], system.f[2], params,
                                       sigmoid, sigma, phi, e, target))

    change = math.inf
    n_solves = iterations if iterations is not None else max_iterations
    done = 0
    for done in range(1, n_solves + 1):
        cg_rtol = max(rtol, min(LOOSE_CG_RTOL, LOOSE_CG_RTOL * change)) if converge else rtol
        change = solve(cg_rtol)
        if cg_rtol > rtol and (done == n_solves or (change < tolerance and done >= min_solves)):
            change = solve(rtol)  # the field that is kept comes from a solve at rtol
        if converge and change < tolerance and done >= min_solves:
            break
        if done < n_solves:
            omega = 1.0 if (min_solves == 2 and done == 1) else relaxation
            sigma = sigma + omega * (target - sigma)
    joule = _face_joule_w_m3(phi, sigma, spacing_m, system.boost, fixed)
    return _PairResult(e, _needle_current(phi, sigma, spacing_m, anode.mask, system.boost), its, float(res),
                       joule, done, change, bool(change < tolerance or iterations == 1),
                       phi.astype(np.float32) if keep_state else None)


def _check_options(conductivity_model: str, preconditioner: str, rtol: float,
                   tissues: Sequence[ElectroTissue]) -> None:
    """Refuse unknown models/preconditioners, a residual tolerance outside (0, 1) and σ ≤ 0."""
    if conductivity_model not in ("linear", "sigmoid"):
        raise InvalidInputError(f"conductivity model must be 'linear' or 'sigmoid'; got {conductivity_model!r}.")
    if preconditioner not in ("mic", "jacobi"):
        raise InvalidInputError(f"preconditioner must be 'mic' or 'jacobi'; got {preconditioner!r}.")
    if not 0.0 < rtol < 1.0:
        raise InvalidInputError(f"rtol must lie in (0, 1); got {rtol}.")
    if any(t.sigma0_s_m <= 0 or t.sigma1_s_m <= 0 for t in tissues):
        raise InvalidInputError("tissue conductivities must be > 0 S/m (an insulator has no field to solve).")


def solve_field(
    labels: np.ndarray,
    tissues: Sequence[ElectroTissue],
    spacing_kji_mm: Sequence[float],
    needles: Sequence[Needle],
    pairs: Sequence[tuple[int, int]] | None = None,
    voltages_v: float | Sequence[float] | None = None,
    *,
    voltage_to_distance_v_per_cm: float | None = None,
    iterations: int | None = None,
    conductivity_model: str = "linear",
    rtol: float = 1e-6,
    preconditioner: str = "mic",
    workers: int | None = None,
    relaxation: float | None = None,
    tolerance: float = 0.01,
    max_iterations: int = 30,
    warm_start: WarmStart | None = None,
    keep_states: bool = False,
) -> FieldResult:
    """Max |E| (V/cm) over electrode pairs with field-dependent conductivity.

    Parameters
    ----------
    labels:
        Integer array (k, j, i) indexing ``tissues``.
    needles, pairs:
        Needle electrodes and the pulsed (anode, cathode) index pairs (default: all pairs
        for ≤ 2 needles, :func:`hexagonal_pairs` for 7).
    voltages_v, voltage_to_distance_v_per_cm:
        Pair voltage (V): one value, one per pair, or ``ratio × centre distance`` of each pair.
    iterations, relaxation, tolerance, max_iterations:
        None (default): the σ(E) fixed point, under-relaxed (σ ← σ + ω (σ(E) − σ), ω =
        ``relaxation``, 0.5 by default) until the relative change ‖σ(E(σ)) − σ‖/‖σ‖ is below
        ``tolerance`` (1 %) or ``max_iterations`` solves; the plain update (ω = 1) oscillates with
        period 2 on IRE settings. An int: exactly that many solves per pair (1 = constant σ₀; plain
        update unless ``relaxation`` is given); ``converged`` then says whether the last one met
        the tolerance.
    rtol:
        Relative residual ‖b − AΦ‖/‖b‖ at which CG stops (1e-6: the field is within 0.01 % of
        a 1e-10 solve in the benchmark).
    preconditioner:
        ``"mic"`` (MIC(0), default) or ``"jacobi"`` (diagonal; for comparison).
    workers:
        Threads solving pairs concurrently (default: ``numba.get_num_threads()`` — the CPU count unless
        ``NUMBA_NUM_THREADS`` or ``numba.set_num_threads`` says otherwise, as in the pipeline's worker
        processes and under pytest-xdist — at most the pair count).
    warm_start, keep_states:
        ``keep_states`` keeps each pair's potential and field in ``FieldResult.warm_start``; passed as
        ``warm_start`` to a solve of the same pairs (this or another grid of the same box, these or
        other voltages: each pair's potential and field are interpolated trilinearly and scaled by
        the voltage ratio) it starts CG from that potential and, with ``iterations`` None, σ from
        σ(E) of that field; the stop rule is unchanged (relative change < ``tolerance``), with at
        least two solves and a plain first update (the guess is replaced by this grid's σ(E)).
    """
    t_start = time.perf_counter()
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise InvalidInputError(f"labels must be a 3-D array (k, j, i); got shape {lab.shape}.")
    if int(lab.max()) >= len(tissues) or int(lab.min()) < 0:
        raise InvalidInputError(f"label values must index the {len(tissues)} tissues (0-based).")
    omega = _relaxation(iterations, relaxation, tolerance, max_iterations)
    _check_options(conductivity_model, preconditioner, rtol, tissues)
    if len(needles) < 2:
        raise InvalidInputError("electroporation needs at least two needles.")
    spacing_m = np.asarray(spacing_kji_mm, float) / 1000.0
    pairs = _checked_pairs(pairs, len(needles))
    electrodes = [electrode_voxels(lab.shape, spacing_kji_mm, nd) for nd in needles]
    for i, el in enumerate(electrodes):
        if not el.mask.any():
            raise InvalidInputError(f"needle {i} lies outside the grid: move it or enlarge the grid.")
    volts = _pair_voltages(needles, pairs, voltages_v, voltage_to_distance_v_per_cm)

    table = np.array([[t.sigma0_s_m, t.sigma1_s_m, t.reversible_v_per_cm, t.irreversible_v_per_cm] for t in tissues])
    params = np.ascontiguousarray(np.moveaxis(table[lab], -1, 0))
    n_workers = max(1, min(len(pairs), workers if workers is not None else int(nb.get_num_threads())))
    maxiter = 20 * max(lab.shape) + 500

    warm = _warm_fields(warm_start, len(pairs), volts, lab.shape, spacing_kji_mm)

    def run(k: int) -> _PairResult:
        a, b = pairs[k]
        return _solve_pair(params, spacing_m, electrodes[a], electrodes[b], volts[k], iterations, conductivity_model,
                           rtol, preconditioner == "mic", maxiter, omega, tolerance, max_iterations,
                           warm(k) if warm is not None else None, keep_states)

    if n_workers == 1:
        results = [run(k) for k in range(len(pairs))]
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            results = list(pool.map(run, range(len(pairs))))
    emax = np.zeros(lab.shape)
    joule = np.zeros(lab.shape)
    for r in results:
        np.maximum(emax, r.field_v_per_cm, out=emax)
        joule += r.joule_w_m3
    solves = sum(r.solves for r in results)
    return FieldResult(
        field_v_per_cm=emax,
        spacing_kji_mm=(float(spacing_kji_mm[0]), float(spacing_kji_mm[1]), float(spacing_kji_mm[2])),
        pairs=pairs,
        voltages_v=volts,
        currents_a=[r.current_a for r in results],
        wall_s=time.perf_counter() - t_start,
        info={"solves": solves, "cg_iterations": sum(r.cg_iterations for r in results),
              "iterations_per_pair": iterations if iterations is not None else max(r.solves for r in results),
              "conductivity_model": conductivity_model, "relaxation": omega, "tolerance": tolerance,
              "unknowns": int(lab.size), "preconditioner": preconditioner, "rtol": rtol, "workers": n_workers,
              "max_relative_residual": max(r.residual for r in results),
              "pair_fields_max_v_per_cm": [float(r.field_v_per_cm.max()) for r in results]},
        converged=all(r.converged for r in results),
        iterations=max(r.solves for r in results),
        residual=max(r.sigma_residual for r in results),
        joule_w_m3=joule,
        warm_start=WarmStart((float(spacing_kji_mm[0]), float(spacing_kji_mm[1]), float(spacing_kji_mm[2])),
                             tuple(volts), tuple(r.potential_v for r in results if r.potential_v is not None),
                             tuple(r.field_v_per_cm.astype(np.float32) for r in results)) if keep_states else None,
    )


def _relaxation(iterations: int | None, relaxation: float | None, tolerance: float, max_iterations: int) -> float:
    """The σ(E) relaxation ω (default 0.5 to convergence, 1 for a fixed count); refuses bad settings."""
    if iterations is not None and not 1 <= iterations <= 10:
        raise InvalidInputError(f"iterations must be 1–10 (or None: iterate to convergence); got {iterations}.")
    omega = (1.0 if iterations is not None else 0.5) if relaxation is None else float(relaxation)
    if not 0.0 < omega <= 1.0 or not 0.0 < tolerance < 1.0 or not 1 <= max_iterations <= 200:
        raise InvalidInputError("relaxation must lie in (0, 1], tolerance in (0, 1), max_iterations in 1–200.")
    return omega


def _checked_pairs(pairs: Sequence[tuple[int, int]] | None, n_needles: int) -> list[tuple[int, int]]:
    """The pulsed pairs (default: :func:`hexagonal_pairs` for 7 needles, else all), each naming two
    different needles."""
    if pairs is None:
        pairs = hexagonal_pairs() if n_needles == 7 else list(itertools.combinations(range(n_needles), 2))
    out = [(int(a), int(b)) for a, b in pairs]
    for a, b in out:
        if not (0 <= a < n_needles and 0 <= b < n_needles) or a == b:
            raise InvalidInputError(f"pair ({a}, {b}) does not name two different needles of {n_needles}.")
    return out


def _pair_voltages(needles: Sequence[Needle], pairs: Sequence[tuple[int, int]],
                   voltages_v: float | Sequence[float] | None, ratio_v_per_cm: float | None) -> list[float]:
    """Pair voltages (V): one value, one per pair, or ``ratio × centre distance`` of each pair."""
    if voltages_v is None:
        if ratio_v_per_cm is None:
            raise InvalidInputError("give voltages_v or voltage_to_distance_v_per_cm.")
        return [ratio_v_per_cm * pair_distance_mm(needles[a], needles[b]) / 10.0 for a, b in pairs]
    if np.isscalar(voltages_v):
        return [float(voltages_v)] * len(pairs)  # type: ignore[arg-type]
    volts = [float(v) for v in voltages_v]  # type: ignore[union-attr]
    if len(volts) != len(pairs):
        raise InvalidInputError(f"{len(volts)} voltages for {len(pairs)} pairs.")
    return volts


def _warm_fields(warm_start: WarmStart | None, n_pairs: int, volts: Sequence[float], shape: Sequence[int],
                 spacing_kji_mm: Sequence[float]) -> Any:
    """k → (potential, field) of pair k from ``warm_start`` on this grid at this pair's voltage (None: none)."""
    if warm_start is None:
        return None
    if len(warm_start.potentials_v) != n_pairs or len(warm_start.voltages_v) != n_pairs:
        raise InvalidInputError(f"the warm start holds {len(warm_start.potentials_v)} pairs; this solve has {n_pairs}.")

    def fields(k: int) -> tuple[np.ndarray, np.ndarray]:
        u0 = float(warm_start.voltages_v[k])
        scale = float(volts[k]) / u0 if u0 != 0.0 else 0.0
        src = warm_start.spacing_kji_mm
        return (scale * _resample_linear(warm_start.potentials_v[k], src, shape, spacing_kji_mm),
                abs(scale) * _resample_linear(warm_start.fields_v_per_cm[k], src, shape, spacing_kji_mm))

    return fields


def pair_distance_mm(a: Needle, b: Needle) -> float:
    """Distance (mm) between the centres of the active parts of two needles."""
    ca = np.asarray(a.tip_kji_mm) - 0.5 * a.active_length_mm * np.asarray(a.direction_kji)
    cb = np.asarray(b.tip_kji_mm) - 0.5 * b.active_length_mm * np.asarray(b.direction_kji)
    return float(np.linalg.norm(ca - cb))


def zone_extents_mm(field_v_per_cm: np.ndarray, threshold_v_per_cm: float,
                    spacing_kji_mm: Sequence[float]) -> tuple[float, float, float]:
    """Extent (mm) of the zone |E| ≥ threshold along k, j and i: the span of the maximum-intensity
    projection of the field onto each axis above the threshold, its two ends interpolated
    linearly between voxel centres (sub-voxel; a gross-pathology caliper measure)."""
    out = []
    for ax in range(3):
        m = np.asarray(field_v_per_cm).max(axis=tuple(a for a in range(3) if a != ax))
        above = np.nonzero(m >= threshold_v_per_cm)[0]
        if above.size == 0:
            out.append(0.0)
            continue
        i0, i1 = int(above[0]), int(above[-1])
        lo = float(i0) - ((m[i0] - threshold_v_per_cm) / (m[i0] - m[i0 - 1]) if i0 > 0 else 0.0)
        hi = float(i1) + ((m[i1] - threshold_v_per_cm) / (m[i1] - m[i1 + 1]) if i1 < m.size - 1 else 0.0)
        out.append((hi - lo) * float(spacing_kji_mm[ax]))
    return out[0], out[1], out[2]


def fit_lethal_threshold_v_per_cm(cases: Sequence[tuple[FieldResult, Mapping[int, float]]], *,
                                  lo_v_per_cm: float = 200.0, hi_v_per_cm: float = 1500.0) -> float:
    """The threshold (V/cm, 1 V/cm steps) minimising Σ (extent/measured − 1)² over the measured
    axes of every case: ``cases`` = (field result, {axis index: measured extent mm})."""
    if not cases or not all(targets for _, targets in cases):
        raise InvalidInputError("give at least one field result with at least one measured extent.")
    best, best_err = lo_v_per_cm, math.inf
    for th in np.arange(lo_v_per_cm, hi_v_per_cm + 0.5, 1.0):
        err = 0.0
        for res, targets in cases:
            ext = zone_extents_mm(res.field_v_per_cm, float(th), res.spacing_kji_mm)
            err += sum((ext[ax] / float(mm) - 1.0) ** 2 for ax, mm in targets.items())
        if err < best_err:
            best, best_err = float(th), err
    return best


def lethal_thresholds_v_per_cm(protocol: str) -> dict[str, float]:
    """Per-tissue lethal field (V/cm) of a pulse protocol from the data file ('ire'; 'ect' is
    reversible permeabilisation: the tissue table's reversible thresholds)."""
    consts = electroporation_constants()
    if protocol == "ect":
        return {n: float(v[2]) for n, v in consts["tissues"].items()}
    prot = (consts.get("protocols") or {}).get(protocol)
    if prot is None:
        raise InvalidInputError(f"no pulse protocol {protocol!r} in {DATA_FILE.name}; known: ect, "
                                f"{', '.join(sorted(consts.get('protocols') or {}))}.")
    return {n: float(v) for n, v in prot["lethal_v_per_cm"].items()}


def protocol_tissues(protocol: str, tissues: Sequence[ElectroTissue]) -> list[ElectroTissue]:
    """The tissues with the σ(E) rise of a pulse protocol: the IRE in vivo calibration fixes
    σ₁/σ₀ (data file); other protocols keep the tissue table."""
    prot = (electroporation_constants().get("protocols") or {}).get(protocol)
    if prot is None or "sigma1_over_sigma0" not in prot:
        return list(tissues)
    ratio = float(prot["sigma1_over_sigma0"])
    return [ElectroTissue(t.name, t.sigma0_s_m, t.sigma0_s_m * ratio if t.sigma1_s_m != t.sigma0_s_m else t.sigma1_s_m,
                          t.reversible_v_per_cm, t.irreversible_v_per_cm) for t in tissues]


# ------------------------------------------------------------------------------------------------
# Generic sparse PCG on assembled CSR matrices (used by latplan.physics.bioheat's steady solve)
# ------------------------------------------------------------------------------------------------
#: unknowns above which smoothed-aggregation AMG preconditions the generic CG (Jacobi below)
AMG_ABOVE_UNKNOWNS = 2_000_000


def _preconditioner(mat: sp.csr_matrix) -> Any:
    """pyamg smoothed aggregation (local Jacobi weighting, no eigen-estimates) for large systems,
    Jacobi for small ones (set-up cost dominates there)."""
    if mat.shape[0] > AMG_ABOVE_UNKNOWNS:
        import pyamg

        ml = pyamg.smoothed_aggregation_solver(mat, max_coarse=500, smooth=("jacobi", {"weighting": "local"}))
        return ml.aspreconditioner()
    inv_d = 1.0 / mat.diagonal()
    return spla.LinearOperator(mat.shape, matvec=lambda r: inv_d * r)


def _pcg(mat: sp.csr_matrix, b: np.ndarray, x0: np.ndarray | None, m: Any, rtol: float,
         maxiter: int = 2000) -> tuple[np.ndarray, int]:
    """Preconditioned CG on an assembled sparse SPD matrix with plain numpy reductions."""
    x = np.zeros_like(b) if x0 is None else x0.copy()
    r = b - mat @ x
    bnorm = float(np.sqrt(np.sum(b * b))) or 1.0
    z = m @ r
    p = z.copy()
    rz = float(np.sum(r * z))
    for it in range(1, maxiter + 1):
        if float(np.sqrt(np.sum(r * r))) <= rtol * bnorm:
            return x, it - 1
        ap = mat @ p
        alpha = rz / float(np.sum(p * ap))
        x += alpha * p
        r -= alpha * ap
        z = m @ r
        rz_new = float(np.sum(r * z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    if float(np.sqrt(np.sum(r * r))) > rtol * bnorm * 10:
        raise PlanningError(f"sparse CG did not converge in {maxiter} iterations.")
    return x, maxiter


def coverage_curve(field_v_per_cm: np.ndarray, target: np.ndarray,
                   thresholds_v_per_cm: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Percent of ``target`` voxels whose field reaches each threshold (non-increasing curve).

    Returns (thresholds V/cm, coverage %); default thresholds 0–2000 V/cm in 25 V/cm steps.
    """
    t = np.asarray(target, bool)
    if not t.any():
        raise InvalidInputError("the target mask for the coverage curve is empty.")
    th = np.arange(0.0, 2000.0 + 1e-9, 25.0) if thresholds_v_per_cm is None else np.asarray(thresholds_v_per_cm, float)
    vals = np.sort(np.asarray(field_v_per_cm)[t])
    # fraction ≥ threshold = 1 − (number strictly below)/n
    below = np.searchsorted(vals, th, side="left")
    return th, 100.0 * (1.0 - below / vals.size)
