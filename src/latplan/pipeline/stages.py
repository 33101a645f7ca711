"""The stages of planning one case, as typed functions (the in-process path, the ``--workers``
process pool and the Dask cohort tasks all chain these same functions):

    prepare(case, options)                               -> PreparedCase       (measure, CaseGeometry, assess, jobs)
    assess(case, measurements, rules, options)          -> CaseAssessment     (rules; board)
    simulation_jobs(assessment)                          -> list[SimulationJob] (one per lesion × modality)
    run_simulation(job, case, geometry)                  -> SimulationResult   (planner → engines; anywhere)
    finish(assessment, results, case)                    -> BoardProposal      (re-assess, strategies,
                                                                                composite dose, rank; board)

:func:`run_simulations` runs a list of jobs in this process or in ``workers`` processes (one numba
thread each). The clinical logic stays in :mod:`latplan.board` (rules, verdicts, ranking,
strategies); the planners in :mod:`latplan.planning` behind the :mod:`latplan.modalities` registry.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from latplan.anatomy.geometry import CaseGeometry, case_geometry
from latplan.anatomy.measurements import CaseMeasurements, measure
from latplan.board.proposal import BoardProposal, CaseAssessment, assess_case, finish_case
from latplan.board.proposal import simulation_jobs as board_simulation_jobs
from latplan.case import Case
from latplan.knowledge.rules import RuleSet, load_rule_set
from latplan.modalities.simulate import SimulationJob, SimulationResult, simulate_job
from latplan.pipeline.types import PlanOptions
from latplan.pipeline.workers import init_worker

__all__ = ["CaseAssessment", "PreparedCase", "SimulationJob", "SimulationResult", "assess", "finish", "prepare",
           "run_simulation", "run_simulations", "simulation_jobs"]

#: a stage's progress: one message
Say = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


def assess(case: Case, measurements: CaseMeasurements, rules: RuleSet, options: PlanOptions = PlanOptions(),
           progress: Say | None = None) -> CaseAssessment:
    """Every modality of every lesion assessed by ``rules`` (board), before any simulation."""
    return assess_case(case, measurements.to_json(), rules=rules, preferences=options.preferences,
                       simulate=options.simulate, progress=progress)


def simulation_jobs(assessment: CaseAssessment) -> list[SimulationJob]:
    """One job per lesion × modality to simulate (planner exists, wanted, not contraindicated)."""
    return board_simulation_jobs(assessment)


def run_simulation(job: SimulationJob, case: Case, geometry: CaseGeometry) -> SimulationResult:
    """Simulate one lesion × modality on ``case`` with the case's ``geometry`` (computed once per case)."""
    return simulate_job(job, case, geometry)


def finish(assessment: CaseAssessment, results: Sequence[SimulationResult], case: Case | None = None,
           progress: Say | None = None) -> BoardProposal:
    """Re-assess with the simulated plans, build strategies, composite dose, rank (board) → the proposal."""
    return finish_case(assessment, results, case, progress)


@dataclass
class PreparedCase:
    """A case measured and assessed, with its geometry and the simulations still to run."""

    case: Case
    geometry: CaseGeometry
    assessment: CaseAssessment
    jobs: list[SimulationJob]


def prepare(case: Case, options: PlanOptions = PlanOptions(), progress: Say | None = None,
            on_measured: Say | None = None) -> PreparedCase:
    """Measure (typed measurements and the :class:`CaseGeometry`, once per case), load the rules,
    assess, and list the simulation jobs. ``on_measured(message)`` is told when assessment starts."""
    measurements = measure(case)
    geometry = case_geometry(case)
    _ = geometry.large_vessels  # computed once here; every planner of this case reads it
    if on_measured is not None:
        on_measured("assessing and simulating")
    rules = load_rule_set(list(options.rule_paths) or None)
    assessment = assess(case, measurements, rules, options, progress)
    return PreparedCase(case, geometry, assessment, simulation_jobs(assessment))


# --- the process pool -----------------------------------------------------------------------------
#: the geometry (with its case) of a simulation worker process, set once by its initializer
_WORKER_GEOMETRY: list[CaseGeometry] = []


def _init_simulation_worker(geometry: CaseGeometry) -> None:
    init_worker()
    # the geometry travels with its case and the maps the parent computed (CaseGeometry pickles them)
    _WORKER_GEOMETRY[:] = [geometry]


def _simulate_in_worker(job: SimulationJob) -> SimulationResult:
    geometry = _WORKER_GEOMETRY[0]
    return run_simulation(job, geometry.case, geometry)


def run_simulations(jobs: Sequence[SimulationJob], case: Case, geometry: CaseGeometry, workers: int = 1,
                    progress: Say | None = None) -> list[SimulationResult]:
    """Run ``jobs``: in this process, or in ``workers`` processes when > 1 (each job is independent)."""
    say = progress or _quiet
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            say(f"{job.lesion_id}: simulating {job.modality}")
            results.append(run_simulation(job, case, geometry))
        return results
    out: list[SimulationResult] = []
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_simulation_worker, initargs=(geometry,)) as pool:
        for n, result in enumerate(pool.map(_simulate_in_worker, jobs), 1):
            out.append(result)
            say(f"{result.lesion_id}: simulated {result.modality} ({n}/{len(jobs)})")
    return out
