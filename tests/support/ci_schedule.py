"""How ``make test`` spreads the suite over pytest-xdist workers (``--dist loadgroup --no-loadscope-reorder``).

Applied at collection by ``tests/conftest.py`` on every xdist worker (the same on each, so the workers'
collections agree). Two rules:

1. **Shared fixtures stay together.** Tests that use a fixture of ``module``, ``class`` or ``package``
   scope get an ``xdist_group`` named after the fixture's instance (the test file; the class; the
   package folder), so the fixture is built once, on one worker, as with ``--dist loadfile``. Every
   other test is a unit of its own, so a file of independent slow tests (one per demo case) spreads
   over the workers instead of queuing on one. Session fixtures are built once per worker either way.
2. **Longest first.** Units are sent longest first (the longest-processing-time rule: the last unit a
   worker takes is a short one, so the workers finish together). A unit's length is the sum of its
   tests' entries in :data:`DURATIONS_S` (seconds: setup + call + teardown, from a ``--durations`` run
   of the whole suite on 2 cores), else :data:`SLOW_DEFAULT_S` for a test marked ``slow`` and
   :data:`FAST_DEFAULT_S` for the rest. A stale table only makes the order less good, never a test
   wrong.

Refreshing the table: set ``LATPLAN_TEST_TIMING_LOG=FILE`` and run the tests (any selection, with or
without xdist); every test appends ``wall_s  cpu_s  load_1min  node_id`` to FILE as it finishes
(:class:`TimingLog`, registered by ``tests/conftest.py``). CPU seconds (this process and the child
processes it waited for) are what a test costs on an idle core; wall seconds on a loaded machine are
not. ``python tests/support/ci_schedule.py FILE`` prints the entries for :data:`DURATIONS_S`
(:func:`table_from_log`; prefixes of node ids match every test under them).

Nothing here changes what a test asserts or which tests run.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

#: measured seconds of each test (setup + call + teardown), keyed by node id or by a prefix of node ids (a file,
#: a test without its parameters: the figure then holds for each test under it); the longest matching key
#: wins. Tests not named here get the defaults below; tests under 2 s are left out. Figures: :func:`table_from_log`
#: of TimingLog runs at main 337090c + branch s4/ci (2026-12-02, 19:25–20:20 UTC): serial (no xdist),
#: NUMBA_NUM_THREADS=1 as on the workers, 2 cores shared with other helpers (1-min load 1.5–4.3), numba cache
#: cold at the first demo case: the whole fast loop (996 tests, 192 CPU s), every demo case, the web crash,
#: reliability, browser and batch tests. Entries marked "earlier figure" were not in that run (session 3 figures).
DURATIONS_S: dict[str, float] = {
    'tests/integration/test_demo.py::test_demo_case_renders[four-lesions-right-lobe]': 73.1,
    'tests/integration/test_demo.py::test_demo_case_renders[fig1-seg8-between-hepatic-veins]': 49.2,
    'tests/integration/test_demo.py::test_demo_case_renders[seg3-abutting-stomach-30mm]': 43.6,
    'tests/integration/test_demo.py::test_demo_case_renders[large-60mm]': 39.7,
    'tests/integration/test_demo.py::test_demo_case_renders[fig2-seg4a8-third-line]': 38.1,
    'tests/planning/test_thermal_planners.py::test_planner_demo_large_lesion_not_one_rfa_electrode': 35.8,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/web/test_web_browser.py::test_web_browser_board_flow': 32.7,
    'tests/integration/test_demo.py::test_demo_case_renders[perivascular-rfa]': 30.8,
    'tests/planning/test_electroporation.py::test_planner_ire_too_large_lesion_reported_with_reason': 20.9,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/batch/test_distributed.py::test_killed_worker_every_case_planned_exactly_once': 18.9,
    'tests/web/test_web_crash.py::test_kill9_server_alone_worker_exits': 16.7,
    'tests/web/test_web_browser.py::test_web_browser_viewer_lesion_buttons': 16.2,
    'tests/planning/test_electroporation.py::test_planner_ire_demo_lesion_with_margin': 16.1,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/batch/test_split.py::test_split_case_gives_the_in_process_plan': 15.3,
    'tests/planning/test_thermal.py::test_perivascular_zone_spares_lumen_and_leaves_tumour_beside_the_vein': 14.5,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/web/test_web_reliability.py::test_web_served_worker_restarted_after_crash': 13.3,
    'tests/planning/test_thermal_planners.py::test_planner_heat_sink_cuts_rfa_more_than_mwa': 13.1,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/integration/test_demo.py::test_demo_case_renders[seg6-peripheral-18mm]': 11.7,
    'tests/web/test_web_crash.py::test_kill9_worker_alone_restarted_job_once': 11.3,
    'tests/web/test_web_crash.py::test_kill9_server_and_worker_then_restart': 11.0,
    'tests/planning/test_ibt_target_geometry.py::test_v150_objective_lowers_dose_above_150_percent': 10.9,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/batch/test_runner.py::test_failing_case_recorded_rest_planned': 10.2,
    'tests/report/test_report_integration.py::test_real_ct_with_inserted_lesion_via_cli': 9.6,
    'tests/pipeline/test_plan.py::test_parallel_simulations_give_the_sequential_plan': 8.8,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/physics/test_dvh.py::test_point_source_in_spherical_shell_matches_analytic_dvh': 7.7,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/physics/test_bioheat.py::test_bioheat_latent_heat_shrinks_iceball': 6.5,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/web/test_web_dask.py::test_web_job_on_dask_whose_lease_is_lost_writes_nothing': 6.5,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/imaging/test_imaging_real_data_e2e.py::test_totalsegmentator_dicom_ct_planned': 6.2,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/planning/test_electroporation.py::test_planner_generator_limits_are_respected': 6.2,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/web/test_web_store.py::test_web_cli_serve_starts': 6.1,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/export/test_export.py::test_dicom_input_case_is_referenced_not_rewritten': 5.5,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/export/test_export_demo.py::test_demo_main_report_page_limit_and_page_one': 5.5,
    'tests/report/test_report_summary.py::test_four_lesions_main_report_at_most_16_pages': 5.4,
    'tests/pipeline/test_workers.py::test_spawned_worker_compiles_new_kernels_with_one_thread': 5.3,
    'tests/web/test_web_roles_audit.py::test_job_quota_per_case_and_per_user': 5.2,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/imaging/test_imaging_resample_insert.py::test_cli_insert_lesion_real_cases[totalseg-ct-dicom-inferior_vena_cava]': 4.4,
    'tests/physics/test_tg43_kernels.py::test_dose_linear_in_time_and_sk': 4.3,
    'tests/web/test_web_uploads.py::test_web_hostile_upload_corpus': 4.2,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/physics/test_cryo.py::test_cryo_subvoxel_probe_matches_pennes_cylinder': 4.2,
    'tests/followup/test_followup_cohort.py::test_followup_cohort_ltp_from_images': 4.0,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/integration/test_demo.py::test_demo_cli': 4.0,
    'tests/web/test_web_reliability.py::test_web_worker_killed_mid_job_completes_once[sqlite]': 3.4,
    'tests/web/test_web_dask.py::test_web_job_runs_on_dask_once_with_result_and_progress': 3.4,
    'tests/report/test_report_html.py::test_write_reports_pdf_has_sections': 3.2,
    'tests/web/test_web_reliability.py::test_web_concurrent_decisions_all_stored[postgres]': 2.7,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/followup/test_followup_pipeline.py::test_followup_predicted_vs_observed_from_recorded_plan': 2.6,
    'tests/physics/test_bioheat.py::test_bioheat_point_source_second_order_convergence': 2.5,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/phantom/test_phantom_demo.py::test_all_demo_cases_ship_and_validate': 2.5,
    'tests/physics/test_dwell_opt.py::test_coverage_is_hard_and_objective_prefers_low_shell_dose': 2.4,
    'tests/planning/test_thermal_planners.py::test_planner_rfa_cryo_on_synthetic_case': 2.4,
    'tests/planning/test_thermal.py::test_mwa_margin_towards_a_6mm_vessel_comes_from_the_physics': 2.3,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/planning/test_electroporation.py::test_planner_ect_demo_lesion_reaches_95_percent': 2.3,
    'tests/pipeline/test_plan.py::test_plan_case_folder_writes_valid_plan_json_and_reports': 2.2,
    'tests/planning/test_ibt.py::test_figure1_phantom_case': 2.0,  # earlier figure (not in the 2026-12-02 19:25–20:20 UTC run)
    'tests/followup/test_followup_pipeline.py::test_followup_cli_json_and_outcomes': 2.0,
    'tests/planning/test_ibt_target_geometry.py::test_plan_for_robustness_holds_under_3mm_shifts': 2.0,
}
SLOW_DEFAULT_S = 5.0  # about the median of the measured slow tests (2.3 s), rounded up: unmeasured slow ones go early
FAST_DEFAULT_S = 0.2

def estimated_s(item: pytest.Item, table: dict[str, float] | None = None) -> float:
    """Estimated seconds of one test: the entry of :data:`DURATIONS_S` with the longest key that is its
    node id or a prefix of it (a file, a test without its parameters), else the default for its marker."""
    durations = DURATIONS_S if table is None else table
    nodeid = item.nodeid
    keys = [k for k in durations if nodeid == k or nodeid.startswith((k + "::", k + "["))]
    if keys:
        return durations[max(keys, key=len)]
    return SLOW_DEFAULT_S if item.get_closest_marker("slow") is not None else FAST_DEFAULT_S


def shared_fixture_group(item: pytest.Item) -> str | None:
    """The group of ``item`` under rule 1: its file when it uses a class or module fixture, its package
    folder when it uses a package fixture, else ``None`` (a unit of its own)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    scopes = {str(defs[-1].scope) for name in info.names_closure if (defs := info.name2fixturedefs.get(name))}
    if "package" in scopes:
        return item.nodeid.rsplit("/", 1)[0] if "/" in item.nodeid else item.nodeid.split("::", 1)[0]
    if scopes & {"class", "module"}:
        return item.nodeid.split("::", 1)[0]
    return None


def schedule(items: list[pytest.Item], table: dict[str, float] | None = None) -> None:
    """Mark the shared-fixture groups (``xdist_group``) and sort ``items`` longest unit first, in place.

    Tests of one unit keep their file order; units of equal length keep collection order.
    """
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        group = shared_fixture_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        units.setdefault(group or f"test:{item.nodeid}", []).append(item)
    ordered: Sequence[list[pytest.Item]] = sorted(
        units.values(), key=lambda unit: -sum(estimated_s(i, table) for i in unit))
    items[:] = [item for unit in ordered for item in unit]


#: environment variable naming the timing log (:class:`TimingLog`); unset: nothing is recorded
TIMING_LOG_ENV = "LATPLAN_TEST_TIMING_LOG"


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class TimingLog:
    """pytest hooks appending one line per finished test to ``path``: wall s, CPU s (setup + call +
    teardown; this process and the children it reaped), 1-minute load average, node id (tab-separated).
    Lines are appended as each test ends, so a killed run keeps what it measured; xdist workers append
    to the same file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._start: dict[str, tuple[float, float]] = {}

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        self._start[nodeid] = (time.perf_counter(), _cpu_s())

    def pytest_runtest_logfinish(self, nodeid: str, location: object) -> None:
        if nodeid not in self._start:
            return
        wall0, cpu0 = self._start.pop(nodeid)
        line = f"{time.perf_counter() - wall0:.2f}\t{_cpu_s() - cpu0:.2f}\t{os.getloadavg()[0]:.1f}\t{nodeid}\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)


def read_log(path: str | Path) -> dict[str, tuple[float, float, float]]:
    """``{node id: (wall s, cpu s, 1-min load)}`` of a :class:`TimingLog` file (the last line of a node id wins)."""
    out: dict[str, tuple[float, float, float]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        wall, cpu, load, nodeid = line.split("\t", 3)
        out[nodeid] = (float(wall), float(cpu), max(float(load), 1.0))
    return out


def table_from_log(path: str | Path, min_s: float = 5.0) -> dict[str, float]:
    """Seconds per test for :data:`DURATIONS_S` from a :class:`TimingLog` file, tests of ``min_s`` or more.

    A test's figure is its CPU seconds, unless it mostly waits (on subprocesses it does not reap, sleeps,
    a browser): then it is the seconds a busy test would have used in its wall time, wall / (k × load),
    where k is the median of wall / (CPU × load) over the log's tests of ≥ 1 CPU s (a CPU-bound test's
    wall time grows with the load). "Mostly waits": CPU below half of that. CPU above wall is child
    processes of earlier tests reaped late (a cluster's workers at a module fixture's teardown): such a
    test is charged its wall seconds at most.
    """
    rows = read_log(path)
    busy = [w / (c * load) for w, c, load in rows.values() if 1.0 <= c <= w]
    k = statistics.median(busy) if busy else 1.0
    table = {}
    for nodeid, (wall, cpu, load) in rows.items():
        cpu, busy_s = min(cpu, wall), wall / (k * load)
        table[nodeid] = round(cpu if cpu >= 0.5 * busy_s else busy_s, 1)
    return dict(sorted(((n, v) for n, v in table.items() if v >= min_s), key=lambda kv: -kv[1]))


if __name__ == "__main__":  # python tests/support/ci_schedule.py LOG [MIN_S]
    log = sys.argv[1]
    entries = table_from_log(log, float(sys.argv[2]) if len(sys.argv) > 2 else 5.0)
    print(f"# {len(entries)} tests; sum {sum(entries.values()):.0f} s")
    for key, value in entries.items():
        print(f"    {key!r}: {value},")
