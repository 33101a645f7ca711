"""One cohort task: plan one case folder into its own result folder, atomically and idempotently.

A task runs on a Dask worker (or in-process). It

1. fingerprints its inputs: sha256 over every file of the case folder (relative path + content),
   the rule files and the planning options; the latplan version is compared separately;
2. returns ``skipped`` when ``OUT/cases/<name>/manifest.json`` records a successful plan with the
   same fingerprint and version (nothing is read or written beyond the hashing);
3. otherwise plans into a private staging folder ``OUT/.partial/<name>-<uuid>/`` and publishes it
   with ``os.replace`` as ``OUT/cases/<name>/`` (one rename on one file system). A killed worker
   leaves only its staging folder (removed at the end of the run); a task that Dask runs twice
   publishes twice the same complete folder — never a mixture, never two folders.

A case that fails with a :class:`~latplan.errors.LatplanError` (or any other exception) is
published as a folder holding only ``manifest.json`` with ``status: failed``, the error's class
name and message; the rest of the cohort goes on. Failed cases are retried on the next run.

A **large case** — one whose assessment gives at least ``CaseJob.split_min_jobs`` simulation jobs
(:data:`LARGE_CASE_JOBS` = 2 in a cohort run) — is split so that it does not hold one worker:
:func:`start_case_job` (fingerprint, load, measure, assess) returns a :class:`CasePrep` instead of
planning; then one :func:`simulate_case_job` per lesion × modality (each worker loads the case from
disk, once per worker: :func:`worker_case`), then one :func:`finish_case_job` (re-assess, strategies,
rank, write, publish — the same atomic publication). All three run the stages of
:mod:`latplan.pipeline.stages`, as the in-process pipeline does.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import socket
import time
import traceback
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numba
from pydantic import BaseModel, ConfigDict, ValidationError

from latplan._version import __version__
from latplan.anatomy.geometry import CaseGeometry, case_geometry
from latplan.case import Case
from latplan.errors import LatplanError
from latplan.imaging.case_folder import load_case_folder
from latplan.imaging.hashing import file_sha256
from latplan.knowledge.rules import default_rule_files
from latplan.pipeline import (
    CaseAssessment,
    PlanOptions,
    SimulationJob,
    SimulationResult,
    finish,
    input_sha256,
    prepare,
    run_simulation,
    run_simulations,
)
from latplan.pipeline.plan import write_outputs

__all__ = ["LARGE_CASE_JOBS", "CaseJob", "CaseOutcome", "CasePrep", "Manifest", "fingerprint", "finish_case_job",
           "read_manifest", "record_failure", "run_case_job", "simulate_case_job", "start_case_job", "worker_case"]

#: a case with at least this many simulation jobs (lesion × modality) is split into one task per job
LARGE_CASE_JOBS = 2

MANIFEST = "manifest.json"
CASES_DIR = "cases"
PARTIAL_DIR = ".partial"


class Manifest(BaseModel):
    """``OUT/cases/<name>/manifest.json``: what was planned from what, by which latplan, and how it ended."""

    model_config = ConfigDict(extra="forbid")

    case: str
    case_dir: str
    status: Literal["ok", "failed"]
    fingerprint: str
    input_sha256: str | None = None
    latplan_version: str
    started_utc: str
    seconds: float
    files: list[str] = []
    error_type: str | None = None
    error: str | None = None
    host: str
    pid: int
    #: Dask tasks that planned the case: 1 (whole case), or 1 + simulations + 1 (a split large case)
    tasks: int = 1


@dataclass(frozen=True)
class CaseJob:
    """Everything a worker needs to plan one case (picklable). ``split_min_jobs``: split the case into
    lesion × modality tasks when it has at least this many simulation jobs (0: never split)."""

    name: str
    case_dir: Path
    out_dir: Path
    options: PlanOptions
    threads: int = 1
    split_min_jobs: int = 0

    @property
    def result_dir(self) -> Path:
        return self.out_dir / CASES_DIR / self.name


@dataclass(frozen=True)
class CaseOutcome:
    """What one task did: ``planned``, ``skipped`` (unchanged) or ``failed`` (error class + message)."""

    name: str
    status: Literal["planned", "skipped", "failed"]
    seconds: float
    host: str
    pid: int
    error_type: str | None = None
    error: str | None = None
    tasks: int = 1


@dataclass
class CasePrep:
    """A large case after its first task: assessed, with the simulations to run as separate tasks.
    No images inside (each task loads the case from disk); ``fingerprint`` keys the worker cache."""

    name: str
    fingerprint: str
    input_sha256: str
    started_utc: str
    started_s: float
    assessment: CaseAssessment
    jobs: list[SimulationJob] = field(default_factory=list)


def fingerprint(case_dir: Path, options: PlanOptions) -> str:
    """sha256 over the case folder's files, the rule files and the options that change a plan."""
    digest = hashlib.sha256()
    for path in sorted(p for p in case_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(f"case:{path.relative_to(case_dir).as_posix()}:{file_sha256(path)}\n".encode())
    for path in [*default_rule_files(), *options.rule_paths]:
        digest.update(f"rules:{Path(path).name}:{file_sha256(Path(path))}\n".encode())
    simulate = options.simulate if isinstance(options.simulate, bool) else sorted(options.simulate)
    prefs = sorted((options.preferences or {}).items())
    digest.update(f"options:simulate={simulate};pdf={options.pdf};preferences={prefs}\n".encode())
    return digest.hexdigest()


def read_manifest(result_dir: Path) -> Manifest | None:
    """The manifest of a result folder, or None when there is none (or it is unreadable)."""
    path = result_dir / MANIFEST
    try:
        return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError):
        return None


def _publish(staging: Path, final: Path) -> None:
    """Move ``staging`` to ``final`` in one rename, replacing an older ``final`` if there is one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        old = staging.parent / f"{staging.name}.old"
        try:
            os.replace(final, old)
        except FileNotFoundError:
            pass
        try:
            os.replace(staging, final)
        except OSError:  # a duplicate run published in between: replace that one on the next loop
            continue
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return
    raise LatplanError(f"could not publish {final}: another process keeps replacing it.")


def _set_threads(threads: int) -> None:
    numba.set_num_threads(max(1, min(threads, int(numba.config.NUMBA_NUM_THREADS))))  # type: ignore[attr-defined]


def record_failure(job: CaseJob, error_type: str, error: str) -> CaseOutcome:
    """Publish a ``failed`` manifest for a case whose task never returned (e.g. its workers kept dying)."""
    host, pid = socket.gethostname(), os.getpid()
    staging = job.out_dir / PARTIAL_DIR / f"{job.name}-{uuid.uuid4().hex[:12]}"
    result = staging / "result"
    result.mkdir(parents=True)
    manifest = Manifest(case=job.name, case_dir=str(job.case_dir), status="failed",
                        fingerprint=fingerprint(job.case_dir, job.options), latplan_version=__version__,
                        started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), seconds=0.0,
                        error_type=error_type, error=error, host=host, pid=pid)
    (result / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    try:
        _publish(result, job.result_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return CaseOutcome(job.name, "failed", 0.0, host, pid, error_type, error)


@functools.lru_cache(maxsize=2)
def worker_case(case_dir: str, fingerprint: str) -> tuple[Case, CaseGeometry]:
    """The case (and its geometry) loaded from disk once per worker process; ``fingerprint`` (of its
    files) is part of the key, so a changed case folder is loaded again."""
    case = load_case_folder(Path(case_dir))
    return case, case_geometry(case)


def _unchanged(job: CaseJob, fp: str) -> bool:
    previous = read_manifest(job.result_dir)
    return previous is not None and previous.status == "ok" and previous.fingerprint == fp \
        and previous.latplan_version == __version__


def _staging(job: CaseJob) -> tuple[Path, Path]:
    staging = job.out_dir / PARTIAL_DIR / f"{job.name}-{uuid.uuid4().hex[:12]}"
    result = staging / "result"
    result.mkdir(parents=True)
    return staging, result


def _failed(manifest: Manifest, exc: Exception) -> None:
    manifest.status, manifest.error_type = "failed", type(exc).__name__
    if isinstance(exc, LatplanError):
        manifest.error = str(exc)
    else:  # an unexpected bug in one case must not stop the cohort; recorded with its trace
        manifest.error = f"{exc} (unexpected; please report) " + "".join(traceback.format_exception(exc)[-3:])


def _conclude(job: CaseJob, staging: Path, result: Path, manifest: Manifest, started_s: float) -> CaseOutcome:
    """Write the manifest and publish the result folder (only the manifest when the case failed)."""
    if manifest.status == "failed":
        for child in result.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    manifest.seconds = round(time.time() - started_s, 3)
    (result / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    try:
        _publish(result, job.result_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    status: Literal["planned", "failed"] = "planned" if manifest.status == "ok" else "failed"
    return CaseOutcome(job.name, status, manifest.seconds, manifest.host, manifest.pid, manifest.error_type,
                       manifest.error, manifest.tasks)


def start_case_job(job: CaseJob) -> CaseOutcome | CasePrep:
    """First task of a case: skip it when unchanged; else load, measure and assess it, and plan it
    whole in this task — or, for a large case (≥ ``job.split_min_jobs`` simulation jobs), return
    the :class:`CasePrep` for :func:`simulate_case_job` / :func:`finish_case_job`."""
    host, pid = socket.gethostname(), os.getpid()
    started_s = time.time()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fp = fingerprint(job.case_dir, job.options)
    if _unchanged(job, fp):
        return CaseOutcome(job.name, "skipped", time.time() - started_s, host, pid)
    _set_threads(job.threads)
    staging, result = _staging(job)
    manifest = Manifest(case=job.name, case_dir=str(job.case_dir), status="ok", fingerprint=fp,
                        latplan_version=__version__, started_utc=started, seconds=0.0, host=host, pid=pid)
    try:
        case = load_case_folder(job.case_dir)
        prepared = prepare(case, job.options)
        if job.split_min_jobs and len(prepared.jobs) >= job.split_min_jobs:
            shutil.rmtree(staging, ignore_errors=True)
            return CasePrep(job.name, fp, input_sha256(case, job.options.rule_paths), started, started_s,
                            prepared.assessment, prepared.jobs)
        results = run_simulations(prepared.jobs, case, prepared.geometry)
        files = write_outputs(finish(prepared.assessment, results, case), result, job.options)
        manifest.input_sha256 = input_sha256(case, job.options.rule_paths)
        manifest.files = sorted(p.name for p in files.values())
    except Exception as exc:
        _failed(manifest, exc)
    return _conclude(job, staging, result, manifest, started_s)


def simulate_case_job(job: CaseJob, prep_fingerprint: str, simulation: SimulationJob) -> SimulationResult:
    """One lesion × modality of a large case, on the case loaded from disk by this worker."""
    _set_threads(job.threads)
    case, geometry = worker_case(str(job.case_dir), prep_fingerprint)
    return run_simulation(simulation, case, geometry)


def finish_case_job(job: CaseJob, prep: CasePrep, *results: SimulationResult) -> CaseOutcome:
    """Last task of a large case: re-assess, strategies, rank (:func:`latplan.pipeline.finish`), write
    the outputs and publish them atomically, as :func:`start_case_job` does for a whole case."""
    host, pid = socket.gethostname(), os.getpid()
    staging, result = _staging(job)
    manifest = Manifest(case=job.name, case_dir=str(job.case_dir), status="ok", fingerprint=prep.fingerprint,
                        latplan_version=__version__, started_utc=prep.started_utc, seconds=0.0, host=host, pid=pid,
                        tasks=len(results) + 2)
    try:
        case, _geometry = worker_case(str(job.case_dir), prep.fingerprint)
        files = write_outputs(finish(prep.assessment, list(results), case), result, job.options)
        manifest.input_sha256 = prep.input_sha256
        manifest.files = sorted(p.name for p in files.values())
    except Exception as exc:
        _failed(manifest, exc)
    return _conclude(job, staging, result, manifest, prep.started_s)


def run_case_job(job: CaseJob) -> CaseOutcome:
    """Plan one case in one task (see the module docstring); never raises for a case's own failure."""
    outcome = start_case_job(replace(job, split_min_jobs=0))
    if not isinstance(outcome, CaseOutcome):  # split_min_jobs=0 never splits
        raise LatplanError(f"{job.name}: a whole-case task returned {type(outcome).__name__}.")
    return outcome
