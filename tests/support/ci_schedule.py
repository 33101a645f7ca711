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
#: wins. Tests not named here get the defaults below. Figures: the whole suite at main aa3e4b1, `-n 2 --dist loadfile
#: --durations=100`, 2 cores shared with other jobs (load 4–20; 58.6 min): only their ratios matter here.
DURATIONS_S: dict[str, float] = {
    "tests/integration/test_demo.py::test_demo_case_renders[four-lesions-right-lobe]": 1721.0,
    "tests/integration/test_demo.py::test_demo_case_renders[fig2-seg4a8-third-line]": 646.0,
    "tests/integration/test_demo.py::test_demo_case_renders[fig1-seg8-between-hepatic-veins]": 352.0,
    "tests/integration/test_demo.py::test_demo_case_renders[large-60mm]": 219.0,
    "tests/batch/test_runner.py::test_failing_case_recorded_rest_planned": 204.0,
    "tests/followup/test_followup_demo.py::test_followup_fig2_replanned_for_ibt": 197.0,
    "tests/web/test_web_browser.py::test_web_browser_board_flow": 185.0,
    "tests/batch/test_runner.py::test_rerun_plans_nothing_unchanged": 159.0,
    "tests/export/test_export_demo.py::test_demo_main_report_page_limit_and_page_one": 137.0,
    "tests/planning/test_thermal_planners.py::test_planner_heat_sink_cuts_rfa_more_than_mwa": 125.0,
    "tests/web/test_web_reliability.py::test_web_served_worker_restarted_after_crash": 122.0,
    "tests/integration/test_demo.py::test_demo_case_renders[seg3-abutting-stomach-30mm]": 121.0,
    "tests/imaging/test_imaging_real_data_e2e.py::test_totalsegmentator_dicom_ct_planned": 110.0,
    "tests/planning/test_electroporation.py::test_planner_ire_too_large_lesion_reported_with_reason": 95.0,
    "tests/planning/test_thermal_planners.py::test_planner_demo_large_lesion_not_one_rfa_electrode": 91.0,
    "tests/integration/test_demo.py::test_demo_cli": 87.0,
    "tests/integration/test_demo.py::test_demo_case_renders[perivascular-rfa]": 87.0,
    "tests/batch/test_distributed.py::test_killed_worker_every_case_planned_exactly_once": 85.0,
    "tests/integration/test_demo.py::test_demo_case_renders[seg6-peripheral-18mm]": 84.0,
    "tests/report/test_report_summary.py::test_four_lesions_main_report_at_most_16_pages": 73.0,
    "tests/planning/test_thermal.py::test_perivascular_zone_spares_lumen_and_leaves_tumour_beside_the_vein": 68.0,
    "tests/web/test_web_reliability.py::test_web_worker_killed_mid_job_completes_once[sqlite]": 67.0,
    "tests/web/test_web_crash.py::test_kill9_worker_alone_restarted_job_once": 61.0,
    "tests/web/test_web_crash.py::test_kill9_server_and_worker_then_restart": 60.0,
    "tests/web/test_web_crash.py::test_kill9_server_alone_worker_exits": 60.0,
    "tests/web/test_web_reliability.py::test_web_worker_killed_mid_job_completes_once[postgres]": 59.0,
    "tests/planning/test_electroporation.py::test_planner_ire_demo_lesion_with_margin": 49.0,
    "tests/followup/test_followup_cohort.py::test_followup_cohort_ltp_from_images": 44.0,
    "tests/web/test_web_uploads.py::test_web_hostile_upload_corpus": 43.0,
    "tests/planning/test_electroporation.py::test_planner_generator_limits_are_respected": 40.0,
    "tests/phantom/test_phantom_demo.py::test_all_demo_cases_ship_and_validate": 40.0,
    "tests/report/test_report_integration.py::test_real_ct_with_inserted_lesion_via_cli": 38.0,
    "tests/imaging/test_imaging_real_data_e2e.py::test_totalsegmentator_ct_import_capsule_entry_and_plan": 35.0,
    "tests/web/test_web_store.py::test_web_cli_serve_starts": 31.0,
    "tests/report/test_report_summary.py::test_single_lesion_main_report_at_most_8_pages": 28.0,
    "tests/pipeline/test_plan.py::test_plan_case_folder_writes_valid_plan_json_and_reports": 27.0,
    "tests/anatomy/test_anatomy_properties.py::test_gap_and_calibre_within_one_voxel": 26.0,
    "tests/followup/test_followup_cohort.py::test_followup_outcomes_files_and_references": 25.0,
    "tests/web/test_web_browser.py::test_web_browser_viewer_lesion_buttons": 24.0,
    "tests/web/test_web_reliability.py::test_web_concurrent_decisions_all_stored[postgres]": 22.0,
    "tests/web/test_web_crash.py::test_heartbeat_notices_a_lost_lease": 21.0,
    "tests/physics/test_bioheat.py::test_bioheat_point_source_second_order_convergence": 21.0,
    "tests/followup/test_followup_demo.py::test_followup_fig2_residual_rim_found": 21.0,
    "tests/planning/test_thermal.py::test_mwa_margin_towards_a_6mm_vessel_comes_from_the_physics": 20.0,
    "tests/pipeline/test_plan.py::test_parallel_simulations_give_the_sequential_plan": 20.0,
    "tests/planning/test_ibt_target_geometry.py::test_v150_objective_lowers_dose_above_150_percent": 19.0,
    "tests/web/test_web_crash.py::test_worker_whose_lease_was_taken_writes_nothing": 18.0,
    "tests/imaging/test_imaging_real_data_e2e.py::test_dcmqi_dicom_seg_liver_planned": 18.0,
    "tests/web/test_web_reliability.py::test_web_concurrent_decisions_all_stored[sqlite]": 17.0,
    "tests/imaging/test_imaging_real_data_e2e.py::test_dicompyler_rtstruct_case_planned": 17.0,
    "tests/board/test_board_preferences.py::test_preferences_never_lift_contraindicated": 17.0,
    "tests/web/test_web_headers_limits.py::test_security_headers_everywhere": 16.0,
    "tests/planning/test_electroporation.py::test_planner_ect_demo_lesion_reaches_95_percent": 16.0,
    "tests/physics/test_electroporation.py::test_ire_lethal_field_calibrated_in_vivo_and_checked_on_held_out_arm": 16.0,
    "tests/physics/test_electroporation.py::test_sigma_fixed_point_converges_where_the_plain_update_oscillates": 15.0,
    "tests/planning/test_thermal_planners.py::test_planner_rfa_cryo_on_synthetic_case": 14.0,
    "tests/followup/test_followup_demo.py::test_followup_fig2_demo_files": 14.0,
    "tests/web/test_web_dask.py::test_web_job_runs_on_dask_once_with_result_and_progress": 13.0,
    "tests/planning/test_ibt_biology_source.py::test_cardiac_device_dose_check": 13.0,
    "tests/planning/test_ibt.py::test_figure1_phantom_case": 13.0,
    "tests/web/test_web_crash.py::test_running_job_rerun_only_after_lease_expiry": 12.0,
    "tests/planning/test_ibt_biology_source.py::test_plan_bed_uses_delivery_time_and_decayed_source": 12.0,
}
SLOW_DEFAULT_S = 20.0
FAST_DEFAULT_S = 0.5

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


def read_log(path: str | Path) -> dict[str, tuple[float, float]]:
    """``{node id: (wall s, cpu s)}`` of a :class:`TimingLog` file (the last line of a node id wins)."""
    out: dict[str, tuple[float, float]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        wall, cpu, _load, nodeid = line.split("\t", 3)
        out[nodeid] = (float(wall), float(cpu))
    return out


def table_from_log(path: str | Path, min_s: float = 5.0) -> dict[str, float]:
    """Seconds per test for :data:`DURATIONS_S` from a :class:`TimingLog` file, tests of ``min_s`` or more.

    A test's figure is its CPU seconds, unless it mostly waits (subprocesses it does not reap, sleeps,
    a browser): then its wall seconds divided by the log's typical wall/CPU ratio of CPU-bound tests
    (the median over tests of ≥ 1 CPU s with CPU ≤ wall; this is how much the machine's load stretched
    a busy test). CPU above wall is child processes of earlier tests reaped late (a cluster's workers
    at a module fixture's teardown): such a test is charged its wall seconds at most.
    """
    rows = read_log(path)
    busy = [w / c for w, c in rows.values() if 1.0 <= c <= w]
    stretch = statistics.median(busy) if busy else 1.0
    table = {nodeid: round(max(min(cpu, wall), wall / stretch), 1) for nodeid, (wall, cpu) in rows.items()}
    return dict(sorted(((k, v) for k, v in table.items() if v >= min_s), key=lambda kv: -kv[1]))


if __name__ == "__main__":  # python tests/support/ci_schedule.py LOG [MIN_S]
    log = sys.argv[1]
    entries = table_from_log(log, float(sys.argv[2]) if len(sys.argv) > 2 else 5.0)
    print(f"# {len(entries)} tests; sum {sum(entries.values()):.0f} s")
    for key, value in entries.items():
        print(f"    {key!r}: {value},")
