"""Steady state of the same stencil (sparse solve), for verification against analytic solutions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from latplan.physics.bioheat.data import Tissue
from latplan.physics.bioheat.grid import _spacing_m, _tables
from latplan.physics.electroporation import _pcg, _preconditioner


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
    x, _its = _pcg(a, b, None, _preconditioner(a), rtol)
    out = np.zeros(shape)
    out[1:-1, 1:-1, 1:-1] = x.reshape(ishape)
    return out + blood_temperature_c

