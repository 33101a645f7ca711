"""``plan_case``: the tumor board's proposal for one case, and plan.json.

Flow: measurements ([A] ``latplan.anatomy.measure_case``) → for each lesion every modality
is assessed by the rule set and simulated where a planner exists → options ranked with the
patient's weights → whole-patient strategies → sensitivity of the top options to each
weight → plan.json (validated against ``board/plan.schema.json`` in the tests).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numba

from latplan._version import __version__
from latplan.anatomy import measure_case
from latplan.anatomy.geometry import CaseGeometry, case_geometry
from latplan.case import Case
from latplan.errors import LatplanError
from latplan.knowledge.features import patient_features
from latplan.knowledge.profiles import load_outcomes, load_profiles
from latplan.knowledge.rules import RuleSet, load_rule_set
from latplan.modalities import LESION_MODALITIES
from latplan.modalities.base import Site
from latplan.modalities.simulate import PLANNERS
from latplan.planning import electroporation, ibt, thermal
from latplan.planning.composite import composite_dose
from latplan.planning.types import TreatmentPlan

from .context import lesion_conditions, patient_context
from .oligo import ALIASES as OLIGO_ALIASES
from .oligo import oligometastatic_status, resolve_definition
from .option_grid import option_grid
from .options import Option, assess_options, finish_options, option_json, rank_options, simulate_options
from .preferences import CRITERIA, sensitivity, weights_from_patient
from .strategies import build_strategies

#: 2.0 (round 2, issue [H]): strategy steps may name the whole-patient steps of latplan.modalities.StepModality;
#: options may carry the new optional keys of [I]–[K] (tier, target_status, ranges). Every 1.0 key stays.
PLAN_JSON_VERSION = "2.0"


@dataclass
class BoardProposal:
    """Everything the board shows: the case, its measurements, plan.json and the plans (grids)."""

    case: Any
    measurements: dict[str, Any]
    plan_json: dict[str, Any]
    plans: dict[tuple[str, str], TreatmentPlan] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_plan_json(self) -> dict[str, Any]:
        """The plan.json document as plain JSON types (what the web app stores)."""
        return json.loads(json.dumps(self.plan_json, default=_default))




def _measure(case: Case, oligo_definition: Any = None) -> dict[str, Any]:
    if oligo_definition is None:
        return measure_case(case)
    name = OLIGO_ALIASES.get(oligo_definition, oligo_definition) if isinstance(oligo_definition, str) \
        else oligo_definition
    return measure_case(case, oligo_definition=name)


def _versions() -> dict[str, Any]:
    engines = {"latplan.planning.thermal": thermal.ENGINE_VERSION,
               "latplan.planning.electroporation": electroporation.ENGINE_VERSION,
               "latplan.planning.ibt": ibt.ENGINE_VERSION,
               "latplan.planning.sbrt": "available", "latplan.planning.tare": "available"}
    return {"latplan": __version__, "plan_json": PLAN_JSON_VERSION,
            "python": platform.python_version(), "engines": engines}


#: modalities whose plans carry a dose grid that a strategy's composite sums ([K] part 1)
_RADIATION_STEPS = ("ibt", "sbrt", "tare")


def _with_composite_dose(strategies: list[dict[str, Any]], plans: Mapping[tuple[str, str], TreatmentPlan],
                         case: Any) -> list[dict[str, Any]]:
    """Add ``composite_dose`` to every strategy that holds two or more radiation plans.

    The sum (per session against single-fraction limits, EQD2 across sessions against cumulative
    limits) is :func:`latplan.planning.composite.composite_dose`; strategies with the same set of plans
    share one computation.
    """
    if case is None:
        return strategies
    cache: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for strategy in strategies:
        keys = tuple(sorted({(str(lid), str(step["modality"])) for step in strategy.get("steps", [])
                             if step.get("modality") in _RADIATION_STEPS
                             for lid in step.get("lesion_ids") or [] if (str(lid), str(step["modality"])) in plans}))
        if len(keys) < 2:
            continue
        if keys not in cache:
            try:
                cache[keys] = composite_dose(case, [plans[k] for k in keys]).as_dict()
            except LatplanError as exc:  # shown, never dropped: the strategy's summed dose is then unknown
                cache[keys] = {"error": str(exc), "summed_plans": [f"{m}:{lid}" for lid, m in keys]}
        strategy["composite_dose"] = cache[keys]
    return strategies


def _rank_all(options: Mapping[str, Sequence[Option]], weights: Mapping[str, float]) -> None:
    for opts in options.values():
        rank_options(opts, weights)


# --- simulations in parallel processes ---------------------------------------------------------------
#: the case and rules of a simulation worker process (set once by its initializer)
_WORKER: dict[str, Any] = {}


def _init_simulation_worker(case: Case | None, rules: RuleSet, geometry: CaseGeometry | None = None) -> None:
    """One numba thread per process when several run: a 2-thread bioheat kernel was measured 2.3×
    slower than 1 thread on a busy machine (issue [H]); parallelism comes from the processes."""
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    numba.set_num_threads(1)
    # the geometry travels with its case and the maps computed so far (CaseGeometry pickles them)
    _WORKER["case"], _WORKER["rules"] = (geometry.case if geometry is not None else case), rules
    _WORKER["geometry"] = geometry


def _simulate_in_worker(job: tuple[Option, Site, Mapping[str, Any] | None],
                        simulate: bool | Collection[str]) -> Option:
    simulate_options([job], _WORKER["case"], _WORKER["rules"], simulate=simulate, geometry=_WORKER["geometry"])
    return job[0]


def _simulate(jobs: list[tuple[Option, Site, Mapping[str, Any] | None]], options: dict[str, list[Option]],
              case: Case | None, rules: RuleSet, simulate: bool | Collection[str], workers: int,
              say: Callable[[str], None], geometry: CaseGeometry | None) -> dict[str, list[Option]]:
    """Run the lesion × modality simulations: in ``workers`` processes when > 1 (each job is
    independent), else in this process. Returns ``options`` with the simulated Option objects."""
    heavy = [j for j in jobs if j[0].modality in PLANNERS and case is not None]
    if workers <= 1 or len(heavy) <= 1:
        simulate_options(jobs, case, rules, simulate=simulate, progress=say, geometry=geometry)
        return options
    heavy_ids = {id(j[0]) for j in heavy}
    light = [j for j in jobs if id(j[0]) not in heavy_ids]
    simulate_options(light, case, rules, simulate=simulate, progress=say, geometry=geometry)
    done: dict[tuple[str, str], Option] = {}
    with ProcessPoolExecutor(max_workers=min(workers, len(heavy)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_simulation_worker, initargs=(case, rules, geometry)) as pool:
        futures = [pool.submit(_simulate_in_worker, job, simulate) for job in heavy]
        for n, fut in enumerate(futures, 1):
            opt = fut.result()
            done[(opt.lesion_id, opt.modality)] = opt
            say(f"{opt.lesion_id}: simulated {opt.modality} ({n}/{len(heavy)})")
    return {lid: [done.get((lid, o.modality), o) for o in opts] for lid, opts in options.items()}


def plan_case(case: Any, *, rule_paths: Sequence[str | Path] | None = None, simulate: bool | Collection[str] = True,
              oligo_definition: Any = None, progress: Callable[[str], None] | None = None,
              measurements: Mapping[str, Any] | None = None, patient: Any = None,
              preferences: Mapping[str, float] | None = None, rules: RuleSet | None = None,
              workers: int = 1, geometry: CaseGeometry | None = None) -> BoardProposal:
    """Board proposal for ``case`` (a :class:`latplan.case.Case`; ``None`` allowed with ``measurements``
    and ``patient`` for rules-only planning).

    ``rule_paths``: hospital rule files loaded over the core set (override/add by id).
    ``preferences``: weights 0–5 overriding ``patient.preferences`` (the web app's form).
    ``simulate``: True, False, or the modality codes to simulate. ``workers`` > 1 runs the lesion ×
    modality simulations in that many processes (one numba thread each). ``geometry``: the case's
    :class:`CaseGeometry` (computed once; None: ``case_geometry(case)``), passed to every planner.
    """
    t_start = time.perf_counter()
    say = progress or (lambda _msg: None)
    patient = patient if patient is not None else case.patient
    rules = rules or load_rule_set(rule_paths)
    profiles = load_profiles()
    figures = load_outcomes()
    say("measuring lesions")
    t0 = time.perf_counter()
    meas = dict(measurements) if measurements is not None else _measure(case, oligo_definition)
    timings: dict[str, float] = {"measure": time.perf_counter() - t0}
    lesions = [dict(les) for les in meas.get("lesions") or []]
    pmeas = dict(meas.get("patient") or {})
    liver_lesions = [les for les in lesions if str(les.get("organ", "liver")) == "liver"]
    oligo, definition_name = _oligo_status(pmeas, patient, liver_lesions, oligo_definition)
    pmeas_for_rules = dict(pmeas)
    pmeas_for_rules["oligometastatic"] = {"status": oligo["status"]}

    weights = weights_from_patient(patient, preferences)
    options: dict[str, list[Option]] = {}
    contexts: dict[str, dict[str, Any]] = {}
    jobs: list[tuple[Option, Site, Mapping[str, Any] | None]] = []
    for les in lesions:
        site = Site(les, pmeas_for_rules, tuple(lesions))
        say(f"{site.lesion_id}: assessing {len(LESION_MODALITIES)} modalities")
        ctx, opts = assess_options(site, patient, rules, profiles)
        options[site.lesion_id], contexts[site.lesion_id] = opts, ctx
        jobs.extend((o, site, les) for o in opts)
    if geometry is None and case is not None:
        geometry = case_geometry(case)
    options = _simulate(jobs, options, case, rules, simulate, workers, say, geometry)
    plans: dict[tuple[str, str], TreatmentPlan] = {}
    for lid, opts in options.items():
        finish_options(opts, contexts[lid], figures)
        for o in opts:
            if o.plan is not None:
                plans[(lid, o.modality)] = o.plan
            if o.runtime_s is not None:
                timings[o.modality] = timings.get(o.modality, 0.0) + o.runtime_s
    _rank_all(options, weights.values)

    pctx = patient_features(patient, pmeas_for_rules, lesions)
    say("building whole-patient strategies")
    strategies = build_strategies(options, rules, pctx, profiles)

    sens = _sensitivity(options, rules, pctx, profiles, weights.values, bool(strategies))
    _rank_all(options, weights.values)  # restore the patient's ranking
    strategies = build_strategies(options, rules, pctx, profiles)
    timings["total"] = time.perf_counter() - t_start

    doc: dict[str, Any] = {
        "plan_json_version": PLAN_JSON_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rule_set": {"name": rules.name, "version": rules.version, "files": rules.sources},
        "patient": _patient_json(patient, pctx, oligo, definition_name),
        "lesions": [
            {"id": lid, "measurements": next(les for les in lesions if str(les.get("id")) == lid),
             "options": [option_json(o) for o in sorted(options[lid], key=lambda o: (o.rank is None, o.rank or 0))],
             "conditions": lesion_conditions(options[lid])}
            for lid in options
        ],
        "strategies": _with_composite_dose([s.to_json() for s in strategies], plans, case),
        "preferences": weights.to_json(),
        "sensitivity": sens,
        "patient_measurements": pmeas,
        "input_hashes": dict(getattr(case, "input_hashes", {}) or {}),
        "versions": _versions(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "disclaimer": "Decision support for the multidisciplinary tumor board: alternatives with sources, not one "
                      "authoritative answer. Local pathways override (hospital rule files).",
        "criteria": list(CRITERIA),
    }
    doc["option_grid"] = option_grid(doc["lesions"])
    say("done")
    return BoardProposal(case=case, measurements=meas, plan_json=doc, plans=plans, timings_s=timings)


def _oligo_status(pmeas: Mapping[str, Any], patient: Any, liver_lesions: list[dict[str, Any]],
                  oligo_definition: Any) -> tuple[dict[str, Any], str]:
    """Oligometastatic status and the name of the definition it was judged by."""
    measured = pmeas.get("oligometastatic")
    if isinstance(measured, Mapping) and measured.get("status"):
        # [A]'s measurement is the source of truth; it names the definition it used
        oligo = dict(measured)
        definition_name = str(oligo.get("definition_name") or oligo.get("definition") or "measure_case")
        if isinstance(oligo.get("definition"), Mapping):
            definition_name = str(oligo["definition"].get("name") or oligo["definition"].get("key") or "measure_case")
        return oligo, definition_name
    definition = resolve_definition(oligo_definition)
    return oligometastatic_status(patient, liver_lesions, definition), definition.name


def _sensitivity(options: dict[str, list[Option]], rules: RuleSet, pctx: Mapping[str, Any], profiles: Any,
                 weights: Mapping[str, float], have_strategies: bool) -> dict[str, Any]:
    """Which weight change flips the top option of each lesion / the top strategy (re-ranks ``options``;
    the caller restores the patient's ranking)."""
    def lesion_order(lid: str) -> Callable[[Mapping[str, float]], list[str]]:
        def f(w: Mapping[str, float]) -> list[str]:
            return [o.modality for o in rank_options(options[lid], w)]
        return f

    def strategy_order(w: Mapping[str, float]) -> list[str]:
        _rank_all(options, w)
        return [s.title for s in build_strategies(options, rules, pctx, profiles)]

    sens: dict[str, Any] = {"method": "one weight at a time over 0-5 in steps of 0.25; smallest change that changes "
                                      "the top option", "lesions": {}, "strategies": []}
    sens["ties"] = {}
    sens["notes"] = []
    for lid in options:
        sens["lesions"][lid] = [f.to_json() for f in sensitivity(lesion_order(lid), weights)]
        ranked = rank_options(options[lid], weights)
        if len(ranked) >= 2:
            tied = [o.modality for o in ranked if o.tier == ranked[0].tier
                    and abs((o.total or 0.0) - (ranked[0].total or 0.0)) < 1e-9]
            if len(tied) > 1:
                sens["ties"][lid] = tied
                sens["notes"].append(f"{lid}: {', '.join(tied)} are tied at the top (same score; their order is the "
                                     "modality list order, not a preference)")
        if not sens["lesions"][lid]:
            sens["notes"].append(f"{lid}: no single weight change within 0-5 changes the top option")
    if have_strategies:
        sens["strategies"] = [f.to_json() for f in sensitivity(strategy_order, weights)]
    return sens


def _patient_json(patient: Any, pctx: Mapping[str, Any], oligo: Mapping[str, Any],
                  definition_name: str) -> dict[str, Any]:
    """plan.json ``patient``: identity, board context and oligometastatic status."""
    return {"id": patient.id, "primary": patient.primary.value,
            "context": {
                "liver_only": None if pctx.get("extrahepatic_disease") is None
                else not pctx["extrahepatic_disease"],
                "extrahepatic_sites": patient.extrahepatic_sites,
                "liver_lesion_count": pctx.get("liver_lesion_count"),
                "lesions_one_lobe": pctx.get("lesions_one_lobe"),
                "systemic_lines": pctx.get("systemic_lines"),
                "progression_under_line": pctx.get("systemic_progression_line"),
                "future_liver_remnant_percent": pctx.get("flr_percent"),
                "note": "liver metastases dominate survival and are prioritised even with extrahepatic "
                        "disease (seed)"},
            "oligometastatic": {"status": oligo["status"], "definition": definition_name,
                                "details": oligo},
            "board_context": patient_context(pctx)}


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, (dt.date, dt.datetime)):
        return o.isoformat()
    return str(o)


def plan_json_text(proposal: BoardProposal) -> str:
    return json.dumps(proposal.plan_json, indent=2, default=_default, ensure_ascii=False)


def write_plan_json(proposal: BoardProposal, path: str | Path) -> Path:
    """Write plan.json (UTF-8, indented); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(plan_json_text(proposal), encoding="utf-8")
    tmp.replace(p)
    return p


def plan_schema() -> dict[str, Any]:
    """The JSON Schema of plan.json (``board/plan.schema.json``)."""
    return json.loads((resources.files("latplan.board") / "plan.schema.json").read_text(encoding="utf-8"))
