"""Defensive calls into the lesion planners of [B] and [C], and how a plan judges a prior.

Why: planners land at different times and with signatures that may grow; a missing
planner or a :class:`~latplan.errors.PlanningError` must never remove an option, only
leave ``simulation: null`` with a ``why``. Clinical parameters (target margin, IBT
prescription, SBRT schedule) come from the knowledge base and are passed by keyword,
only where the planner's signature accepts them.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from latplan.errors import NotAvailableError, PlanningError
from latplan.planning.types import TreatmentPlan

#: modality → (module, function) of its planner
PLANNERS: dict[str, tuple[str, str]] = {
    "rfa": ("latplan.planning.thermal", "plan_rfa"),
    "mwa": ("latplan.planning.thermal", "plan_mwa"),
    "cryo": ("latplan.planning.thermal", "plan_cryo"),
    "ect": ("latplan.planning.electroporation", "plan_ect"),
    "ire": ("latplan.planning.electroporation", "plan_ire"),
    "ibt": ("latplan.planning.ibt", "plan_ibt"),
    "sbrt": ("latplan.planning.sbrt", "plan_sbrt"),
    "tare": ("latplan.planning.tare", "plan_tare"),
}


def planner_for(modality: str) -> Callable[..., TreatmentPlan]:
    """The planner function, or :class:`NotAvailableError` saying why there is none."""
    if modality not in PLANNERS:
        raise NotAvailableError(f"no simulation exists for {modality} in this release (assessed by rules only).")
    mod_name, fn_name = PLANNERS[modality]
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise NotAvailableError(f"planner {mod_name} is not available in this build ({exc}).") from None
    fn = getattr(mod, fn_name, None)
    if fn is None:
        raise NotAvailableError(f"planner {mod_name}.{fn_name} is not available in this build.")
    return fn


def radiation_parameters(modality: str) -> dict[str, Any]:
    """Clinical parameters for IBT/SBRT/TARE from ``latplan.knowledge.radiation`` ([B]), if present."""
    try:
        rad = importlib.import_module("latplan.knowledge.radiation")
    except ImportError:
        return {}
    for name in (f"{modality}_parameters", f"default_{modality}_parameters", "parameters_for"):
        fn = getattr(rad, name, None)
        if callable(fn):
            try:
                out = fn(modality) if name == "parameters_for" else fn()
            except Exception:  # a knowledge loader problem must not hide the option
                return {}
            if isinstance(out, Mapping):
                return dict(out)
            if hasattr(out, "__dict__"):
                return dict(vars(out))
    return {}


def call_planner(modality: str, case: Any, lesion_id: str, measurements: Mapping[str, Any] | None,
                 parameters: Mapping[str, Any]) -> TreatmentPlan:
    """Run one planner; raises NotAvailableError / PlanningError / TypeError with the reason."""
    fn = planner_for(modality)
    sig = inspect.signature(fn)
    accepts_var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    values: dict[str, Any] = {"case": case, "lesion_id": lesion_id, "measurements": measurements,
                              "lesion_ids": [lesion_id]}
    values.update(radiation_parameters(modality))
    values.update({k: v for k, v in parameters.items() if v is not None})
    if "target_margin_mm" in parameters:
        values.setdefault("margin_mm", parameters["target_margin_mm"])
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    missing: list[str] = []
    for name, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name in values:
            if p.kind == p.POSITIONAL_ONLY:
                args.append(values[name])
            else:
                kwargs[name] = values[name]
        elif p.default is inspect.Parameter.empty:
            missing.append(name)
    if missing:
        raise NotAvailableError(f"planner {fn.__module__}.{fn.__name__} needs {', '.join(missing)}, "
                                "which the knowledge base does not provide yet.")
    if accepts_var_kw:
        for k in ("target_margin_mm",):
            if k in parameters and k not in kwargs:
                kwargs[k] = parameters[k]
    plan = fn(*args, **kwargs)
    if not isinstance(plan, TreatmentPlan):
        raise PlanningError(f"planner {fn.__name__} returned {type(plan).__name__}, not a TreatmentPlan.")
    return plan


# --- what a simulation says about the option ------------------------------------------------------
#: coverage below this (percent of the target) counts as incomplete; a numerical tolerance of the
#: voxelised comparison, not a clinical threshold (one boundary voxel layer of a 1 cm lesion ≈ 1 %)
COVERAGE_TOLERANCE_PERCENT = 99.0


def verdict(modality: str, plan: TreatmentPlan, target_margin_mm: float | None) -> tuple[str, str]:
    """('achieves' | 'fails' | 'unclear', text) — does the simulated plan reach the clinical target?"""
    m = plan.metrics
    if modality in ("ect", "ire") and m.get("coverage_goal_percent") is not None and "covered" in m:
        # electroporation plans state their own goal: ≥ goal % of the target above the field threshold
        # (ECT: the tumour; IRE: tumour + margin) — see latplan.planning.electroporation
        cov, goal = m.get("target_coverage_percent"), m["coverage_goal_percent"]
        what = str(m.get("coverage_target", "target")).replace("+", " + ")
        if m["covered"]:
            return "achieves", f"field above threshold in {cov:.1f} % of the {what} (goal {goal:g} %)"
        limited = f", limited by {m['limited_by']}" if m.get("limited_by") else ""
        return "fails", f"field above threshold in only {cov:.1f} % of the {what} (goal {goal:g} %{limited})"
    if modality in ("rfa", "mwa", "cryo", "ect", "ire", "hifu"):
        cov = m.get("coverage_percent")
        margin = m.get("min_margin_mm")
        if cov is None:
            return "unclear", "the simulation reports no coverage"
        if cov < COVERAGE_TOLERANCE_PERCENT:
            return "fails", f"simulated zone covers {cov:.1f} % of the lesion (incomplete)"
        if target_margin_mm is not None and margin is not None and margin < target_margin_mm:
            return "fails", f"simulated minimal margin {margin:.1f} mm is below the {target_margin_mm:g} mm target"
        if margin is None:
            return "achieves", f"simulated zone covers {cov:.1f} % of the lesion (margin not reported)"
        return "achieves", f"covers {cov:.1f} %, minimal margin {margin:.1f} mm ≥ {target_margin_mm or 0:g} mm target"
    if modality == "ibt":
        d100, presc = m.get("d100_gy"), plan.prescription_gy
        oar_ok = m.get("constraints_met", m.get("oar_constraints_met"))
        if d100 is None:
            return "unclear", "the simulation reports no D100"
        if presc is not None and d100 < presc * 0.995:
            return "fails", f"D100 {d100:.1f} Gy is below the {presc:g} Gy prescription"
        if oar_ok is False:
            return "fails", "an organ-at-risk limit is exceeded"
        return "achieves", f"D100 {d100:.1f} Gy reaches the prescription" + ("" if oar_ok is None else ", OAR limits met")
    if modality == "sbrt":
        feasible = m.get("feasible")
        if feasible is None:
            return "unclear", "the simulation does not say whether the schedule is feasible"
        if not feasible:
            return "fails", f"infeasible, limiting organ: {m.get('limiting_organ') or 'not named'}"
        return "achieves", f"feasible, BED {m.get('bed_gy', 'n/a')} Gy"
    if modality == "tare":
        act = m.get("activity_gbq")
        if act is None:
            return "unclear", "the simulation reports no activity"
        limiting = str(m.get("limiting") or "")
        if "lung" in limiting:
            return "fails", f"activity {act:g} GBq is limited by the lung dose; the dose goal is not reached"
        return "achieves", f"activity {act:g} GBq" + (f" (limited by {limiting})" if limiting else "")
    return "unclear", "no judgement rule for this simulation"
