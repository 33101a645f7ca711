"""The typed stages of latplan.pipeline: prepare/assess → simulation_jobs → run_simulation → finish.

References: the rule set's eligibility in the assessment (an option the rules contraindicate is not
simulated; its plan.json says "not simulated: contraindicated by rule"), the ``simulate`` option
(only the named modalities), and the demo case's one lesion (``lesion_1``). Exact set equality.
"""

from __future__ import annotations

import pickle

import pytest

from latplan.case.vocabulary import Eligibility
from latplan.errors import PlanningError
from latplan.phantom import build_demo_case
from latplan.pipeline import PlanOptions, SimulationJob, finish, prepare


@pytest.fixture(scope="module")
def prepared():  # type: ignore[no-untyped-def]
    case = build_demo_case("seg6-peripheral-18mm", voxel_mm=6.0)
    return prepare(case, PlanOptions(simulate=frozenset({"sbrt", "mwa"}), pdf=False))


def test_jobs_are_the_wanted_not_contraindicated_lesion_by_modality_pairs(prepared) -> None:  # type: ignore[no-untyped-def]
    options = prepared.assessment.options
    expected = {(lid, o.modality) for lid, opts in options.items() for o in opts
                if o.modality in {"sbrt", "mwa"} and o.eligibility != Eligibility.CONTRAINDICATED}
    assert {j.key for j in prepared.jobs} == expected
    assert all(isinstance(j, SimulationJob) for j in prepared.jobs)
    assert {j.lesion_id for j in prepared.jobs} <= {"lesion_1"}
    # a job and the assessment travel between processes (Dask tasks): both pickle
    assert pickle.loads(pickle.dumps(prepared.jobs[0])) == prepared.jobs[0]
    assert pickle.loads(pickle.dumps(prepared.assessment)).options.keys() == options.keys()


def test_finish_refuses_missing_simulation_results(prepared) -> None:  # type: ignore[no-untyped-def]
    assert prepared.jobs, "seg6 has at least one wanted simulation"
    with pytest.raises(PlanningError, match="no simulation result"):
        finish(pickle.loads(pickle.dumps(prepared.assessment)), [], prepared.case)
