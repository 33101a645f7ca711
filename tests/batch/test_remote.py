"""`run_on_dask`: a web-style planning job runs on a Dask worker, its progress arrives in order,
and a lease lost locally (the progress callback raising) stops the job with that error.

Reference: Dask's ``Queue`` is first-in first-out (distributed docs, "Coordination Primitives");
the planner's own output (a file written on the worker) is the ground truth of "it ran".
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from distributed import LocalCluster

from latplan.batch.remote import FractionProgress, run_on_dask


class LeaseLost(Exception):
    pass


def fake_planner(case_dir: Path, out_dir: Path, progress: FractionProgress) -> None:
    for i, message in enumerate(("loading", "planning", "writing")):
        progress((i + 1) / 4, message)
    (out_dir / "plan.json").write_text(json.dumps({"case": case_dir.name}))
    progress(1.0, "done")


def slow_planner(case_dir: Path, out_dir: Path, progress: FractionProgress) -> None:
    progress(0.1, "starting")
    time.sleep(1.0)
    progress(0.9, "still here")


@pytest.fixture(scope="module")
def scheduler():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_job_runs_remotely_with_progress(scheduler: str, tmp_path: Path) -> None:
    case = tmp_path / "CASE-1"
    case.mkdir()
    seen: list[tuple[float, str]] = []
    run_on_dask(scheduler, fake_planner, case, tmp_path, lambda f, m: seen.append((f, m)))
    assert json.loads((tmp_path / "plan.json").read_text()) == {"case": "CASE-1"}
    assert seen == [(0.25, "loading"), (0.5, "planning"), (0.75, "writing"), (1.0, "done")]


def test_lost_lease_stops_the_job(scheduler: str, tmp_path: Path) -> None:
    def progress(fraction: float, message: str) -> None:
        raise LeaseLost(f"lease lost at {message}")

    with pytest.raises(LeaseLost, match="starting"):
        run_on_dask(scheduler, slow_planner, tmp_path, tmp_path, progress)


def test_planner_error_propagates(scheduler: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_on_dask(scheduler, fake_planner, tmp_path / "c", tmp_path / "missing-dir", lambda f, m: None)
