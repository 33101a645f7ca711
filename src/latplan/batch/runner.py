"""Plan a folder of case folders on Dask distributed (issue [O] part 1).

``plan_cohort(cohort_dir, out_dir, options, cluster, progress)`` finds every case folder under
``cohort_dir`` (a folder holding ``case.yaml``: phantom cases, TotalSegmentator imports, any case
folder of docs/case-format.md), submits one task per case (:func:`latplan.batch.jobs.start_case_job`)
to a ``LocalCluster`` — one worker process per ``workers``, one Dask thread each, ``threads_per_worker``
numba threads per case — or to an external scheduler (``scheduler="tcp://host:8786"``), and
gathers the outcomes as they finish. A large case (≥ ``ClusterSettings.split_min_jobs`` simulation
jobs, default :data:`~latplan.batch.jobs.LARGE_CASE_JOBS` = 2) comes back from its first task
assessed but not simulated; it then gets one task per lesion × modality
(:func:`~latplan.batch.jobs.simulate_case_job`) and one finishing task
(:func:`~latplan.batch.jobs.finish_case_job`, which depends on them), so one big case does not hold a
worker. Within a task ``PlanOptions.workers`` stays 1.

Dask's own guarantees do the rest: a worker that dies has its tasks rescheduled on the others
(up to ``distributed.scheduler.allowed-failures`` times, then the case is recorded as failed
with ``KilledWorker``); the atomic publication of :mod:`latplan.batch.jobs` keeps a re-run task
from leaving a duplicate or a half-written folder.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from distributed import Client, LocalCluster, as_completed
from distributed.client import Future
from distributed.scheduler import KilledWorker

from latplan.batch.index import write_index
from latplan.batch.jobs import (
    CASES_DIR,
    LARGE_CASE_JOBS,
    PARTIAL_DIR,
    CaseJob,
    CaseOutcome,
    CasePrep,
    finish_case_job,
    record_failure,
    simulate_case_job,
    start_case_job,
)
from latplan.batch.table import cohort_frame, collect, write_cohort_table
from latplan.errors import CaseFolderError, InvalidInputError
from latplan.imaging.errors import NotLatplanOutputError
from latplan.pipeline import PlanOptions, Progress, silent

__all__ = ["ClusterSettings", "CohortResults", "CohortRun", "discover_cases", "plan_cohort", "write_cohort_results"]

#: environment of LocalCluster worker processes: one BLAS/OpenMP thread; numba set per task
#: marks a folder as a cohort output: a rerun may add to it; a foreign non-empty folder is refused
MARKER = ".latplan-cohort"
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class ClusterSettings:
    """Where the tasks run: an external scheduler address, or a LocalCluster of ``workers`` processes.
    ``split_min_jobs``: a case with at least this many simulation jobs is split into lesion × modality
    tasks (0: every case is one task)."""

    scheduler: str | None = None
    workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    split_min_jobs: int = LARGE_CASE_JOBS

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads_per_worker < 1:
            raise InvalidInputError(f"--workers and --threads-per-worker must be ≥ 1; got {self.workers}, "
                                    f"{self.threads_per_worker}.")


@dataclass(frozen=True)
class CohortResults:
    """The cohort-level files: the lesion table (parquet + csv) and the index page."""

    parquet: Path
    csv: Path
    index_html: Path
    lesions: int
    cases: int


@dataclass
class CohortRun:
    """What a cohort run did: one outcome per case folder found, and the dashboard it reported to."""

    out_dir: Path
    outcomes: list[CaseOutcome] = field(default_factory=list)
    dashboard: str | None = None
    seconds: float = 0.0
    results: CohortResults | None = None
    #: from the first submission to the last case's outcome (the cohort table and index excluded)
    planning_seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def _result_name(case_dir: Path, root: Path) -> str:
    rel = case_dir.relative_to(root).as_posix()
    return "__".join(rel.split("/")) if rel != "." else case_dir.name


def discover_cases(cohort_dir: Path) -> dict[str, Path]:
    """Result-folder name → case folder, for every folder under ``cohort_dir`` holding case.yaml or labels.yaml.

    A folder with labels.yaml but no case.yaml (e.g. a TotalSegmentator import without ``--clinical``)
    is included so that its run records the loader's error ("no case.yaml: write one") instead of
    silently leaving the patient out. Hidden folders and follow-up ``timepoints/`` are skipped.
    """
    root = Path(cohort_dir)
    if not root.is_dir():
        raise CaseFolderError(f"cohort folder {root} does not exist; give a folder of case folders.")
    found: dict[str, Path] = {}
    folders = {p.parent for name in ("case.yaml", "labels.yaml") for p in root.rglob(name)}
    for folder in sorted(folders):
        rel_parts = folder.relative_to(root).parts
        if any(part.startswith(".") for part in rel_parts) or "timepoints" in rel_parts:
            continue
        found[_result_name(folder, root)] = folder
    if not found:
        raise CaseFolderError(f"{root} holds no case folder (a folder with case.yaml or labels.yaml, docs/case-format.md); "
                              "build one with `latplan cohort synth` or `latplan phantom`.")
    return found


def _prepare_out(out: Path) -> None:
    earlier_run = (out / MARKER).is_file() or (out / CASES_DIR).is_dir()
    if out.is_dir() and any(out.iterdir()) and not earlier_run:
        raise NotLatplanOutputError(f"{out} is not empty and is not the output of `latplan cohort plan` (no {MARKER}); "
                                    "choose a new or empty --out folder, or the folder of an earlier cohort run.")
    (out / CASES_DIR).mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("latplan cohort output (docs/cohorts.md)\n", encoding="utf-8")


@contextmanager
def _client(settings: ClusterSettings) -> Iterator[Client]:
    if settings.scheduler is not None:
        with Client(settings.scheduler, timeout="20s") as client:
            yield client
        return
    with LocalCluster(n_workers=settings.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      scheduler_port=0, dashboard_address="127.0.0.1:0", memory_limit=settings.memory_limit,
                      env=WORKER_ENV) as cluster, Client(cluster) as client:
        yield client


def _dashboard(client: Client) -> str | None:
    services = client.scheduler_info().get("services", {})
    return client.dashboard_link if "dashboard" in services else None


def _killed(job: CaseJob, exc: BaseException) -> CaseOutcome:
    if not isinstance(exc, KilledWorker):  # e.g. a simulation task of a split case failed outside its planner
        return record_failure(job, type(exc).__name__, str(exc))
    return record_failure(job, type(exc).__name__,
                          f"{exc} (the worker planning this case died repeatedly: out of memory or a crash?)")


def _split(client: Client, job: CaseJob, prep_future: Future, prep: CasePrep, token: str) -> Future:
    """Submit a large case's lesion × modality tasks and its finishing task (which depends on them);
    the assessment stays on the cluster (passed as the first task's future)."""
    sims = [client.submit(simulate_case_job, job, prep.fingerprint, sim, pure=False,
                          key=f"latplan-sim-{job.name}-{sim.lesion_id}-{sim.modality}-{token}") for sim in prep.jobs]
    return client.submit(finish_case_job, job, prep_future, *sims, key=f"latplan-finish-{job.name}-{token}",
                         pure=False)


def plan_cohort(cohort_dir: Path, out_dir: Path, options: PlanOptions = PlanOptions(),
                cluster: ClusterSettings = ClusterSettings(), progress: Progress | None = None) -> CohortRun:
    """Plan every case folder under ``cohort_dir`` into ``out_dir/cases/<name>/`` on Dask."""
    say: Progress = progress or silent
    cases = discover_cases(Path(cohort_dir))
    out = Path(out_dir).resolve()
    _prepare_out(out)
    jobs = [CaseJob(name, case_dir.resolve(), out, options, cluster.threads_per_worker, cluster.split_min_jobs)
            for name, case_dir in cases.items()]
    run = CohortRun(out)
    t0 = time.perf_counter()
    with _client(cluster) as client:
        run.dashboard = _dashboard(client)
        say(f"Dask dashboard: {run.dashboard or 'none (the scheduler runs without one)'}; "
            f"scheduler {client.scheduler.address}", 0, len(jobs))
        token = os.urandom(4).hex()
        t_plan = time.perf_counter()
        futures: dict[Future, CaseJob] = {
            client.submit(start_case_job, job, key=f"latplan-case-{job.name}-{token}", pure=False): job for job in jobs}
        pending = as_completed(futures)
        # finishing task → first task of a split case: its assessment stays on the cluster until then
        held: dict[Future, Future] = {}
        for future in pending:
            job = futures.pop(future)
            held.pop(future, None)
            try:
                result: CaseOutcome | CasePrep = future.result()
            except Exception as exc:  # KilledWorker and the like: the case is recorded, the run goes on
                result = _killed(job, exc)
            if isinstance(result, CasePrep):
                finisher = _split(client, job, future, result, token)
                futures[finisher] = job
                held[finisher] = future
                pending.add(finisher)
                say(f"{job.name}: split into {len(result.jobs)} simulation tasks", len(run.outcomes), len(jobs))
                continue
            run.outcomes.append(result)
            say(f"{job.name}: {result.status}" + (f" ({result.error_type})" if result.error_type else ""),
                len(run.outcomes), len(jobs))
        run.planning_seconds = time.perf_counter() - t_plan
    shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)
    run.outcomes.sort(key=lambda o: o.name)
    run.results = write_cohort_results(Path(cohort_dir), out)
    run.seconds = time.perf_counter() - t0
    return run


def write_cohort_results(cohort_dir: Path, out_dir: Path) -> CohortResults:
    """Build OUT/cohort.parquet, OUT/cohort.csv and OUT/index.html from every published case of the cohort."""
    rows, manifests = collect(out_dir, discover_cases(cohort_dir))
    df = cohort_frame(rows)
    paths = write_cohort_table(df, out_dir)
    index = write_index(df, manifests, cohort_dir, out_dir)
    return CohortResults(paths["parquet"], paths["csv"], index, len(df), len(manifests))
