"""Shared fixtures. Plots use Agg; ../shared/data is read in place, never copied.

Tests that need ``../shared/data`` use the ``shared_data`` fixture: it skips with a clear
reason when the folder is absent (a clone outside this team) and fails instead when
``LATPLAN_REQUIRE_SHARED_DATA=1`` (set by .ci/run).
"""

from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist every worker is its own process on the same cores: numba's own threads on
# top of that oversubscribe the CPU, and its parallel kernels wait at every step's barrier for a
# descheduled thread (measured: a heating step 5–8× slower). One numba thread per worker.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import matplotlib
import pytest
from ci_schedule import TIMING_LOG_ENV, TimingLog, schedule  # tests/support (pytest's pythonpath)

matplotlib.use("Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LATPLAN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def pytest_configure(config: pytest.Config) -> None:
    """With ``LATPLAN_TEST_TIMING_LOG=FILE``: record each test's wall and CPU seconds (refreshing
    tests/support/ci_schedule.py's DURATIONS_S; nothing is recorded otherwise)."""
    if os.environ.get(TIMING_LOG_ENV):
        config.pluginmanager.register(TimingLog(os.environ[TIMING_LOG_ENV]), "latplan-timing-log")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist turns the xdist_group marks into node-id suffixes
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers: tests sharing a module fixture stay on one worker, longest units first
    (tests/support/ci_schedule.py; ``make test`` runs ``--dist loadgroup --no-loadscope-reorder``)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        schedule(items)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data (skip, or fail under LATPLAN_REQUIRE_SHARED_DATA=1, when absent)."""
    if not SHARED_DATA.is_dir():
        msg = (
            f"shared test data not found at {SHARED_DATA}: this test reads real imaging/TG-43/device data "
            "that lives beside the clone (../shared/data). Set LATPLAN_SHARED_DATA to its path."
        )
        if os.environ.get("LATPLAN_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(msg + " LATPLAN_REQUIRE_SHARED_DATA=1 is set, so this is a failure, not a skip.")
        pytest.skip(msg)
    return SHARED_DATA
