"""The stages of planning one case, as typed functions (the in-process path, the ``--workers``
process pool and the Dask cohort tasks all chain these same functions):

    prepare(case, options)                               -> PreparedCase       (measure, CaseGeometry, assess, jobs)
    assess(case, measurements, rules, options)          -> CaseAssessment     (rules; board)
    simulation_jobs(assessment)                          -> list[SimulationJob] (one per lesion × modality)
    run_simulation(job, case, geometry)                  -> SimulationResult   (planner → engines; anywhere)
    finish(assessment, results, case)                    -> BoardProposal      (re-assess, strategies,
                                                                                composite dose, rank; board)

:func:`run_simulations` runs a list of jobs in this process or in ``workers`` processes (one numba
thread each): the planners' shared per-lesion work first (``ModalitySpec.shared``, e.g. the
trajectory: once per lesion, not once per planner), then the jobs longest first. The clinical logic stays in :mod:`latplan.board` (rules, verdicts, ranking,
strategies); the planners in :mod:`latplan.planning` behind the :mod:`latplan.modalities` registry.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from latplan.anatomy.geometry import CaseGeometry, case_geometry
from latplan.anatomy.measurements import CaseMeasurements, measure
from latplan.board.proposal import BoardProposal, CaseAssessment, assess_case, finish_case
from latplan.board.proposal import simulation_jobs as board_simulation_jobs
from latplan.case import Case
from latplan.knowledge.rules import RuleSet, load_rule_set
from latplan.modalities.registry import MODALITIES
from latplan.modalities.simulate import SimulationJob, SimulationResult, simulate_job
from latplan.modalities.worker import (
    init_simulation_worker,
    shared_in_worker,
    shared_work,
    simulate_in_worker,
)
from latplan.pipeline.types import PlanOptions
from latplan.pipeline.workers import single_threaded_children

__all__ = ["CaseAssessment", "PreparedCase", "SimulationJob", "SimulationResult", "assess", "finish", "job_cost",
           "longest_first", "prepare", "run_simulation", "run_simulations", "shared_work", "simulation_jobs"]

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


def job_cost(job: SimulationJob) -> float:
    """Expected relative time of ``job`` (its modality's ``expected_cost``; a scheduling hint only)."""
    spec = MODALITIES.get(job.modality)
    return 1.0 if spec is None else float(spec.expected_cost)


def longest_first(jobs: Sequence[SimulationJob]) -> list[int]:
    """Job indices, the longest expected first (longest-processing-time rule: the workers finish
    together); ties keep job order."""
    return sorted(range(len(jobs)), key=lambda i: (-job_cost(jobs[i]), i))


def run_simulations(jobs: Sequence[SimulationJob], case: Case, geometry: CaseGeometry, workers: int = 1,
                    progress: Say | None = None) -> list[SimulationResult]:
    """Run ``jobs``: in this process, or in ``workers`` processes when > 1 (each job is independent).

    With workers, the planners' shared per-lesion work (e.g. the trajectory, ``ModalitySpec.shared``)
    runs first, once per lesion, in the workers; its results go to the parent's geometry and with
    every job of the lesion. Jobs then start longest first (:func:`longest_first`). The results come
    back in job order, the same as in this process (a cache never changes a plan)."""
    say = progress or _quiet
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            say(f"{job.lesion_id}: simulating {job.modality}")
            results.append(run_simulation(job, case, geometry))
        return results
    # the maps every worker needs, computed here once (they travel with the pickled geometry)
    _ = geometry.large_vessels, geometry.body, geometry.structure_names
    wanted = {(job.lesion_id, spec.shared): job.modality for job in jobs
              if (spec := MODALITIES.get(job.modality)) is not None and spec.shared is not None}
    out: list[SimulationResult | None] = [None] * len(jobs)
    with single_threaded_children(), \
            ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                                initializer=init_simulation_worker, initargs=(geometry,)) as pool:
        shared_futures: dict[str, list[Future[dict[Hashable, Any]]]] = {lesion_id: [] for lesion_id, _fn in wanted}
        for (lesion_id, _fn), modality in wanted.items():
            shared_futures[lesion_id].append(pool.submit(shared_in_worker, modality, lesion_id))
        shared: dict[str, dict[Hashable, Any]] = {}
        for lesion_id, futs in shared_futures.items():
            shared[lesion_id] = {k: v for f in futs for k, v in f.result().items()}
            geometry.remember(shared[lesion_id])
        futures = {pool.submit(simulate_in_worker, jobs[i], shared.get(jobs[i].lesion_id, {})): i
                   for i in longest_first(jobs)}
        for n, fut in enumerate(as_completed(futures), 1):
            result = fut.result()
            out[futures[fut]] = result
            say(f"{result.lesion_id}: simulated {result.modality} ({n}/{len(jobs)})")
    return [r for r in out if r is not None]
