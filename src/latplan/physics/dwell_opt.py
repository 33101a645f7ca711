"""HDR dwell-time optimisation by linear programming (scipy HiGHS).

Why LP: symmetric least squares under-covers targets because of the very high doses next
to the sources (latplan's rationale, not checked against a paper); clinical LP formulations (Gorissen et al. 2013, arXiv:1408.2746: LP < 15 s) use hard
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

DVH-type organ limits (D_v ≤ limit, e.g. D1cc ≤ 14 Gy): first every organ point is held
≤ limit (conservative); if that blocks coverage, the points holding the hottest v ml under
the previous solution are left unconstrained and all other points are constrained ≤ limit,
which still guarantees D_v ≤ limit on the sampled points; this is repeated a few times.
Constraints and prescriptions arrive as parameters (no clinical values in this module).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, sparse

from latplan.errors import InvalidInputError, PlanningError

__all__ = ["DwellOptResult", "OARConstraint", "optimise_dwell_times"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_PENALTY = 1.0e3  # per Gy of slack per point; far above any dual of the normalised objective


@dataclass
class OARConstraint:
    """An organ-at-risk limit on sampled points.

    ``matrix_gy_per_s``: (n_points, n_dwells) dose per second of dwell time; ``limit_gy``:
    the limit; ``volume_ml``: DVH volume of the limit (D_v ≤ limit; 0 = maximum point
    dose); ``point_volume_ml``: volume each point stands for; ``hard``: hard constraint or
    penalty (``weight`` per Gy of excess per point). ``objective_only``: a soft penalty that is an
    objective, not a limit (e.g. a V150 objective: CTV points above 1.5 × Rx penalised); it never makes
    the plan infeasible and is never reported as limiting.
    """

    name: str
    matrix_gy_per_s: FloatArray
    limit_gy: float
    volume_ml: float = 0.0
    point_volume_ml: float = 0.0
    hard: bool = True
    weight: float = 10.0
    objective_only: bool = False


@dataclass
class DwellOptResult:
    """Dwell times (s) and what the optimiser could (not) achieve, on the sampled points."""

    times_s: FloatArray
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


def _n_hottest(volume_ml: float, point_volume_ml: float) -> int:
    """Number of points *above* D_v: D_v is the dose of point number ceil(v / pv) (1-based), as in
    :meth:`latplan.physics.dvh.StructureDose.d_ml`, so ceil(v / pv) − 1 hotter points may exceed it."""
    if volume_ml <= 0 or point_volume_ml <= 0:
        return 0
    return max(int(np.ceil(volume_ml / point_volume_ml - 1e-9)) - 1, 0)


def _dv(dose: FloatArray, volume_ml: float, point_volume_ml: float) -> float:
    """D_v on points (Gy): minimum dose of the hottest ``volume_ml`` (same convention as the DVH)."""
    if dose.size == 0:
        return 0.0
    srt = np.sort(dose)[::-1]
    return float(srt[min(_n_hottest(volume_ml, point_volume_ml), srt.size - 1)])


def _solve(a_ctv: FloatArray, presc: float, blocks: list[tuple[OARConstraint, IntArray]], cost: FloatArray,
           max_modulation: float | None, time_limit_s: float, groups: npt.NDArray[Any] | None = None,
           min_group_share: float = 0.0) -> dict[str, Any]:
    """One LP on the given CTV rows and organ rows (``blocks``: (organ, row indices))."""
    n_dw = a_ctv.shape[1]
    n_ctv = a_ctv.shape[0]
    n_mean = 1 if max_modulation is not None else 0
    soft = [(o, rows) for o, rows in blocks if not o.hard and len(rows)]
    n_soft = sum(len(r) for _, r in soft)
    n_var = n_dw + n_mean + n_ctv + n_soft
    mats: list[sparse.spmatrix] = []
    rhs: list[FloatArray] = []
    bookkeeping: list[tuple[str, int, int]] = []
    row = 0

    def pad(a: FloatArray, slack_col: int | None, n_rows: int) -> sparse.spmatrix:
        left = sparse.csr_matrix(a)
        parts = [left, sparse.csr_matrix((n_rows, n_mean))] if n_mean else [left]
        if slack_col is None:
            rest = sparse.csr_matrix((n_rows, n_ctv + n_soft))
        else:
            r = np.arange(n_rows)
            rest = sparse.csr_matrix((np.full(n_rows, -1.0), (r, slack_col + r)), shape=(n_rows, n_ctv + n_soft))
        return sparse.hstack([*parts, rest], format="csr")

    # CTV: −A t − s ≤ −presc
    mats.append(pad(-a_ctv, 0, n_ctv))
    rhs.append(np.full(n_ctv, -presc))
    row += n_ctv
    soft_off = n_ctv
    weights = []
    for o, rows in blocks:
        if len(rows) == 0:
            continue
        a = o.matrix_gy_per_s[rows]
        if o.hard:
            mats.append(pad(a, None, len(rows)))
        else:
            mats.append(pad(a, soft_off, len(rows)))
            soft_off += len(rows)
            weights.append(np.full(len(rows), o.weight))
        rhs.append(np.full(len(rows), o.limit_gy))
        bookkeeping.append((o.name, row, row + len(rows)))
        row += len(rows)
    if groups is not None and min_group_share > 0:
        # every group (catheter) carries ≥ share × total time: share·Σt − Σ_{i∈g} t_i ≤ 0
        labels = np.unique(groups)
        g_rows = np.full((len(labels), n_dw), min_group_share) - (groups[None, :] == labels[:, None])
        mats.append(pad(g_rows, None, len(labels)))
        rhs.append(np.zeros(len(labels)))
        groups_out = ("catheter_time_share", row, row + len(labels))
        groups_list = [groups_out]
        row += len(labels)
    else:
        groups_list = []
    a_eq = b_eq = None
    if max_modulation is not None:  # n_mean == 1
        # t_i − k·m ≤ 0 and n·m − Σ t = 0 (m = mean dwell time): sparse modulation limit
        mod = sparse.hstack([sparse.identity(n_dw, format="csr"), sparse.csr_matrix(np.full((n_dw, 1), -max_modulation)),
                             sparse.csr_matrix((n_dw, n_ctv + n_soft))], format="csr")
        mats.append(mod)
        rhs.append(np.zeros(n_dw))
        groups_list.append(("modulation_limit", row, row + n_dw))
        row += n_dw
        eq = np.zeros((1, n_var))
        eq[0, :n_dw] = -1.0
        eq[0, n_dw] = n_dw
        a_eq, b_eq = sparse.csr_matrix(eq), np.zeros(1)
    c = np.concatenate([cost, np.zeros(n_mean), np.full(n_ctv, _PENALTY), *weights])
    res = optimize.linprog(c, A_ub=sparse.vstack(mats, format="csr"), b_ub=np.concatenate(rhs), A_eq=a_eq, b_eq=b_eq,
                           bounds=(0, None), method="highs-ds",
                           options={"time_limit": time_limit_s, "presolve": False})
    return {"res": res, "groups": bookkeeping + groups_list, "n_dw": n_dw}


def optimise_dwell_times(target_matrix_gy_per_s: FloatArray, prescription_gy: float, *,
                         oars: list[OARConstraint] | None = None,
                         normal_matrix_gy_per_s: FloatArray | None = None,
                         max_modulation: float | None = 10.0,
                         dvh_iterations: int = 3,
                         time_limit_s: float = 30.0,
                         coverage_tolerance_gy: float = 1e-3,
                         max_rounds: int = 40,
                         target_mean_weight: float = 0.0,
                         dwell_groups: npt.NDArray[Any] | None = None,
                         min_group_share: float = 0.0) -> DwellOptResult:
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
    target_mean_weight:
        weight of the mean target dose in the objective (0: normal tissue only); a small weight
        lowers V150/V200 and spreads dwell time over the catheters.
    dwell_groups, min_group_share:
        group (catheter) index per dwell and the smallest share of the total dwell time each group
        must carry (linear constraints; 0: none) — keeps every catheter in use.

    Constraint generation: the LP is first solved on a subset of CTV and organ points; points
    that violate their constraint are added and the LP re-solved until none does. The result
    is the optimum of the LP over all points (the inactive rows do not change it), found with
    small LPs (a 200-dwell, 4 000-point problem solves in well under a second).
    """
    t0 = time.perf_counter()
    a_ctv = np.asarray(target_matrix_gy_per_s, float)
    oars = list(oars or [])
    _check_inputs(a_ctv, prescription_gy, max_modulation, oars)
    norm = a_ctv if normal_matrix_gy_per_s is None or len(normal_matrix_gy_per_s) == 0 else np.asarray(
        normal_matrix_gy_per_s, float)
    # mean normal dose (+ optionally the mean target dose, which discourages hot spots and spreads
    # time over catheters) per Gy of prescription, per second
    cost = (norm.mean(axis=0) + target_mean_weight * a_ctv.mean(axis=0)) / prescription_gy
    problem = _Problem(a_ctv=a_ctv, prescription_gy=prescription_gy, oars=oars, cost=cost,
                       max_modulation=max_modulation, time_limit_s=time_limit_s,
                       dwell_groups=None if dwell_groups is None else np.asarray(dwell_groups),
                       min_group_share=min_group_share, tol_gy=coverage_tolerance_gy, max_rounds=max_rounds)
    best, iterations = _solve_in_stages(problem, dvh_iterations)
    res = best["res"]
    t = np.maximum(res.x[: a_ctv.shape[1]], 0.0)
    d_ctv = a_ctv @ t
    short = prescription_gy - d_ctv
    under = float(np.mean(short > coverage_tolerance_gy) * 100.0)
    oar_dv: dict[str, float] = {}
    oar_excess: dict[str, float] = {}
    limits = [o for o in oars if not o.objective_only]
    for o in limits:
        d = o.matrix_gy_per_s @ t
        dv = _dv(d, o.volume_ml, o.point_volume_ml)
        oar_dv[o.name] = dv
        oar_excess[o.name] = max(0.0, dv - o.limit_gy)
    coverage_ok = under == 0.0
    oar_ok = all(v <= 1e-6 + 1e-4 * o.limit_gy for v, o in zip(oar_excess.values(), limits, strict=True))
    feasible = coverage_ok and oar_ok
    limiting: str | None = None
    details: dict[str, Any] = {"duals": {}, "lp_rows_ctv": len(best["ctv_rows"])}
    if not feasible:
        limiting = _limiting(best, oars, oar_excess, oar_ok, details)
    msg = (
        f"CTV minimum dose {d_ctv.min():.2f} Gy on {a_ctv.shape[0]} points "
        f"({'≥' if coverage_ok else '<'} {prescription_gy:g} Gy prescription)"
    )
    if limits:
        msg += "; " + ", ".join(f"{o.name} D{o.volume_ml:g}cc {oar_dv[o.name]:.2f}/{o.limit_gy:g} Gy" for o in limits)
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


def _check_inputs(a_ctv: FloatArray, prescription_gy: float, max_modulation: float | None,
                  oars: list[OARConstraint]) -> None:
    """Refuse a malformed problem with a named error."""
    if a_ctv.ndim != 2 or a_ctv.shape[0] == 0 or a_ctv.shape[1] == 0:
        raise InvalidInputError(f"target matrix must be (n_points ≥ 1, n_dwells ≥ 1); got shape {a_ctv.shape}.")
    if not (np.isfinite(prescription_gy) and prescription_gy > 0):
        raise InvalidInputError(f"prescription must be > 0 Gy; got {prescription_gy}.")
    if max_modulation is not None and max_modulation < 1:
        raise InvalidInputError(f"modulation limit k must be ≥ 1 (t_i ≤ k·mean t); got {max_modulation}.")
    for o in oars:
        if o.matrix_gy_per_s.ndim != 2 or o.matrix_gy_per_s.shape[1] != a_ctv.shape[1]:
            raise InvalidInputError(f"organ {o.name!r}: matrix must have one column per dwell ({a_ctv.shape[1]}).")


@dataclass(frozen=True)
class _Problem:
    """The full LP on all sampled points, as :func:`optimise_dwell_times` received it."""

    a_ctv: FloatArray
    prescription_gy: float
    oars: list[OARConstraint]
    cost: FloatArray
    max_modulation: float | None
    time_limit_s: float
    dwell_groups: npt.NDArray[Any] | None
    min_group_share: float
    tol_gy: float
    max_rounds: int


def _initial_rows(p: _Problem, excluded: list[IntArray], with_oars: bool
                  ) -> tuple[BoolArray, list[BoolArray]]:
    """Starting point sets: the coldest and an even stride of CTV points under uniform times, and the
    hottest 50 points of each organ (none of the released ones)."""
    n_ctv = p.a_ctv.shape[0]
    t_uni = np.ones(p.a_ctv.shape[1])
    d0 = p.a_ctv @ t_uni
    init = np.argsort(d0)[: min(n_ctv, 300)]
    stride = max(1, n_ctv // 300)
    active = np.zeros(n_ctv, bool)
    active[init] = True
    active[::stride] = True
    oar_active = []
    for o, ex in zip(p.oars, excluded, strict=True):
        m = np.zeros(o.matrix_gy_per_s.shape[0], bool)
        if with_oars:
            d = o.matrix_gy_per_s @ t_uni
            d[ex] = -np.inf
            m[np.argsort(-d)[: min(len(d) - len(ex), 50)]] = True
        m[ex] = False
        oar_active.append(m)
    return active, oar_active


def _add_violated(p: _Problem, t: FloatArray, active: BoolArray, excluded: list[IntArray],
                  oar_active: list[BoolArray], with_oars: bool) -> bool:
    """Add the (up to 1 000 worst) points that violate their constraint under ``t``; True if any."""
    added = False
    d = p.a_ctv @ t
    viol = (d < p.prescription_gy - p.tol_gy) & ~active
    if viol.any():
        idx = np.flatnonzero(viol)
        active[idx[np.argsort(d[idx])[:1000]]] = True
        added = True
    if with_oars:
        for o, ex, m in zip(p.oars, excluded, oar_active, strict=True):
            cand = np.ones(len(m), bool)
            cand[ex] = False
            dd = o.matrix_gy_per_s @ t
            v = cand & ~m & (dd > o.limit_gy + 1e-6)
            if v.any():
                idx = np.flatnonzero(v)
                m[idx[np.argsort(-dd[idx])[:1000]]] = True
                added = True
    return added


def _generate(p: _Problem, excluded: list[IntArray], with_oars: bool) -> tuple[dict[str, Any], FloatArray, int]:
    """Constraint generation: solve on a subset of points, add the violated ones, re-solve until none
    is; returns the last LP, its dwell times and the number of LPs solved."""
    active, oar_active = _initial_rows(p, excluded, with_oars)
    sol: dict[str, Any] = {}
    t: FloatArray = np.ones(p.a_ctv.shape[1])
    lp_count = 0
    for _ in range(p.max_rounds):
        rows = np.flatnonzero(active)
        blocks = [(o, np.flatnonzero(m)) for o, m in zip(p.oars, oar_active, strict=True)] if with_oars else []
        sol = _solve(p.a_ctv[rows], p.prescription_gy, blocks, p.cost, p.max_modulation, p.time_limit_s,
                     p.dwell_groups, p.min_group_share)
        lp_count += 1
        if sol["res"].status != 0:
            raise PlanningError(f"the dwell-time LP did not solve (HiGHS status {sol['res'].status}: "
                                f"{sol['res'].message}).")
        sol["ctv_rows"] = rows
        t = sol["res"].x[: p.a_ctv.shape[1]]
        if not _add_violated(p, t, active, excluded, oar_active, with_oars):
            break
    return sol, t, lp_count


def _solve_in_stages(p: _Problem, dvh_iterations: int) -> tuple[dict[str, Any], int]:
    """Stage 1: every organ point constrained (max dose ≤ limit: conservative, valid for any D_v);
    only when that blocks coverage are the hottest v ml of each organ released (stage 2), repeated
    ``dvh_iterations`` times. Returns the last LP and the number of LPs solved."""
    excluded: list[IntArray] = [np.zeros(0, int) for _ in p.oars]
    best: dict[str, Any] | None = None
    lp_count = 0
    for _ in range(1 + max(0, dvh_iterations)):
        best, t, n = _generate(p, excluded, True)
        lp_count += n
        short = np.maximum(p.prescription_gy - p.a_ctv @ t, 0.0)
        if short.max() <= p.tol_gy or not any(o.volume_ml > 0 for o in p.oars):
            break
        new_excl = [_hottest(o, t) for o in p.oars]
        if all(np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(new_excl, excluded, strict=True)):
            break
        excluded = new_excl
    assert best is not None
    return best, lp_count


def _limiting(best: dict[str, Any], oars: list[OARConstraint], oar_excess: dict[str, float], oar_ok: bool,
              details: dict[str, Any]) -> str:
    """The constraint that limits an infeasible plan: the organ with the largest excess, else the
    constraint group with the largest LP duals (written to ``details["duals"]``), else the geometry."""
    if not oar_ok:
        return max(oar_excess, key=lambda k: oar_excess[k])
    res = best["res"]
    duals: dict[str, float] = {}
    marg = np.abs(res.ineqlin.marginals) if getattr(res, "ineqlin", None) is not None else None
    if marg is not None:
        for name, a, b in best["groups"]:
            if name not in {o.name for o in oars if o.objective_only}:
                duals[name] = duals.get(name, 0.0) + float(marg[a:b].sum())
    details["duals"] = duals
    blocking = {k: v for k, v in duals.items() if v > 1e-9}
    return max(blocking, key=lambda k: blocking[k]) if blocking else "catheter_geometry"


def _hottest(oar: OARConstraint, t: FloatArray) -> IntArray:
    """Indices of the points allowed above the limit (the hottest ceil(v/pv) − 1) under times ``t``."""
    n = _n_hottest(oar.volume_ml, oar.point_volume_ml)
    if n <= 0:
        return np.zeros(0, int)
    d = oar.matrix_gy_per_s @ t
    return np.argsort(-d)[:n]
