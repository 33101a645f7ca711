"""The tumor board's proposal for one case, and plan.json, in three stages that the pipeline chains.

* :func:`assess_case` — measurements ([A] ``latplan.anatomy.measure_case``) → every modality of every
  lesion assessed by the rule set → :class:`CaseAssessment` (no images inside: it travels between processes);
* :func:`simulation_jobs` — one :class:`~latplan.modalities.simulate.SimulationJob` per lesion × modality
  that is simulated (run by :func:`latplan.modalities.simulate.simulate_job`, anywhere);
* :func:`finish_case` — re-assess with the plans (verdicts, targets, organs in the zone) → options
  ranked with the patient's weights → whole-patient strategies and their composite dose → sensitivity
  of the top options to each weight → plan.json (validated against ``board/plan.schema.json`` in the tests).

:func:`plan_case` runs the three in this process (the rules-only and test entry point);
:mod:`latplan.pipeline.stages` runs them in worker processes or on Dask.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from latplan._version import __version__
from latplan.anatomy import measure_case
from latplan.anatomy.geometry import CaseGeometry, case_geometry
from latplan.case import Case
from latplan.errors import LatplanError, PlanningError
from latplan.knowledge.features import patient_features
from latplan.knowledge.profiles import load_outcomes, load_profiles
from latplan.knowledge.rules import RuleSet, load_rule_set
from latplan.modalities import LESION_MODALITIES
from latplan.modalities.base import Site
from latplan.modalities.simulate import SimulationJob, SimulationResult, simulate_job
from latplan.planning import electroporation, ibt, thermal
from latplan.planning.composite import composite_dose
from latplan.planning.types import TreatmentPlan

from .context import lesion_conditions, patient_context
from .oligo import ALIASES as OLIGO_ALIASES
from .oligo import oligometastatic_status, resolve_definition
from .option_grid import option_grid
from .options import (
    Option,
    apply_simulation,
    assess_options,
    finish_options,
    judge_simulation,
    option_json,
    rank_options,
    simulation_job,
    simulation_skip,
)
from .preferences import CRITERIA, Weights, sensitivity, weights_from_patient
from .strategies import build_strategies

#: 2.0 (round 2, issue [H]): strategy steps may name the whole-patient steps of latplan.modalities.StepModality;
#: options may carry the new optional keys of [I]–[K] (tier, target_status, ranges). Every 1.0 key stays.
#: 2.1 (issue 13): target_status "simulation_failed"; options' lesion_truncated_by_fov; lesions' measurements may
#: carry truncated_by_fov_faces, size_is_lower_bound, volume_lower_bound_ml, max_diameter_lower_bound_mm.
#: 2.2: RFA/MWA/cryo, IBT and SBRT simulations carry fov_limited, fov_limited_faces, fov_extension_mm, fov_zone_cut_faces and
#: fov_limited_note (latplan.planning.fov.fov_check).
PLAN_JSON_VERSION = "2.3"


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


@dataclass
class CaseAssessment:
    """A case assessed by the rules, before any simulation (the pipeline's ``assess`` stage).

    Everything :func:`finish_case` needs besides the simulation results and the case itself, so that
    it can travel between processes (the images stay out of it). :func:`finish_case` completes the
    options in place: finish one assessment once.
    """

    patient: Any
    rules: RuleSet
    profiles: dict[str, Any]
    figures: tuple[Any, ...]
    weights: Weights
    measurements: dict[str, Any]
    lesions: list[dict[str, Any]]
    patient_measurements: dict[str, Any]
    patient_measurements_for_rules: dict[str, Any]
    oligo: dict[str, Any]
    definition_name: str
    options: dict[str, list[Option]]
    contexts: dict[str, dict[str, Any]]
    sites: dict[str, Site]
    simulate: bool | frozenset[str]
    has_case: bool
    input_hashes: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)
    started_s: float = field(default_factory=time.time)


def assess_case(case: Any, measurements: Mapping[str, Any] | None = None, *, rules: RuleSet, patient: Any = None,
                oligo_definition: Any = None, preferences: Mapping[str, float] | None = None,
                simulate: bool | Collection[str] = True,
                progress: Callable[[str], None] | None = None) -> CaseAssessment:
    """Every modality of every lesion assessed by ``rules`` (no simulation yet): the ``assess`` stage.

    ``case`` may be None with ``measurements`` and ``patient`` (rules-only planning); without
    ``measurements`` the case is measured here.
    """
    started = time.time()
    say = progress or (lambda _msg: None)
    patient = patient if patient is not None else case.patient
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
    profiles = load_profiles()
    options: dict[str, list[Option]] = {}
    contexts: dict[str, dict[str, Any]] = {}
    sites: dict[str, Site] = {}
    for les in lesions:
        site = Site(les, pmeas_for_rules, tuple(lesions))
        say(f"{site.lesion_id}: assessing {len(LESION_MODALITIES)} modalities")
        ctx, opts = assess_options(site, patient, rules, profiles)
        options[site.lesion_id], contexts[site.lesion_id], sites[site.lesion_id] = opts, ctx, site
    wanted: bool | frozenset[str] = simulate if isinstance(simulate, bool) else frozenset(simulate)
    return CaseAssessment(patient, rules, profiles, load_outcomes(), weights_from_patient(patient, preferences), meas,
                          lesions, pmeas, pmeas_for_rules, oligo, definition_name, options, contexts, sites, wanted,
                          case is not None, dict(getattr(case, "input_hashes", {}) or {}), timings, started)


def simulation_jobs(assessment: CaseAssessment) -> list[SimulationJob]:
    """The simulations this run makes: one per lesion × modality that has a planner, is wanted
    (``simulate``), has an image case and is not contraindicated by rule."""
    return [simulation_job(o, assessment.sites[lid].lesion) for lid, opts in assessment.options.items() for o in opts
            if simulation_skip(o, assessment.has_case, assessment.simulate) is None]


def _attach(assessment: CaseAssessment, results: Sequence[SimulationResult]) -> dict[tuple[str, str], TreatmentPlan]:
    """Results onto their options, each option re-assessed with its plan; returns the plans."""
    by_key = {r.key: r for r in results}
    plans: dict[tuple[str, str], TreatmentPlan] = {}
    for lid, opts in assessment.options.items():
        for o in opts:
            result = by_key.get((lid, o.modality))
            why = simulation_skip(o, assessment.has_case, assessment.simulate)
            if result is not None:
                apply_simulation(o, result)
            elif why is None:
                raise PlanningError(f"no simulation result for {lid} × {o.modality}: run every job of "
                                    "simulation_jobs(assessment) before finish_case.")
            else:
                o.simulation_why = why
            judge_simulation(o, assessment.rules)
        finish_options(opts, assessment.contexts[lid], assessment.figures)
        for o in opts:
            if o.plan is not None:
                plans[(lid, o.modality)] = o.plan
            if o.runtime_s is not None:
                assessment.timings[o.modality] = assessment.timings.get(o.modality, 0.0) + o.runtime_s
    return plans


def finish_case(assessment: CaseAssessment, results: Sequence[SimulationResult], case: Any = None,
                progress: Callable[[str], None] | None = None) -> BoardProposal:
    """Re-assess with the simulated plans, build strategies, sum their dose, rank: the board proposal.

    ``case`` (the image case, or None for rules-only planning) is needed for the composite dose.
    """
    say = progress or (lambda _msg: None)
    a = assessment
    plans = _attach(a, results)
    options, rules, profiles, weights = a.options, a.rules, a.profiles, a.weights
    _rank_all(options, weights.values)
    pctx = patient_features(a.patient, a.patient_measurements_for_rules, a.lesions)
    say("building whole-patient strategies")
    strategies = build_strategies(options, rules, pctx, profiles)
    sens = _sensitivity(options, rules, pctx, profiles, weights.values, bool(strategies))
    _rank_all(options, weights.values)  # restore the patient's ranking
    strategies = build_strategies(options, rules, pctx, profiles)
    timings = a.timings
    timings["total"] = time.time() - a.started_s
    doc: dict[str, Any] = {
        "plan_json_version": PLAN_JSON_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rule_set": {"name": rules.name, "version": rules.version, "files": rules.sources},
        "patient": _patient_json(a.patient, pctx, a.oligo, a.definition_name),
        "lesions": [
            {"id": lid, "measurements": next(les for les in a.lesions if str(les.get("id")) == lid),
             "options": [option_json(o) for o in sorted(options[lid], key=lambda o: (o.rank is None, o.rank or 0))],
             "conditions": lesion_conditions(options[lid])}
            for lid in options
        ],
        "strategies": _with_composite_dose([s.to_json() for s in strategies], plans, case if a.has_case else None),
        "preferences": weights.to_json(),
        "sensitivity": sens,
        "patient_measurements": a.patient_measurements,
        "input_hashes": a.input_hashes,
        "versions": _versions(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "disclaimer": "Decision support for the multidisciplinary tumor board: alternatives with sources, not one "
                      "authoritative answer. Local pathways override (hospital rule files).",
        "criteria": list(CRITERIA),
    }
    doc["option_grid"] = option_grid(doc["lesions"])
    say("done")
    return BoardProposal(case=case, measurements=a.measurements, plan_json=doc, plans=plans, timings_s=timings)


def plan_case(case: Any, *, rule_paths: Sequence[str | Path] | None = None, simulate: bool | Collection[str] = True,
              oligo_definition: Any = None, progress: Callable[[str], None] | None = None,
              measurements: Mapping[str, Any] | None = None, patient: Any = None,
              preferences: Mapping[str, float] | None = None, rules: RuleSet | None = None,
              workers: int = 1, geometry: CaseGeometry | None = None) -> BoardProposal:
    """Board proposal for ``case`` (a :class:`latplan.case.Case`; ``None`` allowed with ``measurements``
    and ``patient`` for rules-only planning), in this process: :func:`assess_case` →
    :func:`simulation_jobs` → :func:`latplan.modalities.simulate.simulate_job` each → :func:`finish_case`.

    The pipeline (:mod:`latplan.pipeline.stages`) chains the same stages, in worker processes or on
    Dask. ``rule_paths``: hospital rule files loaded over the core set (override/add by id).
    ``preferences``: weights 0–5 overriding ``patient.preferences`` (the web app's form).
    ``simulate``: True, False, or the modality codes to simulate. ``workers`` > 1 runs the simulations
    in that many threads. ``geometry``: the case's :class:`CaseGeometry` (computed once; None:
    ``case_geometry(case)``), passed to every planner.
    """
    say = progress or (lambda _msg: None)
    rules = rules or load_rule_set(rule_paths)
    assessment = assess_case(case, measurements, rules=rules, patient=patient, oligo_definition=oligo_definition,
                             preferences=preferences, simulate=simulate, progress=say)
    jobs = simulation_jobs(assessment)
    if geometry is None and case is not None:
        geometry = case_geometry(case)

    def run(job: SimulationJob) -> SimulationResult:
        say(f"{job.lesion_id}: simulating {job.modality}")
        return simulate_job(job, case, geometry)

    if workers > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(run, jobs))
    else:
        results = [run(job) for job in jobs]
    return finish_case(assessment, results, case, say)


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
