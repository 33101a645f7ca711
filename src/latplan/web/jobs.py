"""Planning jobs: keys, queueing, and the worker loop that runs them outside any request.

Why this shape:
- **Job key** = SHA-256 of (case content hash, parameters, engine and rule versions). The
  same inputs planned again map to the same ``jobs`` row (unique key), so a re-run is
  idempotent and a cached result is reused; a new rule set or engine version is a new key.
- **No partial record**: the planner writes into a fresh folder under ``<data>/tmp``; when it
  has finished, ONE transaction marks the job done, renames the folder to
  ``<data>/results/<job key>``, inserts its ``plan_options`` rows and updates the cases. A crash
  before the commit leaves the job ``running``.
- **Leases**: a worker claims a job with a random lease token and renews the lease by heartbeat
  (every third of ``job_lease_s``). Every write of a run (progress, result, failure, audit row)
  is conditional on the token, so a worker whose lease lapsed and was taken over cannot write
  anything. A running job is re-queued only when its lease has expired, or at once when its
  holder ran on this host and its process is gone (killed). A worker started by the server
  watches its parent and exits within a second of the server's death (:func:`watch_parent`).
- **Injectable planner**: a callable ``planner(case_dir, out_dir, progress, parameters)`` that
  writes ``plan.json`` (and optionally ``report/`` and ``viewer/``) into ``out_dir``, chosen by
  name from the static table :data:`PLANNERS`. The default calls
  ``latplan.pipeline.plan_case_folder`` (load → plan → reports) and the viewer files; tests use
  the stand-in ``latplan.web.fake_planner``.
- **On a Dask cluster** (``LATPLAN_DASK_SCHEDULER``, issue [O] part 4): :func:`worker_planner` wraps
  the chosen planner in :class:`DaskPlanner`, which runs it on a Dask worker through
  :func:`latplan.batch.remote.run_on_dask`. Only the planner moves: this process still claims the
  job, holds and renews its lease, turns the relayed progress into (lease-checked) row updates and
  publishes the result after a normal return. When the lease is lost, the next progress update
  raises :class:`LeaseLostError`, the remote task is cancelled and nothing is written. The data
  folder must be on a file system the Dask workers share, at the same path.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Update, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from latplan._version import __version__
from latplan.batch.remote import run_on_dask
from latplan.errors import InvalidInputError, LatplanError
from latplan.pipeline import PlanOptions, plan_case_folder
from latplan.store import audit
from latplan.store.blobs import BlobStore, restrict_modes
from latplan.store.config import StoreSettings
from latplan.store.db import make_engine, migrate, session_factory, transaction
from latplan.store.models import CaseRecord, Job, PlanOption, utcnow
from latplan.web.fake_planner import failing_planner, fake_planner
from latplan.web.progress import Planner, ProgressFn, StageProgress
from latplan.web.viewer import write_viewer_files

log = logging.getLogger(__name__)

__all__ = ["PLANNERS", "DaskPlanner", "Planner", "ProgressFn", "default_planner", "enqueue", "job_key", "run_one",
           "run_worker", "worker_planner"]


def load_planner(spec: str) -> Planner:
    """The planner named ``module:function`` in :data:`PLANNERS`."""
    try:
        return PLANNERS[spec]
    except KeyError:
        raise InvalidInputError(
            f"planner {spec!r} is unknown; set LATPLAN_PLANNER to one of {', '.join(sorted(PLANNERS))}."
        ) from None


@dataclass(frozen=True)
class DaskPlanner:
    """``planner`` run on a worker of the Dask cluster at ``scheduler`` (blocks until it has finished).

    The lease stays with the caller (:func:`run_one`): ``progress`` is called here, in order, with
    every update the remote planner sends; when it raises (the lease was lost), the remote task is
    cancelled and the exception propagates, so :func:`run_one` drops the run and writes nothing.
    ``planner`` must be a module-level function (it is pickled by reference).
    """

    scheduler: str
    planner: Planner

    def __call__(self, case_dir: Path, out_dir: Path, progress: ProgressFn,
                 parameters: Mapping[str, Any] | None = None) -> None:
        remote = functools.partial(self.planner, parameters=dict(parameters or {}))
        run_on_dask(self.scheduler, remote, case_dir, out_dir, progress)


def worker_planner(settings: StoreSettings, planner: Planner | None = None) -> Planner:
    """The planner the worker runs: ``planner`` or the one named in ``settings.planner``, on the Dask
    cluster at ``settings.dask_scheduler`` when that is set."""
    chosen = planner or load_planner(settings.planner)
    if settings.dask_scheduler:
        return DaskPlanner(settings.dask_scheduler, chosen)
    return chosen


def engine_versions(planner_spec: str) -> dict[str, str]:
    """Versions that change a plan: latplan, the planner used and a hash of the rule files."""
    h = hashlib.sha256()
    root = resources.files("latplan.knowledge")
    for entry in sorted(Path(str(root)).rglob("*")):
        if entry.is_file() and entry.suffix in (".yaml", ".yml", ".json"):
            h.update(entry.name.encode() + entry.read_bytes())
    return {"latplan": __version__, "planner": planner_spec, "rules_sha256": h.hexdigest()}


def job_key(content_sha256: str, parameters: dict[str, Any], versions: dict[str, str]) -> str:
    payload = json.dumps({"inputs": content_sha256, "parameters": parameters, "versions": versions},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


class JobQuotaError(LatplanError):
    """Too many planning jobs waiting or running for this user or this case (HTTP 429)."""


ACTIVE = ("queued", "running")


def enqueue(session: Session, case: CaseRecord, parameters: dict[str, Any], planner_spec: str,
            user_id: int | None = None, max_active_per_user: int = 3) -> Job:
    """Queue planning for ``case`` (or reuse the job with the same key); sets the case's job key.

    Quotas: a case has at most one job waiting or running (planning it again with other
    parameters waits until that one has finished), and a user at most ``max_active_per_user``.
    The same inputs and parameters again are the same job and never count twice.
    """
    key = job_key(case.content_sha256, parameters, engine_versions(planner_spec))
    job = session.scalar(select(Job).where(Job.job_key == key))
    if job is None or job.status == "failed":
        current = session.scalar(select(Job).where(Job.job_key == case.job_key)) if case.job_key else None
        if current is not None and current.job_key != key and current.status in ACTIVE:
            raise JobQuotaError("this case is being planned already; wait until that job has finished "
                                "before planning it with other settings.")
        if user_id is not None:
            mine = session.scalar(select(func.count()).select_from(Job).where(
                Job.requested_by == user_id, Job.status.in_(ACTIVE))) or 0
            if mine >= max_active_per_user:
                raise JobQuotaError(f"you have {mine} planning jobs waiting or running (the limit is "
                                    f"{max_active_per_user}); wait until one has finished.")
    if job is None:
        job = Job(job_key=key, content_sha256=case.content_sha256, parameters=parameters, status="queued",
                  progress=0.0, attempts=0, message="waiting for the planning worker", requested_by=user_id)
        session.add(job)
        session.flush()
    elif job.status == "failed":
        job.status, job.progress, job.message, job.requested_by = "queued", 0.0, "re-queued after a failure", user_id
    case.job_key = key
    case.status = {"done": "planned", "failed": "planning"}.get(job.status, "planning")
    if job.status == "done":
        case.last_done_job_key = key
    return job


def enqueue_once(factory: sessionmaker[Session], case_id: int, parameters: dict[str, Any], planner_spec: str,
                 user_id: int, max_active_per_user: int,
                 on_commit: Callable[[Session, Job], None] | None = None, retries: int = 20) -> Job:
    """:func:`enqueue` in a transaction of its own; concurrent identical requests give one job.

    Two requests that both find no job race to insert the same unique key: the loser's
    transaction fails with an IntegrityError and is retried, and then finds the winner's job.
    """
    last: Exception | None = None
    for attempt in range(retries):
        try:
            with factory() as s, s.begin():
                case = s.get(CaseRecord, case_id)
                if case is None:
                    raise InvalidInputError(f"case {case_id} does not exist.")
                job = enqueue(s, case, parameters, planner_spec, user_id, max_active_per_user)
                if on_commit is not None:
                    on_commit(s, job)
                s.flush()
                s.expunge(job)
            return job
        except (IntegrityError, OperationalError) as exc:
            last = exc
            time.sleep(0.01 * (attempt + 1))
    raise InvalidInputError(f"the planning job could not be queued ({type(last).__name__}); try again.")


# ---------------------------------------------------------------------------------- leases
class LeaseLostError(LatplanError):
    """This worker's lease on its job lapsed and the job was taken over: it must not write anything."""


@dataclass(frozen=True)
class Lease:
    """A running job as its worker holds it: only the holder of ``token`` may update the row."""

    job_id: int
    key: str
    token: str
    content_sha256: str
    parameters: dict[str, Any]


def _dml(s: Session, statement: Update) -> CursorResult[Any]:
    """Execute an UPDATE and return its result (with ``rowcount``)."""
    return cast(CursorResult[Any], s.execute(statement))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reclaim(factory: sessionmaker[Session], store: BlobStore) -> int:
    """Re-queue running jobs whose lease lapsed, or whose worker on this host is gone; returns how many.

    A job is re-run only after its lease has expired — except when the lease holder ran on this
    host and its process no longer exists (killed): then nobody can renew it and it is void now.
    The temporary folder of each reclaimed run is removed.
    """
    now = utcnow()
    host = socket.gethostname()
    n = 0
    with transaction(factory) as s:
        for job in s.scalars(select(Job).where(Job.status == "running")):
            lapsed = job.lease_expires_at is None or job.lease_expires_at < now
            dead = job.worker_host == host and job.worker_pid is not None and not _pid_alive(job.worker_pid)
            if not (lapsed or dead):
                continue
            res = _dml(s, update(Job).where(Job.id == job.id, Job.lease_token == job.lease_token,
                                              Job.status == "running").values(
                status="queued", progress=0.0, worker_pid=None, lease_token=None, lease_expires_at=None,
                message="re-queued after an interrupted run"))
            if res.rowcount:
                n += 1
                if job.lease_token:
                    shutil.rmtree(store.tmp / f"job-{job.lease_token}", ignore_errors=True)
    return n


def recover(factory: sessionmaker[Session], store: BlobStore) -> int:
    """At worker start: :func:`reclaim`, and remove temporary job folders no running job owns."""
    n = reclaim(factory, store)
    with factory() as s:
        owned = {f"job-{t}" for t in s.scalars(select(Job.lease_token).where(Job.status == "running"))}
    for entry in store.tmp.glob("job-*"):
        if entry.name not in owned:
            shutil.rmtree(entry, ignore_errors=True)
    return n


def _claim(factory: sessionmaker[Session], lease_s: float) -> Lease | None:
    token = uuid.uuid4().hex
    for _ in range(5):
        with transaction(factory) as s:
            q = select(Job).where(Job.status == "queued").order_by(Job.id).limit(1)
            if s.get_bind().dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            job = s.scalar(q)
            if job is None:
                return None
            now = utcnow()
            res = _dml(s, update(Job).where(Job.id == job.id, Job.status == "queued").values(
                status="running", attempts=Job.attempts + 1, started_at=now, worker_pid=os.getpid(),
                worker_host=socket.gethostname()[:255], lease_token=token,
                lease_expires_at=now + dt.timedelta(seconds=lease_s), progress=0.0, message="started"))
            if res.rowcount:  # another worker may have claimed it between our read and this update
                return Lease(job.id, job.job_key, token, job.content_sha256, dict(job.parameters or {}))
    return None


class Heartbeat:
    """Renews a lease every ``lease_s / 3`` seconds in a thread; notices when it was taken."""

    def __init__(self, factory: sessionmaker[Session], lease: Lease, lease_s: float) -> None:
        self.factory, self.lease, self.lease_s = factory, lease, lease_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latplan-lease-heartbeat", daemon=True)

    def renew(self) -> bool:
        with transaction(self.factory) as s:
            res = _dml(s, update(Job).where(Job.id == self.lease.job_id, Job.lease_token == self.lease.token,
                                              Job.status == "running").values(
                lease_expires_at=utcnow() + dt.timedelta(seconds=self.lease_s)))
            return bool(res.rowcount)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3.0):
            try:
                if not self.renew():
                    self.lost.set()
                    return
            except Exception as exc:  # a database hiccup: try again at the next beat
                log.warning("lease heartbeat failed: %s", exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _options_from_plan(plan: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for lesion in plan.get("lesions") or []:
        for opt in lesion.get("options") or []:
            rows.append({"lesion_id": str(lesion.get("id")), "modality": str(opt.get("modality")),
                         "eligibility": opt.get("eligibility"), "rank": opt.get("rank")})
    return rows


def _held(s: Session, lease: Lease, **values: Any) -> bool:
    """Update the job row only while ``lease`` holds it (the row is then locked until commit)."""
    res = _dml(s, update(Job).where(Job.id == lease.job_id, Job.lease_token == lease.token,
                                      Job.status == "running").values(**values))
    return bool(res.rowcount)


def _record_failure(factory: sessionmaker[Session], lease: Lease, msg: str) -> None:
    with transaction(factory) as s:
        if not _held(s, lease, status="failed", message=msg[:2000], finished_at=utcnow(), lease_token=None,
                     lease_expires_at=None):
            log.warning("job %s: lease lost, its failure is not recorded", lease.key[:12])
            return
        s.execute(update(CaseRecord).where(CaseRecord.job_key == lease.key).values(status="failed"))
        audit.record(s, "plan_failed", object_type="job", object_id=lease.key, detail={"error": msg[:500]},
                     username="worker")


def _record_success(factory: sessionmaker[Session], store: BlobStore, lease: Lease, tmp: Path,
                    options: list[dict[str, Any]], runtime_s: float) -> bool:
    final = store.results / lease.key
    with transaction(factory) as s:
        if not _held(s, lease, status="done", progress=1.0, finished_at=utcnow(), lease_token=None,
                     lease_expires_at=None, message=f"done in {runtime_s:.1f} s",
                     result_dir=str(final.relative_to(store.data_dir))):
            return False
        if final.exists():  # left by a crash between the rename and the commit: same inputs, same key
            shutil.rmtree(final)
        os.replace(tmp, final)
        restrict_modes(final)
        for row in options:
            s.add(PlanOption(job_key=lease.key, **row))
        s.execute(update(CaseRecord).where(CaseRecord.job_key == lease.key).values(
            status="planned", last_done_job_key=lease.key))
        audit.record(s, "planned", object_type="job", object_id=lease.key, username="worker",
                     detail={"options": len(options), "runtime_s": round(runtime_s, 2)})
    return True


def run_one(settings: StoreSettings, factory: sessionmaker[Session], store: BlobStore, planner: Planner) -> bool:
    """Run the oldest queued job under a lease; returns False when the queue is empty."""
    lease = _claim(factory, settings.job_lease_s)
    if lease is None:
        return False
    case_dir = store.folder_path(lease.content_sha256)
    tmp = store.tmp / f"job-{lease.token}"
    tmp.mkdir(mode=0o700)
    last = [0.0]
    t0 = time.monotonic()
    with Heartbeat(factory, lease, settings.job_lease_s) as beat:

        def progress(fraction: float, message: str = "") -> None:
            if beat.lost.is_set():
                raise LeaseLostError("the lease on this job was taken over by another worker.")
            now = time.monotonic()
            if now - last[0] < 0.3 and fraction < 1.0:
                return
            last[0] = now
            with transaction(factory) as s:
                _held(s, lease, progress=max(0.0, min(1.0, float(fraction))), message=str(message)[:500])

        try:
            planner(case_dir, tmp, progress, parameters=lease.parameters)
            if beat.lost.is_set():
                raise LeaseLostError("the lease on this job was taken over by another worker.")
            plan_path = tmp / "plan.json"
            if not plan_path.is_file():
                raise LatplanError("the planner finished without writing plan.json.")
            options = _options_from_plan(json.loads(plan_path.read_text()))
        except LeaseLostError:
            shutil.rmtree(tmp, ignore_errors=True)
            log.warning("job %s: lease lost; this worker's run is dropped", lease.key[:12])
            return True
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            msg = str(exc) if isinstance(exc, LatplanError) else f"{type(exc).__name__}: {exc}"
            log.warning("planning job %s failed: %s", lease.key[:12], msg)
            _record_failure(factory, lease, msg)
            return True
    if not _record_success(factory, store, lease, tmp, options, time.monotonic() - t0):
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning("job %s: lease lost before the commit; the result of this run is dropped", lease.key[:12])
    return True


def run_worker(settings: StoreSettings, planner: Planner | None = None, once: bool = False,
               should_stop: Callable[[], bool] | None = None) -> int:
    """The worker loop: migrate, recover, then run queued jobs (``once``: until the queue is empty).

    Every poll also re-queues jobs whose lease lapsed (their worker died elsewhere).
    """
    engine = make_engine(settings.database_url)
    migrate(engine)
    factory = session_factory(engine)
    store = BlobStore(settings.data_dir)
    planner = worker_planner(settings, planner)
    requeued = recover(factory, store)
    if requeued:
        log.warning("re-queued %d planning job(s) interrupted by a crash", requeued)
    done = 0
    while not (should_stop and should_stop()):
        if run_one(settings, factory, store, planner):
            done += 1
            continue
        if once:
            break
        time.sleep(settings.worker_poll_s)
        reclaim(factory, store)
    engine.dispose()
    return done


def watch_parent(parent_pid: int, interval_s: float = 0.5) -> threading.Thread:
    """Exit this process as soon as ``parent_pid`` (the server that started it) is gone.

    A worker whose server was killed (``kill -9``) would otherwise keep running unsupervised next
    to the worker of the restarted server. The check is the parent pid changing (the orphan is
    re-parented); it runs in a thread, so it also fires while a job is being planned. The job
    then stays ``running`` until its lease lapses or the next worker sees this pid is gone.
    """

    def _watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                log.warning("the server (pid %d) is gone; the planning worker exits", parent_pid)
                os._exit(3)
            time.sleep(interval_s)

    thread = threading.Thread(target=_watch, name="latplan-parent-watch", daemon=True)
    thread.start()
    return thread


def main() -> None:  # pragma: no cover - exercised via subprocess in tests
    """``python -m latplan.web.worker``: the planning worker with settings from the environment."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.umask(0o077)
    parent = os.environ.get("LATPLAN_WORKER_PARENT_PID", "")
    if parent.isdigit():
        watch_parent(int(parent))
    stop = [False]

    def _term(*_: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, _term)
    run_worker(StoreSettings.from_env(), should_stop=lambda: stop[0])


# --------------------------------------------------------------------------------------------
# the real planner (latplan.pipeline.plan_case_folder → viewer files)
# --------------------------------------------------------------------------------------------
def default_planner(case_dir: Path, out_dir: Path, progress: ProgressFn,
                    parameters: Mapping[str, Any] | None = None) -> None:
    """Plan a stored case folder through :func:`latplan.pipeline.plan_case_folder`; write plan.json,
    ``report/`` and the viewer files.

    ``parameters["preferences"]``: the patient's weights (0–5 per criterion) entered on the case
    page; they override ``case.yaml``'s preferences for this job (and are part of its key).
    ``parameters["simulate"] = False``: rules-only preview (no physics simulations).
    The PDF (WeasyPrint) is most of the report time; ``LATPLAN_REPORT_PDF=0`` skips it.
    """
    params = dict(parameters or {})
    options = PlanOptions(simulate=bool(params.get("simulate", True)), preferences=params.get("preferences") or None,
                          pdf=os.environ.get("LATPLAN_REPORT_PDF", "1") != "0")
    progress(0.02, "loading the case")
    result = plan_case_folder(case_dir, out_dir / "report", options, StageProgress(progress, 0.02, 0.9))
    shutil.copy(out_dir / "report" / "plan.json", out_dir / "plan.json")
    progress(0.92, "writing the viewer volumes")
    write_viewer_files(result.proposal.case, list(result.proposal.plans.values()), out_dir / "viewer",
                       result.proposal.measurements)
    progress(1.0, "done")


#: the planners a deployment can name in ``LATPLAN_PLANNER`` (a static table: no dynamic import)
PLANNERS: dict[str, Planner] = {
    "latplan.web.jobs:default_planner": default_planner,
    "latplan.web.fake_planner:fake_planner": fake_planner,
    "latplan.web.fake_planner:failing_planner": failing_planner,
}


def utc_age_s(when: dt.datetime | None) -> float | None:
    return None if when is None else (utcnow() - when).total_seconds()
