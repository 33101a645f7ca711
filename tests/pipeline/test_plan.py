"""latplan.pipeline: one chain load → measure → assess → simulate → rank → write.

References: the case folder's files themselves (sha256 by hashlib here, independently of the
pipeline), plan.schema.json (the plan.json contract), and the CLI's output files.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import jsonschema
import pytest

from latplan.board import plan_schema
from latplan.errors import CaseFolderError
from latplan.imaging.case_folder import save_case_folder
from latplan.knowledge.rules import default_rule_files
from latplan.phantom import build_demo_case
from latplan.pipeline import PlainProgress, PlanOptions, plan_case_folder

CASE = "seg6-peripheral-18mm"


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_case_folder(build_demo_case(CASE, voxel_mm=3.0), tmp_path_factory.mktemp("pipeline") / "case")


def _expected_sha256(case_dir: Path) -> str:
    """Independent recomputation: sha256 of each case file, then of each rule file (documented order)."""
    per_file = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in case_dir.iterdir() if p.is_file()}
    digest = hashlib.sha256(json.dumps(sorted(per_file.items())).encode("utf-8"))
    for path in default_rule_files():
        digest.update(path.name.encode("utf-8"))
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def test_plan_case_folder_writes_valid_plan_json_and_reports(case_dir: Path, tmp_path: Path) -> None:
    """Rules-only run (no simulation): plan.json validates against the schema, reports exist, the
    input hash covers every file read, progress counts the four stages in order."""
    lines = io.StringIO()
    result = plan_case_folder(case_dir, tmp_path / "out", PlanOptions(simulate=False, pdf=False), PlainProgress(lines))
    assert {"plan_json", "report_html", "patient_html"} <= set(result.files)  # + the report's own extras
    assert not {"report_pdf", "patient_pdf"} & set(result.files)  # pdf=False
    # the reports lie in OUT; the result files of [M] (volumes/, dicom/) in its sub-folders
    assert all(result.files[k].is_file() and result.files[k].parent == tmp_path / "out"
               for k in ("plan_json", "report_html", "patient_html"))
    # (dicom_image is the written image series: a folder)
    assert all(p.exists() and tmp_path / "out" in p.parents for p in result.files.values()), \
        [(k, p) for k, p in result.files.items() if not (p.exists() and tmp_path / "out" in p.parents)]
    doc = json.loads(result.files["plan_json"].read_text(encoding="utf-8"))
    jsonschema.validate(doc, plan_schema())
    assert doc["plan_json_version"] == "2.3"
    assert [les["id"] for les in doc["lesions"]] == ["lesion_1"]
    assert result.input_sha256 == _expected_sha256(case_dir)
    out = lines.getvalue().splitlines()
    assert out[0] == "[0/4] loading the case folder" and out[-1] == "[4/4] done"
    assert "[1/4] measuring" in out and "[3/4] writing reports" in out


def test_plan_case_folder_refuses_to_overwrite(case_dir: Path, tmp_path: Path) -> None:
    """An existing plan.json is kept unless overwrite is asked for; the message names the file and the fix."""
    (tmp_path / "plan.json").write_text("{}", encoding="utf-8")
    with pytest.raises(CaseFolderError, match=r"plan\.json exists already.*overwrite"):
        plan_case_folder(case_dir, tmp_path, PlanOptions(simulate=False, pdf=False))
    assert (tmp_path / "plan.json").read_text(encoding="utf-8") == "{}"


def _without_timings(doc: dict) -> dict:
    """plan.json without wall-clock fields (creation time, run times), which differ between runs."""
    text = json.dumps(doc, default=str)
    out = json.loads(text)
    out.pop("created"), out.pop("timings_s")

    def strip(x):  # type: ignore[no-untyped-def]
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not k.endswith(("runtime_s", "wall_s", "solve_time_s"))}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(out)


@pytest.mark.slow
def test_parallel_simulations_give_the_sequential_plan(case_dir: Path) -> None:
    """Invariance: lesion × modality simulations in 2 processes (one numba thread each) give the same
    plan.json as one process, up to wall-clock fields (reference: the sequential run; exact)."""
    from latplan.imaging.case_folder import load_case_folder
    from latplan.pipeline import plan_case

    case = load_case_folder(case_dir)
    wanted = frozenset({"ibt", "sbrt"})
    one = plan_case(case, PlanOptions(simulate=wanted, workers=1)).plan_json
    two = plan_case(case, PlanOptions(simulate=wanted, workers=2)).plan_json
    assert _without_timings(two) == _without_timings(one)
    sims = {o["modality"]: o["simulation"] for les in one["lesions"] for o in les["options"]}
    assert sims["ibt"] is not None and sims["sbrt"] is not None
