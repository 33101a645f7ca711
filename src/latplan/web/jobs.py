"""Planning jobs: keys, queueing, and the worker loop that runs them outside any request.

Why this shape:
- **Job key** = SHA-256 of (case content hash, parameters, engine and rule versions). The
  same inputs planned again map to the same ``jobs`` row (unique key), so a re-run is
  idempotent and a cached result is reused; a new rule set or engine version is a new key.
- **No partial record**: the planner writes into a fresh folder under ``<data>/tmp``; when it
  has finished, the folder is renamed to ``<data>/results/<job key>`` and then ONE transaction
  marks the job done, inserts its ``plan_options`` rows and updates the cases. A crash before
  the commit leaves the job ``running``; the worker re-queues such jobs when it starts and
  removes stale temporary folders, so the job completes once on restart.
- **Injectable planner**: a callable ``planner(case_dir, out_dir, progress, parameters)`` that
  writes ``plan.json`` (and optionally ``report/`` and ``viewer/``) into ``out_dir``, chosen by
  name from the static table :data:`PLANNERS`. The default calls ``load_case_folder``,
  ``latplan.board.proposal.plan_case`` and ``latplan.report.writer.write_reports``; tests use
  the stand-in ``latplan.web.fake_planner``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

import latplan
from latplan.board.proposal import plan_case
from latplan.errors import InvalidInputError, LatplanError
from latplan.imaging.case_folder import load_case_folder
from latplan.report.writer import write_reports
from latplan.store import audit
from latplan.store.blobs import BlobStore
from latplan.store.config import StoreSettings
from latplan.store.db import make_engine, migrate, session_factory, transaction
from latplan.store.models import CaseRecord, Job, PlanOption, utcnow
from latplan.web.fake_planner import failing_planner, fake_planner
from latplan.web.progress import Planner, ProgressFn, StageProgress
from latplan.web.viewer import write_viewer_files

log = logging.getLogger(__name__)

__all__ = ["PLANNERS", "Planner", "ProgressFn", "default_planner", "enqueue", "job_key", "run_one", "run_worker"]


def load_planner(spec: str) -> Planner:
    """The planner named ``module:function`` in :data:`PLANNERS`."""
    try:
        return PLANNERS[spec]
    except KeyError:
        raise InvalidInputError(
            f"planner {spec!r} is unknown; set LATPLAN_PLANNER to one of {', '.join(sorted(PLANNERS))}."
        ) from None


def engine_versions(planner_spec: str) -> dict[str, str]:
    """Versions that change a plan: latplan, the planner used and a hash of the rule files."""
    h = hashlib.sha256()
    root = resources.files("latplan.knowledge")
    for entry in sorted(Path(str(root)).rglob("*")):
        if entry.is_file() and entry.suffix in (".yaml", ".yml", ".json"):
            h.update(entry.name.encode() + entry.read_bytes())
    return {"latplan": latplan.__version__, "planner": planner_spec, "rules_sha256": h.hexdigest()}


def job_key(content_sha256: str, parameters: dict[str, Any], versions: dict[str, str]) -> str:
    payload = json.dumps({"inputs": content_sha256, "parameters": parameters, "versions": versions},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def enqueue(session: Session, case: CaseRecord, parameters: dict[str, Any], planner_spec: str) -> Job:
    """Queue planning for ``case`` (or reuse the job with the same key); sets the case's job key."""
    key = job_key(case.content_sha256, parameters, engine_versions(planner_spec))
    job = session.scalar(select(Job).where(Job.job_key == key))
    if job is None:
        job = Job(job_key=key, content_sha256=case.content_sha256, parameters=parameters, status="queued",
                  progress=0.0, attempts=0, message="waiting for the planning worker")
        session.add(job)
        session.flush()
    elif job.status == "failed":
        job.status, job.progress, job.message = "queued", 0.0, "re-queued after a failure"
    case.job_key = key
    case.status = {"done": "planned", "failed": "planning"}.get(job.status, "planning")
    return job


def recover(factory: sessionmaker[Session], store: BlobStore) -> int:
    """Re-queue jobs left ``running`` by a crash and remove their temporary folders."""
    for entry in store.tmp.glob("job-*"):
        shutil.rmtree(entry, ignore_errors=True)
    with transaction(factory) as s:
        res = s.execute(
            update(Job).where(Job.status == "running").values(
                status="queued", progress=0.0, worker_pid=None, message="re-queued after an interrupted run"
            )
        )
        return int(res.rowcount or 0)


def _claim(factory: sessionmaker[Session]) -> tuple[int, str, str, dict[str, Any]] | None:
    with transaction(factory) as s:
        q = select(Job).where(Job.status == "queued").order_by(Job.id).limit(1)
        if s.get_bind().dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        job = s.scalar(q)
        if job is None:
            return None
        job.status, job.attempts, job.started_at = "running", job.attempts + 1, utcnow()
        job.worker_pid, job.progress, job.message = os.getpid(), 0.0, "started"
        return job.id, job.job_key, job.content_sha256, dict(job.parameters or {})


def _options_from_plan(plan: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for lesion in plan.get("lesions") or []:
        for opt in lesion.get("options") or []:
            rows.append({"lesion_id": str(lesion.get("id")), "modality": str(opt.get("modality")),
                         "eligibility": opt.get("eligibility"), "rank": opt.get("rank")})
    return rows


def run_one(settings: StoreSettings, factory: sessionmaker[Session], store: BlobStore, planner: Planner) -> bool:
    """Run the oldest queued job; returns False when the queue is empty."""
    claimed = _claim(factory)
    if claimed is None:
        return False
    job_id, key, content, parameters = claimed
    case_dir = store.folder_path(content)
    tmp = store.new_tmp_dir("job")
    last = [0.0]

    def progress(fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if now - last[0] < 0.3 and fraction < 1.0:
            return
        last[0] = now
        with transaction(factory) as s:
            s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(
                progress=max(0.0, min(1.0, float(fraction))), message=str(message)[:500]))

    t0 = time.monotonic()
    try:
        planner(case_dir, tmp, progress, parameters=parameters)
        plan_path = tmp / "plan.json"
        if not plan_path.is_file():
            raise LatplanError("the planner finished without writing plan.json.")
        plan = json.loads(plan_path.read_text())
        options = _options_from_plan(plan)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        msg = str(exc) if isinstance(exc, LatplanError) else f"{type(exc).__name__}: {exc}"
        log.warning("planning job %s failed: %s", key[:12], msg)
        with transaction(factory) as s:
            s.execute(update(Job).where(Job.id == job_id).values(status="failed", message=msg[:2000],
                                                                  finished_at=utcnow()))
            s.execute(update(CaseRecord).where(CaseRecord.job_key == key).values(status="failed"))
            audit.record(s, "plan_failed", object_type="job", object_id=key, detail={"error": msg[:500]},
                         username="worker")
        return True
    final = store.results / key
    if final.exists():  # left by a crash between the rename and the commit: same inputs, same key
        shutil.rmtree(final)
    os.replace(tmp, final)
    with transaction(factory) as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.status, job.progress, job.finished_at = "done", 1.0, utcnow()
        job.message, job.result_dir = f"done in {time.monotonic() - t0:.1f} s", str(final.relative_to(store.data_dir))
        for row in options:
            s.add(PlanOption(job_key=key, **row))
        s.execute(update(CaseRecord).where(CaseRecord.job_key == key).values(status="planned"))
        audit.record(s, "planned", object_type="job", object_id=key, username="worker",
                     detail={"options": len(options), "runtime_s": round(time.monotonic() - t0, 2)})
    return True


def run_worker(settings: StoreSettings, planner: Planner | None = None, once: bool = False,
               should_stop: Callable[[], bool] | None = None) -> int:
    """The worker loop: migrate, recover, then run queued jobs (``once``: until the queue is empty)."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    factory = session_factory(engine)
    store = BlobStore(settings.data_dir)
    planner = planner or load_planner(settings.planner)
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
    engine.dispose()
    return done


def main() -> None:  # pragma: no cover - exercised via subprocess in tests
    """``python -m latplan.web.worker``: the planning worker with settings from the environment."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    stop = [False]

    def _term(*_: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, _term)
    run_worker(StoreSettings.from_env(), should_stop=lambda: stop[0])


# --------------------------------------------------------------------------------------------
# the real planner (load_case_folder → board plan_case → write_reports → viewer files)
# --------------------------------------------------------------------------------------------
def default_planner(case_dir: Path, out_dir: Path, progress: ProgressFn,
                    parameters: Mapping[str, Any] | None = None) -> None:
    """Plan a stored case folder with the real engines and write plan.json, the report and viewer files.

    ``parameters["preferences"]``: the patient's weights (0–5 per criterion) entered on the case
    page; they override ``case.yaml``'s preferences for this job (and are part of its key).
    ``parameters["simulate"] = False``: rules-only preview (no physics simulations).
    """
    params = dict(parameters or {})
    progress(0.02, "loading the case")
    case = load_case_folder(case_dir)
    progress(0.05, "planning")
    prefs = params.get("preferences") or None
    simulate = bool(params.get("simulate", True))
    stage = StageProgress(progress, 0.05, 0.8)
    proposal = plan_case(case, progress=lambda message: stage(message), preferences=prefs, simulate=simulate)
    (out_dir / "plan.json").write_text(json.dumps(proposal.to_plan_json(), indent=1, default=str))
    progress(0.82, "writing the report")
    report_dir = out_dir / "report"
    report_dir.mkdir()
    # the PDF (WeasyPrint) is most of the report time; LATPLAN_REPORT_PDF=0 skips it (tests, quick boards)
    write_reports(proposal, report_dir, pdf=os.environ.get("LATPLAN_REPORT_PDF", "1") != "0")
    progress(0.92, "writing the viewer volumes")
    write_viewer_files(case, list(proposal.plans.values()), out_dir / "viewer")
    progress(1.0, "done")


#: the planners a deployment can name in ``LATPLAN_PLANNER`` (a static table: no dynamic import)
PLANNERS: dict[str, Planner] = {
    "latplan.web.jobs:default_planner": default_planner,
    "latplan.web.fake_planner:fake_planner": fake_planner,
    "latplan.web.fake_planner:failing_planner": failing_planner,
}


def utc_age_s(when: dt.datetime | None) -> float | None:
    return None if when is None else (utcnow() - when).total_seconds()
