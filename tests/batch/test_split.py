"""A large case (≥ 2 simulation jobs) is planned on Dask as one assess task, one task per
lesion × modality and one finishing task — and gives the plan.json of the in-process pipeline.

Independent references: the phantom spec (``phantom.yaml``: the lesion ids the generator placed)
for the lesion × modality tasks; the in-process pipeline (``latplan.pipeline.plan_case_folder``, no
Dask) for plan.json, compared key by key except what differs run to run by design (``created``,
the wall times ``timings_s``, ``runtime_s``, ``wall_s``, ``solve_time_s``). Exact equality otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from latplan.batch import ClusterSettings, plan_cohort, read_manifest
from latplan.batch.jobs import CaseJob, CasePrep, start_case_job
from latplan.imaging.case_folder import load_case_folder
from latplan.pipeline import PlanOptions, plan_case_folder, prepare
from tests.batch.conftest import copy_cases

#: the two fastest planners (dose screen and Y-90 activity): the split, not the physics, is tested
SIMULATED = frozenset({"sbrt", "tare"})
OPTIONS = PlanOptions(simulate=SIMULATED, pdf=False)
RUN_TO_RUN = {"created", "timings_s", "runtime_s", "wall_s", "solve_time_s"}


def _strip(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in RUN_TO_RUN}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def _lesion_ids(case_dir: Path) -> list[str]:
    spec = yaml.safe_load((case_dir / "phantom.yaml").read_text(encoding="utf-8"))
    return [str(les["id"]) for les in spec["lesions"]]


@pytest.fixture(scope="module")
def multi_lesion(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    name = max(sorted(p.name for p in tiny_cohort.iterdir()), key=lambda n: len(_lesion_ids(tiny_cohort / n)))
    assert len(_lesion_ids(tiny_cohort / name)) >= 2, "the tiny cohort (seed 3) has a multi-lesion case"
    return copy_cases(tiny_cohort, tmp_path_factory.mktemp("split") / "in", names=[name])


def test_first_task_of_a_large_case_returns_its_lesion_by_modality_jobs(multi_lesion: Path, tmp_path: Path) -> None:
    case_dir = next(multi_lesion.iterdir())
    prep = start_case_job(CaseJob(case_dir.name, case_dir, tmp_path, OPTIONS, split_min_jobs=2))
    assert isinstance(prep, CasePrep)
    keys = [(j.lesion_id, j.modality) for j in prep.jobs]
    assert len(keys) == len(set(keys)) >= 2
    assert set(keys) <= {(lid, m) for lid in _lesion_ids(case_dir) for m in SIMULATED}
    assert {lid for lid, _m in keys} == set(_lesion_ids(case_dir))  # every lesion gets its own tasks
    assert not (tmp_path / "cases").exists()  # nothing published by the first task of a split case


@pytest.mark.slow
def test_split_case_gives_the_in_process_plan(multi_lesion: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    case_dir = next(multi_lesion.iterdir())
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", scheduler_port=0,
                      dashboard_address=None) as cluster:
        run = plan_cohort(multi_lesion, tmp_path / "out", OPTIONS, ClusterSettings(scheduler=cluster.scheduler_address))
    assert [(o.name, o.status) for o in run.outcomes] == [(case_dir.name, "planned")]
    manifest = read_manifest(tmp_path / "out" / "cases" / case_dir.name)
    assert manifest is not None and manifest.status == "ok"
    split = json.loads((tmp_path / "out" / "cases" / case_dir.name / "plan.json").read_text(encoding="utf-8"))
    n_jobs = len(prepare(load_case_folder(case_dir), OPTIONS).jobs)
    assert n_jobs >= 2 and manifest.tasks == 1 + n_jobs + 1  # assess, one per lesion × modality, finish
    local = plan_case_folder(case_dir, tmp_path / "local", OPTIONS)
    expected = json.loads(local.files["plan_json"].read_text(encoding="utf-8"))
    assert _strip(split) == _strip(expected)
    assert manifest.input_sha256 == local.input_sha256
