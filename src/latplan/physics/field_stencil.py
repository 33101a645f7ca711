"""The 7-point finite-volume stencil shared by the electric-field solvers (electroporation, RFA).

One numba kernel assembles the padded system (diag, ck, cj, ci, rhs) of
:func:`latplan.physics.electroporation._stencil_system` from the conductances of the faces: the free
voxels on either side of a face get it on their diagonal, a Dirichlet (electrode) neighbour's
potential moves to the right-hand side (symmetric elimination) and a face between two free voxels is
the coupling. Each caller computes its own face conductances (harmonic mean of σ × its face weight).

Gather form (round 6): every free voxel sums its six faces in one pass, in the order a face-by-face
scatter over (k, j, i, axis) added them (the −k, −j, −i neighbours' faces, then its own +k, +j, +i),
so the system is the same to the bit as the scatter assembly it replaced, ≈ 10× faster (no branch
on the axis, one write per voxel). Pure numerics.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["face_conductances_into", "gather_system_into"]


@nb.njit(cache=True, nogil=True)
def face_conductances_into(sigma: np.ndarray, w: np.ndarray, ax: int, h2: float,
                           out: np.ndarray) -> None:  # pragma: no cover - numba
    """Conductance of every face towards +``ax`` into ``out`` (shape of ``w``: n − 1 faces along
    ``ax``): 2 σa σb / (σa + σb) / ``h2`` × ``w``; 0 between two voxels of σ 0. The electroporation
    solver folds 1/h² into its face weight ``w`` and passes ``h2`` = 1 (an exact division); RFA
    passes its spacing squared and the sub-voxel factor as ``w`` (one kernel, both systems to the
    bit as before)."""
    nk, nj, ni = w.shape
    dk, dj, di = (1, 0, 0) if ax == 0 else ((0, 1, 0) if ax == 1 else (0, 0, 1))
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                a = sigma[k, j, i]
                b = sigma[k + dk, j + dj, i + di]
                out[k, j, i] = 2.0 * a * b / (a + b) / h2 * w[k, j, i] if a + b > 0.0 else 0.0


@nb.njit(cache=True, nogil=True)
def gather_system_into(g0: np.ndarray, g1: np.ndarray, g2: np.ndarray, d0: np.ndarray, fixed: np.ndarray,
                       fixed_val: np.ndarray, diag: np.ndarray, ck: np.ndarray, cj: np.ndarray, ci: np.ndarray,
                       rhs: np.ndarray) -> None:  # pragma: no cover - numba
    """The padded system from the face conductances ``g0..g2`` (towards +k, +j, +i) and a diagonal
    start ``d0`` (an open-boundary term, or 0), written into the voxels of the preallocated padded
    arrays (their padding is the caller's: diag 1, the rest 0). A Dirichlet voxel, or one with no
    conducting face, gets diag 1 and rhs 0."""
    nk, nj, ni = fixed.shape
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                ck[k + 1, j + 1, i + 1] = 0.0
                cj[k + 1, j + 1, i + 1] = 0.0
                ci[k + 1, j + 1, i + 1] = 0.0
                diag[k + 1, j + 1, i + 1] = 1.0
                rhs[k + 1, j + 1, i + 1] = 0.0
                if fixed[k, j, i]:
                    continue
                d = d0[k, j, i]
                r = 0.0
                if k > 0:
                    g = g0[k - 1, j, i]
                    d += g
                    if fixed[k - 1, j, i]:
                        r += g * fixed_val[k - 1, j, i]
                if j > 0:
                    g = g1[k, j - 1, i]
                    d += g
                    if fixed[k, j - 1, i]:
                        r += g * fixed_val[k, j - 1, i]
                if i > 0:
                    g = g2[k, j, i - 1]
                    d += g
                    if fixed[k, j, i - 1]:
                        r += g * fixed_val[k, j, i - 1]
                if k + 1 < nk:
                    g = g0[k, j, i]
                    d += g
                    if fixed[k + 1, j, i]:
                        r += g * fixed_val[k + 1, j, i]
                    else:
                        ck[k + 1, j + 1, i + 1] = g
                if j + 1 < nj:
                    g = g1[k, j, i]
                    d += g
                    if fixed[k, j + 1, i]:
                        r += g * fixed_val[k, j + 1, i]
                    else:
                        cj[k + 1, j + 1, i + 1] = g
                if i + 1 < ni:
                    g = g2[k, j, i]
                    d += g
                    if fixed[k, j, i + 1]:
                        r += g * fixed_val[k, j, i + 1]
                    else:
                        ci[k + 1, j + 1, i + 1] = g
                if d > 0.0:
                    diag[k + 1, j + 1, i + 1] = d
                    rhs[k + 1, j + 1, i + 1] = r
