"""Per-lesion work computed once (issue [H] part 7): a lesion's trajectory is searched once and read
by every planner of the lesion, in this process and in worker processes; the cache changes no plan.

References: a call counter on the uncached trajectory search (monkeypatch; the expected count is
the number of lesions planned — the thermal and electroporation planners of one lesion read one
path); the uncached search on a fresh case object (no memo), exact equality; the sequential plan
of a fresh case for the parallel one (plan.json exact, up to wall-clock fields); the modality
specs' own ``expected_cost`` for the job order (longest-processing-time rule).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from latplan.anatomy.geometry import case_geometry
from latplan.modalities.registry import MODALITIES
from latplan.phantom import build_demo_case
from latplan.pipeline import PlanOptions, SimulationJob, plan_case
from latplan.pipeline.stages import longest_first
from latplan.planning import applicators, ibt
from latplan.planning.applicators import find_trajectory, trajectory_key

CASE = "seg6-peripheral-18mm"


def _coarse():  # type: ignore[no-untyped-def]
    return build_demo_case(CASE, voxel_mm=6.0)


def _count_searches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    search = applicators._find_trajectory

    def counting(geometry, lesion_id, n_directions):  # type: ignore[no-untyped-def]
        calls.append(lesion_id)
        return search(geometry, lesion_id, n_directions)

    monkeypatch.setattr(applicators, "_find_trajectory", counting)
    return calls


def _same_trajectory(a: applicators.Trajectory, b: applicators.Trajectory) -> None:
    for name in ("target_mm", "direction", "entry_mm"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.depth_mm, a.safe, a.crossed, a.liver_path_mm, a.note, a.verified) == \
           (b.depth_mm, b.safe, b.crossed, b.liver_path_mm, b.note, b.verified)


def test_trajectory_is_searched_once_per_lesion_and_equals_the_uncached_search(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    case = _coarse()
    calls = _count_searches(monkeypatch)
    first = find_trajectory(case, "lesion_1")
    second = find_trajectory(case, "lesion_1", geometry=case_geometry(case))
    assert calls == ["lesion_1"]
    _same_trajectory(first, second)
    first.note = "changed by a caller"  # each call returns its own copy: the cache is not touched
    assert find_trajectory(case, "lesion_1").note == second.note
    fresh = _coarse()  # a new case object: nothing cached
    _same_trajectory(second, applicators._find_trajectory(case_geometry(fresh), "lesion_1", 600))
    assert len(calls) == 2


def test_every_planner_of_a_lesion_reads_one_trajectory(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """In-process pipeline with two trajectory-based planners: one search per lesion, not one per planner."""
    case = _coarse()
    calls = _count_searches(monkeypatch)
    proposal = plan_case(case, PlanOptions(simulate=frozenset({"cryo", "mwa"}), workers=1))
    sims = {o["modality"]: o["simulation"] for les in proposal.plan_json["lesions"] for o in les["options"]}
    assert sims["cryo"] is not None and sims["mwa"] is not None
    assert calls == ["lesion_1"]


def test_a_pickled_geometry_carries_the_memo() -> None:
    case = _coarse()
    geometry = case_geometry(case)
    t = find_trajectory(case, "lesion_1", geometry=geometry)
    copy = pickle.loads(pickle.dumps(geometry))
    assert copy.has_memo(trajectory_key("lesion_1"))
    _same_trajectory(find_trajectory(copy.case, "lesion_1", geometry=copy), t)


def test_catheter_obstacles_are_computed_once_per_case(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The catheters' obstacle map does not depend on the lesion: one computation for the case."""
    case = _coarse()
    calls: list[float] = []
    build = ibt._forbidden_distance_uncached

    def counting(geometry, vessel_min_calibre_mm, lesion_names, stride):  # type: ignore[no-untyped-def]
        calls.append(vessel_min_calibre_mm)
        return build(geometry, vessel_min_calibre_mm, lesion_names, stride)

    monkeypatch.setattr(ibt, "_forbidden_distance_uncached", counting)
    stride = np.ones(3, int)
    a = ibt._forbidden_distance(case, 3.0, set(case.lesion_ids), stride)
    b = ibt._forbidden_distance(case, 3.0, set(case.lesion_ids), stride, case_geometry(case))
    assert calls == [3.0]
    np.testing.assert_array_equal(a[0], b[0])
    ibt._forbidden_distance(case, 5.0, set(case.lesion_ids), stride)  # another calibre limit: its own map
    assert calls == [3.0, 5.0]


def test_longest_jobs_start_first() -> None:
    """Longest-processing-time order by the specs' expected cost; equal costs keep job order."""
    codes = [c for c, s in MODALITIES.items() if s.planner is not None]
    jobs = [SimulationJob(lid, code, {}) for lid in ("lesion_1", "lesion_2") for code in codes]
    order = longest_first(jobs)
    assert sorted(order) == list(range(len(jobs)))
    costs = [MODALITIES[jobs[i].modality].expected_cost for i in order]
    assert costs == sorted(costs, reverse=True)
    for n in range(len(order) - 1):
        if costs[n] == costs[n + 1]:
            assert order[n] < order[n + 1]


@pytest.mark.slow
def test_shared_work_in_workers_gives_the_sequential_plan() -> None:
    """Two fresh case objects (no memo): workers=2 (trajectory searched in phase 1, sent with the jobs,
    longest jobs first) gives exactly the sequential plan.json; the parent's geometry holds the path."""
    from tests.pipeline.test_plan import _without_timings

    wanted = frozenset({"cryo", "sbrt", "ect"})
    one = plan_case(_coarse(), PlanOptions(simulate=wanted, workers=1)).plan_json
    case = _coarse()
    two = plan_case(case, PlanOptions(simulate=wanted, workers=2)).plan_json
    assert _without_timings(two) == _without_timings(one)
    assert case_geometry(case).has_memo(trajectory_key("lesion_1"))
