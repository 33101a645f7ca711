"""`plan_cohort` on a LocalCluster: a failing case is recorded and the rest go on; a rerun plans
nothing unchanged (content and mtimes kept); the cohort table matches the phantom specs.

Independent references: the phantom specs (``phantom.yaml``: lesion ids, segments, diameters —
the generator's truth, measured back by latplan's lesion measurement to within two 6 mm voxels);
sha256 and ``st_mtime_ns`` of every output file (POSIX stat) for "unchanged"; pandas reading
back the parquet file (pyarrow) and the CSV for table equality.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from latplan._version import __version__
from latplan.batch import ClusterSettings, plan_cohort, read_manifest
from latplan.imaging.errors import NotLatplanOutputError
from latplan.pipeline import PlanOptions
from tests.batch.conftest import VOXEL_MM, copy_cases

OPTIONS = PlanOptions(simulate=False, pdf=False)
CLUSTER = ClusterSettings(workers=2, threads_per_worker=1)


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def warm_cluster():
    """A LocalCluster kept for the reruns (the first run starts its own, the default path)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", scheduler_port=0,
                      dashboard_address=None) as cluster:
        yield ClusterSettings(scheduler=cluster.scheduler_address)


@pytest.fixture(scope="module")
def first_run(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("runner")
    cases = copy_cases(tiny_cohort, root / "in", names=sorted(p.name for p in tiny_cohort.iterdir())[:2])
    broken = cases / "BROKEN-1"
    shutil.copytree(next(cases.iterdir()), broken)
    (broken / "labels.nii.gz").unlink()  # a case folder without its label map
    out = root / "out"
    run = plan_cohort(cases, out, OPTIONS, CLUSTER)
    return cases, out, run


def test_foreign_output_folder_refused(tiny_cohort: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("someone else's folder")
    with pytest.raises(NotLatplanOutputError, match="not the output of"):
        plan_cohort(tiny_cohort, tmp_path, OPTIONS, CLUSTER)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written


@pytest.mark.slow
def test_failing_case_recorded_rest_planned(first_run) -> None:
    cases, out, run = first_run
    status = {o.name: o.status for o in run.outcomes}
    assert status == {"BROKEN-1": "failed", **{p.name: "planned" for p in cases.iterdir() if p.name != "BROKEN-1"}}
    manifest = read_manifest(out / "cases" / "BROKEN-1")
    assert manifest is not None and manifest.status == "failed"
    assert manifest.error_type == "CaseFolderError"  # the named LatplanError, not a traceback
    assert "label" in (manifest.error or "") and str(cases / "BROKEN-1") in (manifest.error or "")
    assert sorted(p.name for p in (out / "cases" / "BROKEN-1").iterdir()) == ["manifest.json"]
    for name, st in status.items():
        if st == "planned":
            m = read_manifest(out / "cases" / name)
            assert m is not None and m.status == "ok" and m.latplan_version == __version__
            assert m.input_sha256 and len(m.input_sha256) == 64
            assert {"plan.json", "report.html", "patient.html"} <= set(m.files)
    assert not (out / ".partial").exists()


@pytest.mark.slow
def test_rerun_plans_nothing_unchanged(first_run, warm_cluster: ClusterSettings) -> None:
    cases, out, _ = first_run
    good = [p.name for p in cases.iterdir() if p.name != "BROKEN-1"]
    before = {name: _snapshot(out / "cases" / name) for name in good}
    rerun = plan_cohort(cases, out, OPTIONS, warm_cluster)
    status = {o.name: o.status for o in rerun.outcomes}
    assert all(status[name] == "skipped" for name in good)
    assert status["BROKEN-1"] == "failed"  # failed cases are retried, and fail again with the same error
    for name in good:
        assert _snapshot(out / "cases" / name) == before[name]  # same bytes, same mtimes

    changed = good[0]
    case_yaml = cases / changed / "case.yaml"
    data = yaml.safe_load(case_yaml.read_text())
    data["patient"]["age"] = int(data["patient"]["age"]) + 1
    case_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    third = plan_cohort(cases, out, OPTIONS, warm_cluster)
    status = {o.name: o.status for o in third.outcomes}
    assert status[changed] == "planned"
    assert all(status[name] == "skipped" for name in good[1:])
    assert _snapshot(out / "cases" / good[1]) == before[good[1]]


@pytest.mark.slow
def test_cohort_table_matches_specs(first_run) -> None:
    cases, out, run = first_run
    assert run.results is not None
    df = pd.read_parquet(out / "cohort.parquet")
    csv = pd.read_csv(out / "cohort.csv")
    assert list(df.columns) == list(csv.columns) and len(df) == len(csv)
    pd.testing.assert_series_equal(df["max_diameter_mm"], csv["max_diameter_mm"], check_exact=False, rtol=1e-12)
    for case in (p for p in cases.iterdir() if p.name != "BROKEN-1"):
        spec = yaml.safe_load((case / "phantom.yaml").read_text())
        given = {t["lesion"]: t["modality"] for t in yaml.safe_load((case / "treatments.yaml").read_text())["treatments"]}
        rows = df[df["case"] == case.name].set_index("lesion")
        assert sorted(rows.index) == sorted(les["id"] for les in spec["lesions"])
        for les in spec["lesions"]:
            row = rows.loc[les["id"]]
            assert row["segment"].split("/")[0] == les["segment"]
            assert abs(row["max_diameter_mm"] - les["diameter_mm"]) <= 2 * VOXEL_MM
            assert row["given_modality"] == given[les["id"]]
            assert row["primary"] == spec["patient"]["primary"]
            assert isinstance(row["top_option"], str) and row[f"{row['top_option']}_rank"] == 1
            assert row["mwa_tier"] in {"indicated", "eligible", "conditional", "relative_contraindication",
                                       "not_recommended", "contraindicated", "refer", "relative"}
            assert pd.isna(row["mwa_min_margin_mm"])  # planned without simulations: unknown, not zero
    index = (out / "index.html").read_text()
    for case in (p.name for p in cases.iterdir() if p.name != "BROKEN-1"):
        assert f'href="cases/{case}/report.html"' in index and (out / "cases" / case / "report.html").is_file()
    assert "CaseFolderError" in index and (out / "figures" / "eligibility.png").is_file()
    assert "km_agree.png" in index  # synthetic cases carry outcomes.yaml: the KM figure is drawn
