"""Electric field of needle electrodes for electrochemotherapy (ECT) and IRE.

    ∇·(σ(E) ∇Φ) = 0     per electrode pair, Φ = U on one needle, 0 on the other

Why: ECT/IRE treat what the field reaches above a tissue threshold (reversible for ECT,
irreversible for IRE); U/d alone can misjudge the local field badly (PHYSICS.md), so the
field is solved on the patient grid. Pure numerics: thresholds and voltages are parameters
(defaults in ``data/ablation/electroporation.yaml`` with citations).

Numerics (decisions)
--------------------
* Cell-centred finite volumes on the (k, j, i) grid, face conductivity = harmonic mean; the
  outer faces are insulating (zero flux); needle voxels (within the needle radius of its
  active segment, at least the voxel line through the axis) are Dirichlet.
* Needles that are not part of the pair are left as tissue (they are disconnected/floating
  in the generator's switching; their metal is not modelled) — a known limit.
* The sparse SPD system is solved by conjugate gradients preconditioned by pyamg smoothed
  aggregation. σ(E) is updated from the field and the system re-solved (``iterations``, 3 by
  default; the AMG hierarchy of the first iteration is reused, the previous potential is the
  initial guess).
* σ(E): ``linear`` (σ₀ below the reversible threshold, σ₁ above the irreversible one,
  linear between) or ``sigmoid`` (centred between the thresholds).
* |E| from central differences of Φ (one-sided at borders), V/cm; the voxel-wise maximum
  over all pairs is the treatment field.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import yaml

from latplan.errors import InvalidInputError, PlanningError, SourceDataError

__all__ = [
    "ElectroTissue",
    "FieldResult",
    "Needle",
    "coverage_curve",
    "default_electro_tissues",
    "electroporation_constants",
    "hexagonal_array",
    "needle_mask",
    "parallel_pair",
    "solve_field",
]

DATA_FILE = Path(__file__).resolve().parent / "data" / "ablation" / "electroporation.yaml"
ENGINE_VERSION = "efield-1.0"


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
    return data


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
    return u / np.linalg.norm(u)


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

    def zone(self, threshold_v_per_cm: float | np.ndarray) -> np.ndarray:
        """Boolean mask where the field reaches ``threshold_v_per_cm`` (scalar or per-voxel)."""
        return self.field_v_per_cm >= threshold_v_per_cm


def _face_system(sigma: np.ndarray, spacing_m: np.ndarray, fixed: np.ndarray, fixed_val: np.ndarray,
                 index: np.ndarray, n_unknown: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Assemble the FV matrix on unknown voxels and the RHS from the Dirichlet needles."""
    rows, cols, vals = [], [], []
    d_idx, d_val, r_idx, r_val = [], [], [], []
    for ax in range(3):
        if sigma.shape[ax] < 2:
            continue
        s0 = [slice(None)] * 3
        s1 = [slice(None)] * 3
        s0[ax] = slice(None, -1)
        s1[ax] = slice(1, None)
        a, b = sigma[tuple(s0)], sigma[tuple(s1)]
        g = (2.0 * a * b / (a + b)) / spacing_m[ax] ** 2
        ia, ib = index[tuple(s0)], index[tuple(s1)]
        fa, fb = fixed[tuple(s0)], fixed[tuple(s1)]
        va, vb = fixed_val[tuple(s0)], fixed_val[tuple(s1)]
        m = (~fa) & (~fb)  # unknown–unknown faces
        gm = g[m]
        rows += [ia[m], ib[m]]
        cols += [ib[m], ia[m]]
        vals += [-gm, -gm]
        d_idx += [ia[m], ib[m]]
        d_val += [gm, gm]
        m = (~fa) & fb  # unknown–needle faces
        d_idx.append(ia[m])
        d_val.append(g[m])
        r_idx.append(ia[m])
        r_val.append(g[m] * vb[m])
        m = fa & (~fb)
        d_idx.append(ib[m])
        d_val.append(g[m])
        r_idx.append(ib[m])
        r_val.append(g[m] * va[m])
    diag = np.bincount(np.concatenate(d_idx), weights=np.concatenate(d_val), minlength=n_unknown)
    rhs = np.bincount(np.concatenate(r_idx), weights=np.concatenate(r_val), minlength=n_unknown)
    rows.append(np.arange(n_unknown))
    cols.append(np.arange(n_unknown))
    vals.append(diag)
    mat = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(n_unknown, n_unknown))
    return mat, rhs


def _field_magnitude_v_per_cm(phi: np.ndarray, spacing_m: np.ndarray) -> np.ndarray:
    e2 = np.zeros(phi.shape)
    for ax in range(3):
        if phi.shape[ax] < 2:
            continue
        g = np.gradient(phi, spacing_m[ax], axis=ax)
        e2 += g * g
    return np.sqrt(e2) / 100.0


def solve_field(
    labels: np.ndarray,
    tissues: Sequence[ElectroTissue],
    spacing_kji_mm: Sequence[float],
    needles: Sequence[Needle],
    pairs: Sequence[tuple[int, int]] | None = None,
    voltages_v: float | Sequence[float] | None = None,
    *,
    voltage_to_distance_v_per_cm: float | None = None,
    iterations: int = 3,
    conductivity_model: str = "linear",
    rtol: float = 1e-8,
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
    iterations:
        Number of solves per pair (1 = constant σ₀; 2–5 with σ(E) updates).
    """
    t_start = time.perf_counter()
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise InvalidInputError(f"labels must be a 3-D array (k, j, i); got shape {lab.shape}.")
    if int(lab.max()) >= len(tissues) or int(lab.min()) < 0:
        raise InvalidInputError(f"label values must index the {len(tissues)} tissues (0-based).")
    if not 1 <= iterations <= 10:
        raise InvalidInputError(f"iterations must be 1–10; got {iterations}.")
    if len(needles) < 2:
        raise InvalidInputError("electroporation needs at least two needles.")
    spacing_m = np.asarray(spacing_kji_mm, float) / 1000.0
    if pairs is None:
        pairs = hexagonal_pairs() if len(needles) == 7 else list(itertools.combinations(range(len(needles)), 2))
    pairs = [(int(a), int(b)) for a, b in pairs]
    for a, b in pairs:
        if not (0 <= a < len(needles) and 0 <= b < len(needles)) or a == b:
            raise InvalidInputError(f"pair ({a}, {b}) does not name two different needles of {len(needles)}.")
    masks = [needle_mask(lab.shape, spacing_kji_mm, nd) for nd in needles]
    for i, m in enumerate(masks):
        if not m.any():
            raise InvalidInputError(f"needle {i} lies outside the grid: move it or enlarge the grid.")
    if voltages_v is None:
        if voltage_to_distance_v_per_cm is None:
            raise InvalidInputError("give voltages_v or voltage_to_distance_v_per_cm.")
        volts = []
        for a, b in pairs:
            ca = np.asarray(needles[a].tip_kji_mm) - 0.5 * needles[a].active_length_mm * np.asarray(needles[a].direction_kji)
            cb = np.asarray(needles[b].tip_kji_mm) - 0.5 * needles[b].active_length_mm * np.asarray(needles[b].direction_kji)
            volts.append(voltage_to_distance_v_per_cm * float(np.linalg.norm(ca - cb)) / 10.0)
    elif np.isscalar(voltages_v):
        volts = [float(voltages_v)] * len(pairs)  # type: ignore[arg-type]
    else:
        volts = [float(v) for v in voltages_v]  # type: ignore[union-attr]
        if len(volts) != len(pairs):
            raise InvalidInputError(f"{len(volts)} voltages for {len(pairs)} pairs.")

    sig0 = np.array([t.sigma0_s_m for t in tissues])[lab]
    emax = np.zeros(lab.shape)
    currents = []
    solves = 0
    cg_iters = 0
    for (a, b), volt in zip(pairs, volts, strict=True):
        fixed = masks[a] | masks[b]
        fixed_val = np.where(masks[a], volt, 0.0)
        index = np.full(lab.shape, -1, np.int64)
        free = ~fixed
        n_unknown = int(free.sum())
        index[free] = np.arange(n_unknown)
        sigma = sig0.copy()
        x = None
        precond = None
        phi = np.zeros(lab.shape)
        for _ in range(iterations):
            mat, rhs = _face_system(sigma, spacing_m, fixed, fixed_val, index, n_unknown)
            if precond is None:
                precond = _preconditioner(mat)
            x, its = _pcg(mat, rhs, x, precond, rtol)
            cg_iters += its
            solves += 1
            phi[free] = x
            phi[fixed] = fixed_val[fixed]
            e = _field_magnitude_v_per_cm(phi, spacing_m)
            new_sigma = np.empty(lab.shape)
            for ti, t in enumerate(tissues):
                m = lab == ti
                if m.any():
                    new_sigma[m] = t.sigma(e[m], conductivity_model)
            sigma = new_sigma
        # current through the anode: sum of face fluxes from the anode needle (A), for checks
        currents.append(_needle_current(phi, sigma, spacing_m, masks[a]))
        emax = np.maximum(emax, e)
    return FieldResult(
        field_v_per_cm=emax,
        spacing_kji_mm=tuple(float(s) for s in spacing_kji_mm),
        pairs=pairs,
        voltages_v=volts,
        currents_a=currents,
        wall_s=time.perf_counter() - t_start,
        info={"solves": solves, "cg_iterations": cg_iters, "iterations_per_pair": iterations,
              "conductivity_model": conductivity_model, "unknowns": int(lab.size)},
    )


#: unknowns above which smoothed-aggregation AMG preconditions CG (Jacobi below: measured faster
#: up to at least 230 k unknowns, 1 s per solve vs 2–3 s with AMG set-up)
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
    """Preconditioned CG with plain numpy reductions (no BLAS threads: robust on busy machines)."""
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
        raise PlanningError(f"field solve did not converge in {maxiter} CG iterations.")
    return x, maxiter


def _needle_current(phi: np.ndarray, sigma: np.ndarray, spacing_m: np.ndarray, mask: np.ndarray) -> float:
    total = 0.0
    area = [spacing_m[1] * spacing_m[2], spacing_m[0] * spacing_m[2], spacing_m[0] * spacing_m[1]]
    for ax in range(3):
        if phi.shape[ax] < 2:
            continue
        s0 = [slice(None)] * 3
        s1 = [slice(None)] * 3
        s0[ax] = slice(None, -1)
        s1[ax] = slice(1, None)
        a, b = sigma[tuple(s0)], sigma[tuple(s1)]
        g = 2.0 * a * b / (a + b) / spacing_m[ax] * area[ax]
        d = phi[tuple(s0)] - phi[tuple(s1)]
        ma, mb = mask[tuple(s0)], mask[tuple(s1)]
        total += float(np.sum((g * d)[ma & ~mb])) - float(np.sum((g * d)[mb & ~ma]))
    return total


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
