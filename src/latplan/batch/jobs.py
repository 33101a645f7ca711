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
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numba
from pydantic import BaseModel, ConfigDict, ValidationError

from latplan._version import __version__
from latplan.errors import LatplanError
from latplan.knowledge.rules import default_rule_files
from latplan.pipeline import PlanOptions, plan_case_folder

__all__ = ["CaseJob", "CaseOutcome", "Manifest", "fingerprint", "read_manifest", "record_failure", "run_case_job"]

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


@dataclass(frozen=True)
class CaseJob:
    """Everything a worker needs to plan one case (picklable)."""

    name: str
    case_dir: Path
    out_dir: Path
    options: PlanOptions
    threads: int = 1

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


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(case_dir: Path, options: PlanOptions) -> str:
    """sha256 over the case folder's files, the rule files and the options that change a plan."""
    digest = hashlib.sha256()
    for path in sorted(p for p in case_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(f"case:{path.relative_to(case_dir).as_posix()}:{_sha256_file(path)}\n".encode())
    for path in [*default_rule_files(), *options.rule_paths]:
        digest.update(f"rules:{Path(path).name}:{_sha256_file(Path(path))}\n".encode())
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


def run_case_job(job: CaseJob) -> CaseOutcome:
    """Plan one case (see the module docstring); never raises for a case's own failure."""
    host, pid = socket.gethostname(), os.getpid()
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fp = fingerprint(job.case_dir, job.options)
    previous = read_manifest(job.result_dir)
    if previous is not None and previous.status == "ok" and previous.fingerprint == fp \
            and previous.latplan_version == __version__:
        return CaseOutcome(job.name, "skipped", time.perf_counter() - t0, host, pid)
    _set_threads(job.threads)
    staging = job.out_dir / PARTIAL_DIR / f"{job.name}-{uuid.uuid4().hex[:12]}"
    result = staging / "result"
    result.mkdir(parents=True)
    manifest = Manifest(case=job.name, case_dir=str(job.case_dir), status="ok", fingerprint=fp,
                        latplan_version=__version__, started_utc=started, seconds=0.0, host=host, pid=pid)
    try:
        planned = plan_case_folder(job.case_dir, result, job.options)
        manifest.input_sha256 = planned.input_sha256
        manifest.files = sorted(p.name for p in planned.files.values())
    except LatplanError as exc:
        manifest.status, manifest.error_type, manifest.error = "failed", type(exc).__name__, str(exc)
    except Exception as exc:  # an unexpected bug in one case must not stop the cohort; recorded with its trace
        manifest.status, manifest.error_type = "failed", type(exc).__name__
        manifest.error = f"{exc} (unexpected; please report) " + "".join(traceback.format_exception(exc)[-3:])
    if manifest.status == "failed":
        for child in result.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    manifest.seconds = round(time.perf_counter() - t0, 3)
    (result / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    try:
        _publish(result, job.result_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    status: Literal["planned", "failed"] = "planned" if manifest.status == "ok" else "failed"
    return CaseOutcome(job.name, status, manifest.seconds, host, pid, manifest.error_type, manifest.error)
