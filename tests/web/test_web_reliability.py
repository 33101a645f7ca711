"""Reliability (issue 7, Verification): a worker killed mid-job, and 20 concurrent decisions.

- Kill -9 the planning worker while the (deliberately slow) stand-in planner runs; restart it:
  the job completes once (one job row, attempts = 2), its option rows are not duplicated,
  no temporary folder is left, and SQLite's ``PRAGMA integrity_check`` says ``ok``.
- 20 decision POSTs at once against a live uvicorn server: all 20 stored (versions 1..20, no
  gap, no duplicate), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select, text
from webtest_helpers import LiveServer, http_login, login, upload

from latplan.store.db import make_engine, session_factory
from latplan.store.models import Decision, Job, PlanOption
from latplan.web.jobs import run_worker


def _job(settings):
    eng = make_engine(settings.database_url)
    with session_factory(eng)() as s:
        job = s.scalar(select(Job))
        n_jobs = s.scalar(select(func.count()).select_from(Job))
        n_opts = s.scalar(select(func.count()).select_from(PlanOption))
    eng.dispose()
    return job, n_jobs, n_opts


@pytest.mark.slow
def test_web_worker_killed_mid_job_completes_once(app_client, settings, case_zip):
    """Kill -9 mid-job → restart → done once, no duplicate rows (both databases); SQLite integrity_check ok."""
    sqlite_client = app_client
    csrf = login(sqlite_client, "coord")
    case_id = upload(sqlite_client, csrf, case_zip).json()["id"]
    r = sqlite_client.post(f"/cases/{case_id}/plan", headers={"X-CSRF-Token": csrf, "accept": "application/json"})
    assert r.json()["status"] == "queued"
    env = {**os.environ, **settings.to_env(), "LATPLAN_FAKE_PLANNER_DELAY_S": "8"}
    proc = subprocess.Popen([sys.executable, "-m", "latplan.web.worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            job, _, _ = _job(settings)
            if job.status == "running" and job.progress > 0.1:
                break
            assert time.monotonic() < deadline, f"worker did not start the job: {job.status} {job.message}"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    job, n_jobs, n_opts = _job(settings)
    assert (job.status, n_jobs, n_opts) == ("running", 1, 0)  # killed: nothing committed
    assert len(list((settings.data_dir / "tmp").glob("job-*"))) == 1  # its half-written folder
    assert not (settings.data_dir / "results" / job.job_key).exists()

    assert run_worker(settings, once=True) == 1  # restart: re-queue, run, commit
    job, n_jobs, n_opts = _job(settings)
    assert job.status == "done" and job.attempts == 2 and n_jobs == 1
    assert n_opts == 5  # one lesion × 5 options of the stand-in planner, not 10
    assert list((settings.data_dir / "tmp").iterdir()) == []
    assert [p.name for p in (settings.data_dir / "results").iterdir()] == [job.job_key]
    assert run_worker(settings, once=True) == 0  # nothing left to do: it ran once
    if settings.database_url.startswith("sqlite"):
        eng = make_engine(settings.database_url)
        with eng.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        eng.dispose()
    page = sqlite_client.get(f"/cases/{case_id}", headers={"accept": "application/json"}).json()
    assert page["status"] == "planned"


def test_web_concurrent_decisions_all_stored(settings, case_zip):
    """20 concurrent decision POSTs → 20 rows, versions 1..20, none lost (SQLite and PostgreSQL)."""
    from webtest_helpers import seed_users

    from latplan.web.app import create_app

    seed_users(settings)
    app = create_app(settings)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        csrf = http_login(c, "coord")
        files = {"upload": ("c.zip", case_zip, "application/zip")}
        r = c.post("/cases", files=files, data={"board_id": "1", "csrf_token": csrf}, headers={"accept": "application/json"})
        case_id = r.json()["id"]
        c.post(f"/cases/{case_id}/plan", headers={"X-CSRF-Token": csrf})
        run_worker(settings, once=True)
        csrf = http_login(c, "doc")
        cookies = dict(c.cookies)

        def post(n: int) -> int:
            with httpx.Client(base_url=srv.url, cookies=cookies, timeout=60) as cc:
                return cc.post(f"/cases/{case_id}/decisions", headers={"X-CSRF-Token": csrf, "accept": "application/json"},
                               data={"scope": "lesion_1", "chosen": "mwa", "rationale": f"post {n}",
                                     "attendees": f"Member {n} — hepatology"}).status_code

        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(post, range(20)))
    assert codes == [201] * 20
    eng = make_engine(settings.database_url)
    with session_factory(eng)() as s:
        rows = list(s.scalars(select(Decision).where(Decision.case_id == case_id)))
    eng.dispose()
    assert sorted(d.version for d in rows) == list(range(1, 21))
    assert sorted(d.rationale for d in rows) == sorted(f"post {n}" for n in range(20))


@pytest.mark.slow
def test_web_served_worker_restarted_after_crash(tmp_path, case_zip, monkeypatch):
    """The app restarts its planning worker when it dies mid-job; the job then completes once."""
    from webtest_helpers import make_settings, seed_users

    from latplan.web.app import create_app

    monkeypatch.setenv("LATPLAN_FAKE_PLANNER_DELAY_S", "6")
    settings = make_settings(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "data", start_worker=True)
    seed_users(settings)
    app = create_app(settings)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        csrf = http_login(c, "coord")
        r = c.post("/cases", files={"upload": ("c.zip", case_zip, "application/zip")},
                   data={"board_id": "1", "csrf_token": csrf}, headers={"accept": "application/json"})
        case_id = r.json()["id"]
        c.post(f"/cases/{case_id}/plan", headers={"X-CSRF-Token": csrf})
        deadline = time.monotonic() + 60
        while c.get(f"/cases/{case_id}/job", headers={"accept": "application/json"}).json()["progress"] <= 0.1:
            assert time.monotonic() < deadline, "the worker did not start the job"
            time.sleep(0.2)
        first = app.state.supervisor.proc
        os.kill(first.pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while (job := c.get(f"/cases/{case_id}/job", headers={"accept": "application/json"}).json())["status"] != "done":
            assert time.monotonic() < deadline, f"the job did not complete after the crash: {job}"
            time.sleep(0.5)
        assert app.state.supervisor.proc is not first and app.state.supervisor.restarts >= 1
    assert job["attempts"] == 2
    _, n_jobs, n_opts = _job(settings)
    assert (n_jobs, n_opts) == (1, 5)
