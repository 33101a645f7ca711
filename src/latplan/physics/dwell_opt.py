"""HDR dwell-time optimisation by linear programming (scipy HiGHS).

Why LP: symmetric least squares under-covers targets because of the very high doses next
to the sources (PHYSICS.md); clinical LP formulations (Gorissen et al. 2013) use hard
minimum-dose constraints and minimise the dose outside the target. Here:

    minimise     mean dose over the normal-tissue points (shell / liver outside the CTV)
                 + M · Σ slacks
    subject to   A_ctv t + s_ctv ≥ D_presc          (minimum dose, D100 on sampled points)
                 A_oar t ≤ limit                      (per organ: hard, or soft with slack)
                 t_i ≤ k · mean(t)                    (dwell-time modulation limit)
                 t ≥ 0

CTV coverage slacks s_ctv are always present with a large penalty M (exact penalty), so
the LP is always solvable: a solution with s_ctv = 0 is a solution of the hard problem;
otherwise the plan is infeasible and the organ whose constraints carry the largest LP
dual values (marginals) is reported as limiting (or ``"catheter_geometry"`` /
``"modulation_limit"`` when coverage fails even without organ limits).

DVH-type organ limits (D_v ≤ limit, e.g. D1cc ≤ 14 Gy): the points holding the hottest v
ml under a previous solution are left unconstrained and all other points are constrained
≤ limit, which guarantees D_v ≤ limit on the sampled points; this is repeated a few times.
Constraints and prescriptions arrive as parameters (no clinical values in this module).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, sparse

from latplan.errors import InvalidInputError, PlanningError

__all__ = ["DwellOptResult", "OARConstraint", "optimise_dwell_times"]

_PENALTY = 1.0e3  # per Gy of slack per point; far above any dual of the normalised objective


@dataclass
class OARConstraint:
    """An organ-at-risk limit on sampled points.

    ``matrix_gy_per_s``: (n_points, n_dwells) dose per second of dwell time; ``limit_gy``:
    the limit; ``volume_ml``: DVH volume of the limit (D_v ≤ limit; 0 = maximum point
    dose); ``point_volume_ml``: volume each point stands for; ``hard``: hard constraint or
    penalty (``weight`` per Gy of excess per point).
    """

    name: str
    matrix_gy_per_s: np.ndarray
    limit_gy: float
    volume_ml: float = 0.0
    point_volume_ml: float = 0.0
    hard: bool = True
    weight: float = 10.0


@dataclass
class DwellOptResult:
    """Dwell times (s) and what the optimiser could (not) achieve, on the sampled points."""

    times_s: np.ndarray
    feasible: bool
    limiting_constraint: str | None
    ctv_min_dose_gy: float
    ctv_underdosed_percent: float
    oar_dv_gy: dict[str, float]
    oar_excess_gy: dict[str, float]
    solve_time_s: float
    iterations: int
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def _dv(dose: np.ndarray, volume_ml: float, point_volume_ml: float) -> float:
    """D_v on points (Gy): dose of the point at which the hottest points reach ``volume_ml``."""
    if dose.size == 0:
        return 0.0
    srt = np.sort(dose)[::-1]
    if volume_ml <= 0 or point_volume_ml <= 0:
        return float(srt[0])
    n = int(np.floor(volume_ml / point_volume_ml))
    return float(srt[min(n, srt.size - 1)])


def _solve(a_ctv: np.ndarray, presc: float, oars: list[OARConstraint], excluded: list[np.ndarray],
           cost: np.ndarray, max_modulation: float | None, use_oars: bool, time_limit_s: float) -> dict[str, Any]:
    n_dw = a_ctv.shape[1]
    n_ctv = a_ctv.shape[0]
    blocks_ub: list[sparse.spmatrix] = []
    b_ub: list[np.ndarray] = []
    groups: list[tuple[str, int, int]] = []  # (name, row start, row end) of organ rows
    soft_cols: list[tuple[str, int]] = []     # (organ, n slack columns) in order after the CTV slacks
    row = 0
    # CTV: -A t - s <= -presc
    n_soft = 0
    soft_blocks: list[tuple[int, int, np.ndarray]] = []  # (row start, n rows, col offset)
    blocks_ub.append(sparse.csr_matrix(-a_ctv))
    b_ub.append(np.full(n_ctv, -presc))
    row += n_ctv
    if use_oars:
        for oar, excl in zip(oars, excluded, strict=True):
            keep = np.ones(oar.matrix_gy_per_s.shape[0], bool)
            keep[excl] = False
            a = oar.matrix_gy_per_s[keep]
            if a.shape[0] == 0:
                continue
            blocks_ub.append(sparse.csr_matrix(a))
            b_ub.append(np.full(a.shape[0], oar.limit_gy))
            groups.append((oar.name, row, row + a.shape[0]))
            if not oar.hard:
                soft_blocks.append((row, a.shape[0], n_soft))
                soft_cols.append((oar.name, a.shape[0]))
                n_soft += a.shape[0]
            row += a.shape[0]
    if max_modulation is not None:
        mod = np.eye(n_dw) - (max_modulation / n_dw) * np.ones((n_dw, n_dw))
        blocks_ub.append(sparse.csr_matrix(mod))
        b_ub.append(np.zeros(n_dw))
        groups.append(("modulation_limit", row, row + n_dw))
        row += n_dw
    a_t = sparse.vstack(blocks_ub, format="csr")
    n_rows = a_t.shape[0]
    # slack columns: CTV slacks (identity on the first n_ctv rows, sign -1), soft-organ slacks (-1)
    s_ctv = sparse.vstack([-sparse.identity(n_ctv, format="csr"), sparse.csr_matrix((n_rows - n_ctv, n_ctv))])
    cols = [a_t, s_ctv]
    costs = [cost, np.full(n_ctv, _PENALTY)]
    if n_soft:
        s_oar = sparse.lil_matrix((n_rows, n_soft))
        weights = []
        for (start, n, off), (name, _) in zip(soft_blocks, soft_cols, strict=True):
            for r in range(n):
                s_oar[start + r, off + r] = -1.0
            w = next(o.weight for o in oars if o.name == name)
            weights.append(np.full(n, w))
        cols.append(s_oar.tocsr())
        costs.append(np.concatenate(weights))
    a_ub = sparse.hstack(cols, format="csr")
    c = np.concatenate(costs)
    res = optimize.linprog(c, A_ub=a_ub, b_ub=np.concatenate(b_ub), bounds=(0, None), method="highs",
                           options={"time_limit": time_limit_s, "presolve": True})
    return {"res": res, "groups": groups, "n_dw": n_dw, "n_ctv": n_ctv, "soft_cols": soft_cols}


def optimise_dwell_times(target_matrix_gy_per_s: np.ndarray, prescription_gy: float, *,
                         oars: list[OARConstraint] | None = None,
                         normal_matrix_gy_per_s: np.ndarray | None = None,
                         max_modulation: float | None = 10.0,
                         dvh_iterations: int = 3,
                         time_limit_s: float = 30.0,
                         coverage_tolerance_gy: float = 1e-3) -> DwellOptResult:
    """Optimise dwell times (s) for a minimum target dose with organ limits.

    Parameters
    ----------
    target_matrix_gy_per_s:
        (n_target_points, n_dwells) dose per second of dwell time at sampled CTV points.
    prescription_gy:
        minimum dose (Gy) at every sampled CTV point (D100 on the samples).
    oars:
        organ limits (:class:`OARConstraint`), hard or penalty.
    normal_matrix_gy_per_s:
        (n_normal_points, n_dwells) at normal-tissue points whose mean dose is minimised
        (e.g. liver outside the CTV within a shell); default: the target points' mean dose.
    max_modulation:
        dwell-time modulation limit k: every t_i ≤ k × mean(t) (None: no limit).
    """
    t0 = time.perf_counter()
    a_ctv = np.asarray(target_matrix_gy_per_s, float)
    if a_ctv.ndim != 2 or a_ctv.shape[0] == 0 or a_ctv.shape[1] == 0:
        raise InvalidInputError(f"target matrix must be (n_points ≥ 1, n_dwells ≥ 1); got shape {a_ctv.shape}.")
    if not (np.isfinite(prescription_gy) and prescription_gy > 0):
        raise InvalidInputError(f"prescription must be > 0 Gy; got {prescription_gy}.")
    if max_modulation is not None and max_modulation < 1:
        raise InvalidInputError(f"modulation limit k must be ≥ 1 (t_i ≤ k·mean t); got {max_modulation}.")
    oars = list(oars or [])
    for o in oars:
        if o.matrix_gy_per_s.ndim != 2 or o.matrix_gy_per_s.shape[1] != a_ctv.shape[1]:
            raise InvalidInputError(f"organ {o.name!r}: matrix must have one column per dwell ({a_ctv.shape[1]}).")
    norm = a_ctv if normal_matrix_gy_per_s is None or len(normal_matrix_gy_per_s) == 0 else np.asarray(
        normal_matrix_gy_per_s, float)
    cost = norm.mean(axis=0) / prescription_gy  # mean normal dose per Gy of prescription, per second
    # start: no organ points excluded except by a first unconstrained solution for DVH limits
    excluded = [np.zeros(0, int) for _ in oars]
    iterations = 0
    if any(o.volume_ml > 0 for o in oars):
        first = _solve(a_ctv, prescription_gy, oars, excluded, cost, max_modulation, False, time_limit_s)
        iterations += 1
        if first["res"].status == 0:
            t = first["res"].x[: a_ctv.shape[1]]
            excluded = [_hottest(o, t) for o in oars]
    best: dict[str, Any] | None = None
    for _ in range(max(1, dvh_iterations)):
        sol = _solve(a_ctv, prescription_gy, oars, excluded, cost, max_modulation, True, time_limit_s)
        iterations += 1
        if sol["res"].status != 0:
            raise PlanningError(f"the dwell-time LP did not solve (HiGHS status {sol['res'].status}: {sol['res'].message}).")
        best = sol
        t = sol["res"].x[: a_ctv.shape[1]]
        short = np.maximum(prescription_gy - a_ctv @ t, 0.0)
        if short.max() <= coverage_tolerance_gy or not any(o.volume_ml > 0 for o in oars):
            break
        new_excl = [_hottest(o, t) for o in oars]
        if all(np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(new_excl, excluded, strict=True)):
            break
        excluded = new_excl
    assert best is not None
    res = best["res"]
    t = np.maximum(res.x[: a_ctv.shape[1]], 0.0)
    d_ctv = a_ctv @ t
    short = prescription_gy - d_ctv
    under = float(np.mean(short > coverage_tolerance_gy) * 100.0)
    oar_dv = {}
    oar_excess = {}
    for o in oars:
        d = o.matrix_gy_per_s @ t
        dv = _dv(d, o.volume_ml, o.point_volume_ml)
        oar_dv[o.name] = dv
        oar_excess[o.name] = max(0.0, dv - o.limit_gy)
    coverage_ok = under == 0.0
    oar_ok = all(v <= 1e-6 + 1e-4 * o.limit_gy for v, o in zip(oar_excess.values(), oars, strict=True))
    feasible = coverage_ok and oar_ok
    limiting: str | None = None
    details: dict[str, Any] = {"duals": {}}
    if not feasible:
        if not oar_ok:
            limiting = max(oar_excess, key=lambda k: oar_excess[k])
        else:
            duals = {}
            marg = np.abs(res.ineqlin.marginals) if getattr(res, "ineqlin", None) is not None else None
            if marg is not None:
                for name, a, b in best["groups"]:
                    duals[name] = duals.get(name, 0.0) + float(marg[a:b].sum())
            details["duals"] = duals
            blocking = {k: v for k, v in duals.items() if v > 1e-9}
            if blocking:
                limiting = max(blocking, key=lambda k: blocking[k])
            else:
                limiting = "catheter_geometry"
    msg = (
        f"CTV minimum dose {d_ctv.min():.2f} Gy on {a_ctv.shape[0]} points "
        f"({'≥' if coverage_ok else '<'} {prescription_gy:g} Gy prescription)"
    )
    if oars:
        msg += "; " + ", ".join(f"{o.name} D{o.volume_ml:g}cc {oar_dv[o.name]:.2f}/{o.limit_gy:g} Gy" for o in oars)
    if limiting:
        msg += f"; limiting constraint: {limiting}"
    return DwellOptResult(
        times_s=t,
        feasible=feasible,
        limiting_constraint=limiting,
        ctv_min_dose_gy=float(d_ctv.min()),
        ctv_underdosed_percent=under,
        oar_dv_gy=oar_dv,
        oar_excess_gy=oar_excess,
        solve_time_s=time.perf_counter() - t0,
        iterations=iterations,
        message=msg,
        details=details,
    )


def _hottest(oar: OARConstraint, t: np.ndarray) -> np.ndarray:
    """Indices of the points holding the hottest ``volume_ml`` of the organ under times ``t``."""
    if oar.volume_ml <= 0 or oar.point_volume_ml <= 0:
        return np.zeros(0, int)
    n = int(np.floor(oar.volume_ml / oar.point_volume_ml))
    if n <= 0:
        return np.zeros(0, int)
    d = oar.matrix_gy_per_s @ t
    return np.argsort(-d)[:n]
