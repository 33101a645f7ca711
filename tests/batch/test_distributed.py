"""A real Dask deployment on loopback: `dask scheduler` + two `dask worker` processes, a cohort
planned through `latplan cohort plan --scheduler`, one worker killed (SIGKILL) mid-case.

Independent references: Dask's documented fault tolerance (a task whose worker dies is
rescheduled on another worker, distributed docs "Resilience"); the process ids of the worker
processes (POSIX) to show the killed case was re-planned elsewhere; sha256 of the case files
against the ``input_hashes`` recorded in each plan.json to show no output is half-written or stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client

from latplan.batch import read_manifest
from tests.batch.conftest import copy_cases

SRC = Path(__file__).resolve().parents[2] / "src"
DASK = Path(sys.executable).with_name("dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(SRC.parent), env.get("PYTHONPATH", "")])
    env.update({"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    return env


def _wait_busy(client: Client, out: Path, timeout_s: float = 300.0) -> tuple[str, str]:
    """(worker address, case name) of a case being planned right now (its staging folder exists)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        staging = sorted((out / ".partial").glob("*-*")) if (out / ".partial").is_dir() else []
        for folder in staging:
            case = folder.name.rsplit("-", 1)[0]
            for worker, keys in client.processing().items():
                if any(str(k).startswith(f"latplan-case-{case}-") for k in keys):
                    return worker, case
        time.sleep(0.2)
    raise AssertionError("no case task started on the workers within the timeout")


@pytest.mark.slow
def test_killed_worker_every_case_planned_exactly_once(tiny_cohort: Path, tmp_path: Path) -> None:
    cases = copy_cases(tiny_cohort, tmp_path / "in")
    out = tmp_path / "out"
    env = _env()
    address = f"tcp://127.0.0.1:{_free_port()}"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["scheduler"] = subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
            env=env, stdout=open(logs / "scheduler.log", "wb"), stderr=subprocess.STDOUT)
        for name in ("w0", "w1"):
            procs[name] = subprocess.Popen(
                [str(DASK), "worker", address, "--name", name, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                 "--no-dashboard"], env=env, stdout=open(logs / f"{name}.log", "wb"), stderr=subprocess.STDOUT)
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
            names = {addr: info["name"] for addr, info in client.scheduler_info()["workers"].items()}
            pids = {names[addr]: pid for addr, pid in client.run(os.getpid).items()}
            assert pids == {name: procs[name].pid for name in ("w0", "w1")}  # SIGKILL hits the worker itself
            cli = subprocess.Popen(
                [sys.executable, "-c", "from latplan.cli import main; main()", "cohort", "plan", str(cases), "--out",
                 str(out), "--scheduler", address, "--no-simulate", "--no-pdf"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            worker, killed_case = _wait_busy(client, out)
            victim = client.scheduler_info()["workers"][worker]["name"]
        procs[victim].kill()
        procs[victim].wait(timeout=30)
        output, _ = cli.communicate(timeout=900)
        text = output.decode()
        assert cli.returncode == 0, text
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

    assert "4 planned, 0 unchanged (skipped), 0 failed" in text, text
    assert "Dask dashboard" in text and address in text
    names = sorted(p.name for p in cases.iterdir())
    assert sorted(p.name for p in (out / "cases").iterdir()) == names  # one folder per case, no duplicates
    assert not (out / ".partial").exists()  # the killed task's staging folder is gone
    for name in names:
        manifest = read_manifest(out / "cases" / name)
        assert manifest is not None and manifest.status == "ok", name
        plan = json.loads((out / "cases" / name / "plan.json").read_text())
        for fname, digest in plan["input_hashes"].items():
            assert hashlib.sha256((cases / name / fname).read_bytes()).hexdigest() == digest
    survivor = next(n for n in ("w0", "w1") if n != victim)
    manifest = read_manifest(out / "cases" / killed_case)
    assert manifest is not None and manifest.pid == pids[survivor] != pids[victim]
