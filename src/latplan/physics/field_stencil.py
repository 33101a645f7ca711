"""The 7-point finite-volume stencil shared by the electric-field solvers (electroporation, RFA).

One numba kernel adds a face's conductance to the padded system (diag, ck, cj, ci, rhs) of
:func:`latplan.physics.electroporation._stencil_system`: the free voxels on either side get it on
their diagonal, a Dirichlet (electrode) neighbour's potential moves to the right-hand side
(symmetric elimination) and a face between two free voxels is the coupling. Pure numerics.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["add_face"]


@nb.njit(cache=True, inline="always")
def add_face(g: float, ax: int, k: int, j: int, i: int, kb: int, jb: int, ib: int, fixed: np.ndarray,
             fixed_val: np.ndarray, diag: np.ndarray, ck: np.ndarray, cj: np.ndarray, ci: np.ndarray,
             rhs: np.ndarray) -> None:  # pragma: no cover - numba
    """Add the conductance ``g`` of the face between voxel (k, j, i) and its +``ax`` neighbour
    (kb, jb, ib) (unpadded indices; the arrays are padded by one voxel) to the system."""
    fa = not fixed[k, j, i]
    fb = not fixed[kb, jb, ib]
    if fa:
        diag[k + 1, j + 1, i + 1] += g
        if not fb:
            rhs[k + 1, j + 1, i + 1] += g * fixed_val[kb, jb, ib]
    if fb:
        diag[kb + 1, jb + 1, ib + 1] += g
        if not fa:
            rhs[kb + 1, jb + 1, ib + 1] += g * fixed_val[k, j, i]
    if fa and fb:
        if ax == 0:
            ck[k + 1, j + 1, i + 1] = g
        elif ax == 1:
            cj[k + 1, j + 1, i + 1] = g
        else:
            ci[k + 1, j + 1, i + 1] = g
