"""The seed's Figure 2 follow-up demo: residual rim after TACE at 3 months, re-planned for IBT."""

from __future__ import annotations

import numpy as np
import pytest

from latplan.followup.analysis import analyse_followup
from latplan.followup.demo import RESIDUAL_DIRECTION_LPS, build_fig2_followup
from latplan.followup.representation import case_for_timepoint
from latplan.followup.timepoints import load_baseline


@pytest.fixture(scope="module")
def fig2(tmp_path_factory):
    return build_fig2_followup(tmp_path_factory.mktemp("fig2") / "case", voxel_mm=4.0)


@pytest.mark.slow
def test_followup_fig2_residual_rim_found(fig2) -> None:
    """Reference: seed Fig. 2C — subtotal devascularisation with a vital margin on the right
    lateral-apical side. After registering the 3-month scan (known motion 1.5°/−1°/2°,
    (4, −3, 5) mm; TRE ≤ 1 mm), the analysis reports residual tumour at the lesion, and the
    residue lies on the patient's right (−x) and apical (+z) side of the baseline tumour."""
    a = analyse_followup(fig2, mode="rigid", save_transforms=False)
    tp = a.timepoints[0]
    assert tp.registration is not None and tp.registration.max_tre_mm <= 1.0
    assert tp.local_status["lesion_1"]["status"] == "residual_tumour"
    assert tp.local_status["lesion_1"]["modality"] == "tace"
    base = load_baseline(fig2)
    case = case_for_timepoint(fig2, "3m")
    c_base = base.image.index_to_mm(np.argwhere(base.mask_array("lesion_1"))).mean(axis=0)
    c_res = case.image.index_to_mm(np.argwhere(case.mask_array("lesion_1"))).mean(axis=0)
    # undo the known patient motion approximately: compare in the registered frame
    m = np.linalg.inv(tp.registration.matrix)
    c_res_base = m[:3, :3] @ c_res + m[:3, 3]
    assert float((c_res_base - c_base) @ RESIDUAL_DIRECTION_LPS) > 3.0


@pytest.mark.slow
def test_followup_fig2_replanned_for_ibt(fig2) -> None:
    """Re-presentation: the 3-month case lists the TACE among prior therapies and the board ([D])
    produces an IBT plan for the residue (lesion_1 = the residual rim, smaller than the baseline tumour).
    Only IBT is simulated: the IBT plan is what is asserted (every planner of a demo case runs in
    tests/integration/test_demo.py)."""
    from latplan.board import plan_case

    case = case_for_timepoint(fig2, "3m")
    assert "tace" in [p.kind for p in case.patient.prior_therapies]
    base = load_baseline(fig2)
    assert 0 < case.mask_array("lesion_1").sum() < base.mask_array("lesion_1").sum()
    proposal = plan_case(case, simulate={"ibt"})
    assert ("lesion_1", "ibt") in proposal.plans


@pytest.mark.slow
def test_followup_fig2_demo_files(tmp_path) -> None:
    """run_fig2_followup_demo (for `latplan demo`) writes the case, followup.json (valid JSON with
    the residual status), response.png and the plannable 3-month case folder."""
    import json

    from latplan.imaging.case_folder import load_case_folder
    from latplan.pipeline import run_fig2_followup_demo

    files = run_fig2_followup_demo(tmp_path / "demo", voxel_mm=4.0, plan=False)
    summary = json.loads(files["followup_json"].read_text())
    assert summary["timepoints"][0]["local_status"]["lesion_1"]["status"] == "residual_tumour"
    assert files["response_png"].stat().st_size > 1000
    assert "tace" in [p.kind for p in load_case_folder(files["case_3m"]).patient.prior_therapies]
