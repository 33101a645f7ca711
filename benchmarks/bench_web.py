"""Load figure of the tumor-board web app: requests/s, p50 and p95 latency of the case list,
the case page, the job status and the viewer index with 1 000 cases in the database, at 20
concurrent loopback clients, on SQLite and (when available) PostgreSQL.

Limit (issue [N] 7): on an idle machine the case page p95 ≤ 500 ms. The table prints the figure,
the limit and whether it held; on a shared, busy machine the figure is informative only.

Run: ``.venv/bin/python benchmarks/bench_web.py [--seconds 5] [--clients 20]``. PostgreSQL is
measured when ``LATPLAN_BENCH_POSTGRES_URL`` or ``LATPLAN_TEST_POSTGRES_URL`` is set (its
``public`` schema is DROPPED and recreated: use a throw-away database such as the one
``.ci/services.sh`` starts). The server is ``latplan serve --no-worker`` (one uvicorn process)
on 127.0.0.1; clients are threads of this process using keep-alive connections. Every case
page view writes an audit row, as in production. ``CPU ms/req`` is the server process's CPU
time (user + system, from /proc) per answered request: on a busy machine the latencies
grow with the load, this figure much less, and on an idle one the case page's p95 at 20
clients is about 20 × this figure (one process, one GIL: the requests are served in turn).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "web"))

from webtest_helpers import LiveServer, http_login, make_settings, seed_users, small_case, zip_folder  # noqa: E402

from latplan.imaging.case_folder import save_case_folder  # noqa: E402
from latplan.store.db import make_engine, session_factory, transaction  # noqa: E402
from latplan.store.models import CaseRecord, Meeting  # noqa: E402
from latplan.web.jobs import run_worker  # noqa: E402

N_CASES = 1000
CASE_PAGE_P95_LIMIT_MS = 500.0


def populate(settings, tmp: Path) -> int:
    """1 000 cases on 50 meetings; one real upload, planned with the stand-in planner (the case page)."""
    seed_users(settings)
    from latplan.web.app import create_app

    save_case_folder(small_case("BENCH-0"), tmp / "case")
    data = zip_folder(tmp / "case", "BENCH-0/")
    with LiveServer(create_app(settings)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        csrf = http_login(c, "coord")
        r = c.post("/cases", files={"upload": ("c.zip", data, "application/zip")},
                   data={"board_id": "1", "meeting_date": "2026-12-01", "csrf_token": csrf},
                   headers={"accept": "application/json"})
        case_id = r.json()["id"]
        c.post(f"/cases/{case_id}/plan", headers={"X-CSRF-Token": csrf})
        run_worker(settings, once=True)
    eng = make_engine(settings.database_url)
    with transaction(session_factory(eng)) as s:
        template = s.get(CaseRecord, case_id)
        meetings = []
        for m in range(50):
            meeting = Meeting(board_id=1, date=dt.date(2026, 1, 1) + dt.timedelta(days=7 * m), title=f"week {m}")
            s.add(meeting)
            meetings.append(meeting)
        s.flush()
        for n in range(N_CASES - 1):
            s.add(CaseRecord(board_id=1, meeting_id=meetings[n % 50].id, order_index=n // 50, status="planned",
                             patient_ref=f"BENCH-{n + 1}", title=None, content_sha256=template.content_sha256,
                             summary=template.summary, job_key=template.job_key,
                             last_done_job_key=template.last_done_job_key, uploaded_by=template.uploaded_by))
    eng.dispose()
    return case_id


def hammer(url: str, cookies: dict[str, str], path: str, seconds: float,
           clients: int) -> tuple[float, float, float, int]:
    """Requests/s, p50 and p95 latency (ms) of GET ``path`` by ``clients`` threads for ``seconds``."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run() -> None:
        mine = []
        with httpx.Client(base_url=url, cookies=cookies, timeout=30) as c:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                r = c.get(path)
                mine.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors[0] += 1
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    p95 = statistics.quantiles(lat, n=20)[18] if len(lat) >= 20 else max(lat)
    return len(lat) / wall, 1000 * statistics.median(lat), 1000 * p95, errors[0]


Row = tuple[str, str, float, float, float, int, float]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


REQUESTS = {"list": "case list (200 rows, 1000 in DB)", "page": "case page (planned case)", "job": "job status",
            "viewer": "viewer index"}


def bench_backend(name: str, db_url: str, seconds: float, clients: int, only: list[str],
                  threads: int | None) -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="latplan-bench-"))
    settings = make_settings(db_url, tmp / "data", **({"web_threads": threads} if threads else {}))
    case_id = populate(settings, tmp)
    port = LiveServer(None).port
    env = {**os.environ, **settings.to_env()}
    server = subprocess.Popen([sys.executable, "-c", "from latplan.cli import main; main()", "serve", "--port",
                               str(port), "--no-worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=30) as c:
            http_login(c, "doc")
            cookies = dict(c.cookies)
        rows = []
        paths = {"list": "/cases", "page": f"/cases/{case_id}", "job": f"/cases/{case_id}/job",
                 "viewer": f"/cases/{case_id}/viewer/index.json"}
        for what in only:
            label, path = REQUESTS[what], paths[what]
            httpx.get(url + path, cookies=cookies)  # warm-up
            cpu0 = process_cpu_s(server.pid)
            rps, p50, p95, errors = hammer(url, cookies, path, seconds, clients)
            cpu_ms = 1000 * (process_cpu_s(server.pid) - cpu0) / max(1.0, rps * seconds)
            rows.append((name, label, rps, p50, p95, errors, cpu_ms))
        return rows
    finally:
        server.terminate()
        server.wait(15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--only", default=",".join(REQUESTS), help="requests to measure, of: " + ",".join(REQUESTS))
    ap.add_argument("--backends", default="sqlite,postgres", help="sqlite, postgres or both (default)")
    ap.add_argument("--threads", type=int, default=None,
                    help="handler threads of the server (default: the app's, LATPLAN_WEB_THREADS)")
    args = ap.parse_args()
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    if not only or set(only) - set(REQUESTS):
        ap.error(f"--only takes some of {', '.join(REQUESTS)}")
    tmp = Path(tempfile.mkdtemp(prefix="latplan-bench-db-"))
    wanted = {b.strip() for b in args.backends.split(",")}
    backends = [("SQLite", f"sqlite:///{tmp / 'bench.db'}")] if "sqlite" in wanted else []
    pg = os.environ.get("LATPLAN_BENCH_POSTGRES_URL") or os.environ.get("LATPLAN_TEST_POSTGRES_URL")
    pg = pg if "postgres" in wanted else None
    if pg:
        eng = create_engine(pg)
        with eng.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        eng.dispose()
        backends.append(("PostgreSQL", pg))
    rows = []
    for name, url in backends:
        rows += bench_backend(name, url, args.seconds, args.clients, only, args.threads)
    print(f"\nlatplan web load ({N_CASES} cases, {args.clients} clients, {args.seconds:.0f} s each, "
          f"1 uvicorn process, {os.cpu_count()} CPUs)")
    print(f"{'database':<11} {'request':<34} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7} "
          f"{'CPU ms/req':>10} limit")
    for name, label, rps, p50, p95, errors, cpu_ms in rows:
        limit = ""
        if label.startswith("case page"):
            limit = f"p95 ≤ {CASE_PAGE_P95_LIMIT_MS:.0f} ms (idle machine): " + ("held" if p95 <= CASE_PAGE_P95_LIMIT_MS
                                                                            else "NOT held")
        print(f"{name:<11} {label:<34} {rps:8.1f} {p50:8.1f} {p95:8.1f} {errors:7d} {cpu_ms:10.1f} {limit}")
    load = os.getloadavg()[0]
    print(f"load average (1 min) during the run: {load:.1f} on {os.cpu_count()} CPUs"
          + (" — busy machine: figures are not the idle-machine figures" if load > 0.5 * (os.cpu_count() or 1) else ""))
    if not pg and "postgres" in wanted:
        print("PostgreSQL not measured: set LATPLAN_BENCH_POSTGRES_URL (or source .ci/services.sh).")


if __name__ == "__main__":
    main()
