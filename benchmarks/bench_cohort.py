"""Benchmark: cohort planning on Dask — cases/minute with 1 and 2 single-threaded workers, the scaling
ratio (goal ≥ 1.8×), scheduler overhead per task and memory per worker (issue [O] part 5).

Run: .venv/bin/python benchmarks/bench_cohort.py [--n 20] [--voxel-mm 4] [--simulate sbrt,tare]
Idle re-measurement (2 cores, as the issue asks):

    taskset -c 0,1 .venv/bin/python benchmarks/bench_cohort.py --n 20

Default: 4 synthetic cases on 6 mm grids without simulations (about a minute on an idle 2-core
machine; ``--n 20`` a few minutes). Each configuration gets a fresh LocalCluster of single-threaded
workers (one Dask thread, one numba/BLAS/OpenMP thread each: ``NUMBA_NUM_THREADS=1``) whose
workers import every latplan module a case needs before the clock starts (a warm-up), so the
figure is planning throughput, not interpreter start-up. Workers get case folder *paths* and load
the cases from disk (no volumes are shipped); numba kernels are compiled with ``cache=True``
(compiled once, loaded by every later worker). Cases/minute counts the planning span (first
submission → last case done); the cohort table and index, written once at the end by the client
in one process, are timed apart (a serial part that does not scale with workers).
The load average is printed: on a shared machine the ratio measures the contention, not latplan.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
from distributed import Client, LocalCluster
from rich.console import Console
from rich.table import Table

from latplan.batch import ClusterSettings, plan_cohort, read_manifest, synth_cohort
from latplan.batch.runner import WORKER_ENV
from latplan.pipeline import PlanOptions

SCALING_GOAL = 1.8
OVERHEAD_TASKS = 200


def _arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def _warm() -> int:
    import latplan.batch.jobs  # noqa: F401  (pipeline, board, report, export: import cost paid before the clock)

    return os.getpid()


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _noop(i: int) -> int:
    return i


#: single-threaded workers: one numba thread too (the LocalCluster of `latplan cohort plan` sets it per task)
BENCH_ENV = {**WORKER_ENV, "NUMBA_NUM_THREADS": "1"}


def _run(cases: Path, out: Path, workers: int,
         options: PlanOptions) -> tuple[float, float, float, list[float], float]:
    """(planning s, scheduler overhead ms/task, max worker RSS MB, per-case seconds, table+index s)."""
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", scheduler_port=0,
                      dashboard_address=None, env=BENCH_ENV) as cluster, Client(cluster) as client:
        client.run(_warm)
        t0 = time.perf_counter()
        client.gather(client.map(_noop, range(OVERHEAD_TASKS), pure=False))
        overhead_ms = (time.perf_counter() - t0) / OVERHEAD_TASKS * 1e3
        run = plan_cohort(cases, out, options, ClusterSettings(scheduler=cluster.scheduler_address))
        wall = run.planning_seconds
        rss = max(client.run(_rss_mb).values())
    failed = [o.name for o in run.outcomes if o.status != "planned"]
    if failed:
        raise SystemExit(f"cases not planned: {failed}")
    per_case = [m.seconds for o in run.outcomes if (m := read_manifest(out / "cases" / o.name)) is not None]
    return wall, overhead_ms, rss, per_case, run.seconds - run.planning_seconds


def main() -> int:
    n = int(_arg("--n", "4"))
    voxel = float(_arg("--voxel-mm", "6"))
    sim = _arg("--simulate", "")
    options = PlanOptions(simulate=frozenset(sim.split(",")) if sim else False, pdf=False)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cases = Path(tmp) / "cases"
        synth_cohort(cases, n=n, seed=2026, voxel_mm=voxel)
        results = {w: _run(cases, Path(tmp) / f"out{w}", w, options) for w in (1, 2)}
    load1 = os.getloadavg()[0]
    table = Table(title=f"latplan cohort plan: {n} synthetic cases, {voxel:g} mm grid, simulate={sim or 'none'}; "
                        f"load average {load0:.1f} → {load1:.1f} on {os.cpu_count()} cores")
    for col in ("figure", "1 worker", "2 workers", "goal / limit"):
        table.add_column(col)
    rate = {w: n / r[0] * 60.0 for w, r in results.items()}
    mean_case = {w: sum(r[3]) / len(r[3]) for w, r in results.items()}
    ratio = rate[2] / rate[1]
    table.add_row("cases / minute (planning span)", f"{rate[1]:.2f}", f"{rate[2]:.2f}", "")
    table.add_row("scaling ratio (2 vs 1 worker)", "1.00", f"{ratio:.2f}",
                  f"≥ {SCALING_GOAL}: {'held' if ratio >= SCALING_GOAL else 'not held'}")
    table.add_row("mean time per case (s, in the task)", f"{mean_case[1]:.1f}", f"{mean_case[2]:.1f}", "")
    table.add_row(f"scheduler overhead per task (ms, {OVERHEAD_TASKS} no-op tasks)", f"{results[1][1]:.2f}", f"{results[2][1]:.2f}",
                  "≪ time per case")
    table.add_row("memory per worker (max RSS, MB)", f"{results[1][2]:.0f}", f"{results[2][2]:.0f}", "")
    table.add_row("cohort table + index, once, in the client (s; not in cases/min)", f"{results[1][4]:.1f}",
                  f"{results[2][4]:.1f}", "serial")
    core_h = 1000 * mean_case[1] / 3600
    table.add_row("1 000 cases at the 1-worker time per case (core-hours)", f"{core_h:.1f}", "", "")
    Console().print(table)
    if load1 > (os.cpu_count() or 1):
        Console().print(f"[yellow]machine overloaded (load {load1:.1f} > {os.cpu_count()} cores): the scaling ratio "
                        "measures contention with other processes, not latplan.[/yellow]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
