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
#: wins. Tests not named here get the defaults below; tests under 1 s are left out. Figures: :func:`table_from_log`
#: of the TimingLog of a full CI run (2026-12-06 08:30 UTC, main 7ebeb1b: `.ci/run`, 2 xdist workers,
#: NUMBA_NUM_THREADS=1, numba cache filled by the warm-up before the tests; the worker's line of each test).
DURATIONS_S: dict[str, float] = {  # CI run of 2026-12-06 08:30 UTC (main 7ebeb1b, 2 workers), tests of ≥ 1 s
    'tests/integration/test_demo.py::test_demo_case_renders[four-lesions-right-lobe]': 73.1,
    'tests/integration/test_demo.py::test_demo_case_renders[large-60mm]': 45.9,
    'tests/physics/test_bioheat.py::test_bioheat_heat_sink_by_calibre_rfa_more_than_mwa': 39.2,
    'tests/integration/test_demo.py::test_demo_case_renders[fig1-seg8-between-hepatic-veins]': 32.7,
    'tests/integration/test_demo.py::test_demo_case_renders[seg3-abutting-stomach-30mm]': 32.0,
    'tests/integration/test_demo.py::test_demo_case_renders[fig2-seg4a8-third-line]': 27.8,
    'tests/web/test_web_browser.py::test_web_browser_board_flow': 26.2,
    'tests/physics/test_bioheat.py::test_bioheat_heat_sink_rfa_at_least_twice_mwa_for_5mm_vessel_at_5mm': 26.2,
    'tests/integration/test_demo.py::test_demo_case_renders[perivascular-rfa]': 24.3,
    'tests/batch/test_distributed.py::test_killed_worker_every_case_planned_exactly_once': 20.6,
    'tests/web/test_web_reliability.py::test_web_served_worker_restarted_after_crash': 19.1,
    'tests/batch/test_split.py::test_split_case_gives_the_in_process_plan': 18.1,
    'tests/physics/test_bioheat.py::test_bioheat_point_source_second_order_convergence': 17.7,
    'tests/pipeline/test_workers.py::test_warm_kernel_cache_leaves_later_workers_nothing_to_compile': 17.0,
    'tests/physics/test_bioheat_rfa.py::test_rfa_zone_independent_of_the_box': 16.0,
    'tests/report/test_report_integration.py::test_real_ct_with_inserted_lesion_via_cli': 15.5,
    'tests/batch/test_runner.py::test_rerun_plans_nothing_unchanged': 15.2,
    'tests/pipeline/test_demo_parallel.py::test_parallel_demo_gives_the_rows_of_one_process': 14.4,
    'tests/web/test_web_crash.py::test_kill9_server_alone_worker_exits': 13.4,
    'tests/physics/test_bioheat_rfa.py::test_rfa_zone_converges_from_2_to_1_mm': 13.2,
    'tests/integration/test_demo.py::test_demo_case_renders[seg6-peripheral-18mm]': 13.1,
    'tests/web/test_web_crash.py::test_kill9_server_and_worker_then_restart': 12.9,
    'tests/planning/test_ibt_target_geometry.py::test_v150_objective_lowers_dose_above_150_percent': 12.6,
    'tests/web/test_web_crash.py::test_kill9_worker_alone_restarted_job_once': 11.5,
    'tests/batch/test_runner.py::test_failing_case_recorded_rest_planned': 11.2,
    'tests/planning/test_thermal_planners.py::test_planner_heat_sink_cuts_rfa_more_than_mwa': 9.2,
    'tests/web/test_web_reliability.py::test_web_worker_killed_mid_job_completes_once[sqlite]': 9.2,
    'tests/physics/test_zone_uncertainty.py::test_heating_band_rederived_from_the_physics_at_the_parameter_bounds[rfa]': 8.1,
    'tests/web/test_web_browser.py::test_web_browser_viewer_lesion_buttons': 7.0,
    'tests/export/test_export_demo.py::test_demo_main_report_page_limit_and_page_one': 6.9,
    'tests/planning/test_thermal_mwa_heat_sink.py::test_heat_sink_rfa_cut_back_at_least_twice_mwa': 6.7,
    'tests/planning/test_thermal_mwa_heat_sink.py::test_heat_sink_5mm_vessel_5mm_from_applicator_both_modalities': 6.4,
    'tests/report/test_report_summary.py::test_four_lesions_main_report_at_most_16_pages': 6.4,
    'tests/export/test_export_demo.py::test_demo_dicompyler_dvh_and_rtplan_times': 6.3,
    'tests/planning/test_thermal.py::test_perivascular_zone_spares_lumen_and_leaves_tumour_beside_the_vein': 6.2,
    'tests/planning/test_thermal.py::test_board_metric_keys_and_bands': 5.9,
    'tests/imaging/test_imaging_real_data_e2e.py::test_totalsegmentator_dicom_ct_planned': 5.7,
    'tests/physics/test_bioheat_rfa.py::test_rfa_energy_in_vivo_within_the_clinical_generators_range': 5.5,
    'tests/web/test_web_dask.py::test_web_job_on_dask_whose_lease_is_lost_writes_nothing': 5.1,
    'tests/pipeline/test_workers.py::test_spawned_worker_compiles_new_kernels_with_one_thread': 5.0,
    'tests/integration/test_demo.py::test_demo_cli': 4.6,
    'tests/web/test_web_reliability.py::test_web_worker_killed_mid_job_completes_once[postgres]': 4.4,
    'tests/planning/test_electroporation.py::test_planner_ire_too_large_lesion_reported_with_reason': 4.2,
    'tests/export/test_export.py::test_dicom_input_case_is_referenced_not_rewritten': 4.2,
    'tests/web/test_web_dask.py::test_web_job_runs_on_dask_once_with_result_and_progress': 4.1,
    'tests/web/test_web_roles_audit.py::test_job_quota_per_case_and_per_user': 4.0,
    'tests/pipeline/test_plan.py::test_parallel_simulations_give_the_sequential_plan': 3.9,
    'tests/web/test_web_store.py::test_web_cli_serve_starts': 3.8,
    'tests/pipeline/test_shared_work.py::test_shared_work_in_workers_gives_the_sequential_plan': 3.8,
    'tests/report/test_report_html.py::test_write_reports_pdf_has_sections': 3.5,
    'tests/imaging/test_imaging_resample_insert.py::test_cli_insert_lesion_real_cases[totalseg-ct-dicom-inferior_vena_cava]': 3.5,
    'tests/followup/test_followup_cohort.py::test_followup_cohort_ltp_from_images': 3.5,
    'tests/followup/test_followup_demo.py::test_followup_fig2_demo_files': 3.4,
    'tests/followup/test_followup_pipeline.py::test_followup_cli_json_and_outcomes': 3.0,
    'tests/web/test_web_uploads.py::test_web_hostile_upload_corpus': 3.0,
    'tests/physics/test_bioheat_rfa.py::test_rfa_calibrated_ex_vivo_to_the_chart_and_in_vivo_ratio_published': 2.8,
    'tests/planning/test_thermal_planners.py::test_planner_rfa_cryo_onsynthetic_thermal_case': 2.7,
    'tests/planning/test_electroporation.py::test_planner_ire_demo_lesion_with_margin': 2.6,
    'tests/phantom/test_phantom_demo.py::test_all_demo_cases_ship_and_validate': 2.6,
    'tests/imaging/test_imaging_bad_inputs.py::test_bad_input_through_the_console_script[labels-mirrored-x-symmetric-grid]': 2.5,
    'tests/imaging/test_imaging_bad_inputs.py::test_bad_input_through_the_console_script[rtstruct-outside-image-z]': 2.4,
    'tests/report/test_report_summary.py::test_single_lesion_main_report_at_most_8_pages': 2.4,
    'tests/report/test_report_html.py::test_report_html_is_well_formed_and_self_contained': 2.4,
    'tests/pipeline/test_plan.py::test_plan_case_folder_writes_valid_plan_json_and_reports': 2.4,
    'tests/phantom/test_phantom_demo.py::test_figure_cases_tell_the_seed_story': 2.4,
    'tests/imaging/test_imaging_bad_inputs.py::test_bad_input_through_the_console_script[labels-yaml-duplicate-key]': 2.3,
    'tests/imaging/test_imaging_bad_inputs.py::test_bad_input_through_the_console_script[path-image-etc-passwd]': 2.3,
    'tests/physics/test_bioheat_rfa.py::test_rfa_switched_three_electrodes_energy_matches_switching_monopolar_in_vivo': 2.3,
    'tests/pipeline/test_workers.py::test_children_start_with_one_blas_thread_and_the_parent_env_is_restored': 2.3,
    'tests/test_architecture.py::test_layers_import_only_downwards': 2.3,
    'tests/physics/test_zone_uncertainty.py::test_cryo_band_rederived_from_the_physics_at_the_parameter_bounds': 2.3,
    'tests/imaging/test_imaging_bad_inputs.py::test_bad_input_through_the_console_script[image-gz-truncated-half]': 2.2,
    'tests/imaging/test_imaging_bad_inputs.py::test_bad_input_through_the_console_script[case-yaml-latin1]': 2.2,
    'tests/planning/test_thermal_planners.py::test_planner_demo_large_lesion_not_one_rfa_electrode': 2.2,
    'tests/web/test_web_reliability.py::test_web_concurrent_decisions_all_stored[postgres]': 2.2,
    'tests/web/test_web_api.py::test_web_idempotent_job_key[postgres]': 2.2,
    'tests/imaging/test_imaging_resample_insert.py::test_cli_missing_patient_message': 2.2,
    'tests/web/test_web_api.py::test_web_idempotent_job_key[sqlite]': 2.2,
    'tests/planning/test_ibt.py::test_figure1_phantom_case': 2.1,
    'tests/physics/test_cryo.py::test_cryo_probe_calibration_reproduces_single_probe': 2.1,
    'tests/report/test_report_summary.py::test_every_option_keeps_its_evidence_level_and_radiation_top_tier_shows_dvh_with_d90': 2.0,
    'tests/anatomy/test_anatomy_properties.py::test_gap_and_calibre_within_one_voxel': 2.0,
    'tests/test_architecture.py::test_imported_third_party_packages_are_declared': 2.0,
    'tests/web/test_web_reliability.py::test_web_concurrent_decisions_all_stored[sqlite]': 1.9,
    'tests/planning/test_ibt_target_geometry.py::test_plan_for_robustness_holds_under_3mm_shifts': 1.8,
    'tests/web/test_web_api.py::test_web_quick_preview_real_chain': 1.8,
    'tests/planning/test_thermal.py::test_mwa_margin_towards_a_6mm_vessel_comes_from_the_physics': 1.8,
    'tests/physics/test_bioheat_rfa.py::test_rfa_perfusion_lowers_the_zone': 1.8,
    'tests/physics/test_zone_uncertainty.py::test_ire_band_from_the_calibration_data_threshold_range': 1.7,
    'tests/web/test_web_roles_audit.py::test_concurrent_identical_plan_posts_one_job[postgres]': 1.7,
    'tests/web/test_web_roles_audit.py::test_concurrent_identical_plan_posts_one_job[sqlite]': 1.7,
    'tests/followup/test_followup_pipeline.py::test_followup_predicted_vs_observed_from_recorded_plan': 1.7,
    'tests/physics/test_bioheat_rfa.py::test_rfa_several_electrodes_share_one_generator_by_switching': 1.7,
    'tests/physics/test_cryo.py::test_cryo_lethal_volume_grid_converged': 1.7,
    'tests/report/test_report_html.py::test_report_html_sections_and_metric_text': 1.6,
    'tests/followup/test_followup_cohort.py::test_followup_outcomes_files_and_references': 1.6,
    'tests/imaging/test_imaging_real_data_e2e.py::test_totalsegmentator_ct_import_capsule_entry_and_plan': 1.5,
    'tests/web/test_web_api.py::test_web_upload_plan_decide_export[postgres]': 1.5,
    'tests/board/test_board_preferences.py::test_preferences_never_lift_contraindicated': 1.5,
    'tests/web/test_web_api.py::test_web_upload_plan_decide_export[sqlite]': 1.5,
    'tests/test_architecture.py::test_no_dynamic_imports_of_latplan_modules': 1.5,
    'tests/planning/test_ibt_rtplan_second_check.py::test_rtdose_matches_independent_dose_from_rtplan': 1.4,
    'tests/anatomy/test_anatomy_phantom.py::test_vessel_calibre_matches_built_calibre[hepatic_vein_right]': 1.4,
    'tests/followup/test_followup_demo.py::test_followup_fig2_residual_rim_found': 1.3,
    'tests/web/test_web_exports.py::test_web_seg_export_round_trip': 1.3,
    'tests/imaging/test_imaging_real_data_e2e.py::test_dicompyler_rtstruct_case_planned': 1.3,
    'tests/web/test_web_api.py::test_web_append_only_tables[postgres]': 1.3,
    'tests/web/test_web_roles_audit.py::test_idempotent_uploads_and_decisions': 1.3,
    'tests/web/test_web_api.py::test_web_roles[postgres]': 1.3,
    'tests/web/test_web_api.py::test_web_preference_weights_are_job_parameters': 1.3,
    'tests/web/test_web_roles_audit.py::test_viewer_cannot_download_but_reads_are_audited': 1.3,
    'tests/web/test_web_roles_audit.py::test_failed_export_logged_as_failure': 1.3,
    'tests/web/test_web_login_limits.py::test_one_verification_on_every_path': 1.2,
    'tests/anatomy/test_anatomy_phantom.py::test_vessel_calibre_matches_built_calibre[portal_vein]': 1.2,
    'tests/planning/test_ibt_second_check.py::test_dose_grid_matches_independent_tg43_beyond_5mm': 1.2,
    'tests/anatomy/test_anatomy_phantom.py::test_vessel_calibre_matches_built_calibre[hepatic_vein_middle]': 1.2,
    'tests/web/test_web_api.py::test_web_board_isolation[postgres]': 1.2,
    'tests/web/test_web_api.py::test_web_roles[sqlite]': 1.2,
    'tests/web/test_web_api.py::test_web_append_only_tables[sqlite]': 1.2,
    'tests/web/test_web_api.py::test_web_failed_job_shown_and_requeued': 1.2,
    'tests/test_architecture.py::test_no_import_cycles': 1.2,
    'tests/web/test_web_crash.py::test_worker_whose_lease_was_taken_writes_nothing': 1.2,
    'tests/web/test_web_crash.py::test_heartbeat_notices_a_lost_lease': 1.2,
    'tests/web/test_web_headers_limits.py::test_security_headers_everywhere': 1.2,
    'tests/web/test_web_roles_audit.py::test_last_plan_stays_visible_while_a_new_job_runs': 1.2,
    'tests/batch/test_runner.py::test_cohort_table_matches_specs': 1.1,
    'tests/followup/test_followup_pipeline.py::test_followup_pipeline_tumour_rigid_and_no_registration': 1.1,
    'tests/web/test_web_upload_confinement.py::test_stored_upload_holds_every_file_planning_reads': 1.1,
    'tests/physics/test_bioheat.py::test_bioheat_steady_point_source_perfused_within_2_percent': 1.1,
    'tests/physics/test_bioheat.py::test_bioheat_zone_diameter_grid_convergence': 1.1,
    'tests/web/test_web_crash.py::test_running_job_rerun_only_after_lease_expiry': 1.1,
    'tests/web/test_web_fhir.py::test_web_fhir_export_conforms_to_claimed_mcode_profiles': 1.1,
    'tests/test_architecture.py::test_allow_list_only_names_current_offenders': 1.1,
    'tests/web/test_web_api.py::test_web_board_isolation[sqlite]': 1.1,
    'tests/test_architecture.py::test_no_function_longer_than_120_lines': 1.1,
    'tests/web/test_web_uploads.py::test_web_dicom_study_upload': 1.1,
    'tests/pipeline/test_workers.py::test_every_numba_kernel_is_cached': 1.1,
    'tests/test_architecture.py::test_long_function_allow_list_only_names_current_offenders': 1.1,
    'tests/web/test_web_headers_limits.py::test_data_files_owner_only': 1.1,
    'tests/followup/test_followup_pipeline.py::test_followup_pipeline_registration_and_margin': 1.0,
    'tests/board/test_board_demo_cases.py::test_demo_seg6_thermal_first': 1.0,
    'tests/export/test_export.py::test_stl_mesh_volume_and_position_in_lps': 1.0,
    'tests/imaging/test_imaging_real_data_e2e.py::test_dcmqi_dicom_seg_liver_planned': 1.0,
    'tests/physics/test_electroporation.py::test_ire_lethal_field_calibrated_in_vivo_and_checked_on_held_out_arm': 1.0,
    'tests/physics/test_bioheat_mwa.py::test_mwa_leave_one_out_chart_rows_within_20_percent': 1.0,
    'tests/physics/test_cryo.py::test_cryo_subvoxel_probe_matches_pennes_cylinder': 1.0,
    'tests/web/test_web_login_limits.py::test_forwarded_for_not_trusted_by_default': 1.0,
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
    """``{node id: (wall s, cpu s, 1-min load)}`` of a :class:`TimingLog` file. Under pytest-xdist the
    controller logs each test too, after the worker that ran it, with the worker's wall time but
    almost no CPU of its own: of several lines of one node id the one with the most CPU seconds wins
    (the worker's; before round 6 the controller's last line did, and every test looked idle)."""
    out: dict[str, tuple[float, float, float]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        wall, cpu, load, nodeid = line.split("\t", 3)
        row = (float(wall), float(cpu), max(float(load), 1.0))
        if nodeid not in out or row[1] > out[nodeid][1]:
            out[nodeid] = row
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
