"""IBT catheters and the field of view ([L] skin and entry; issue 16 part 4).

Reference: geometry. A straight catheter path can be verified on an image only where the image shows it
leaving the body; when the body fills the image to its edge, no path can leave it inside the image, so
every catheter must read "cannot be verified" — never safe. On the test phantom (a body cylinder well
inside the grid) every lateral path leaves the body inside the image.
"""

from __future__ import annotations

import numpy as np
from rad_case_helpers import make_case

from latplan.case import Case
from latplan.planning.ibt import plan_ibt


def _body_fills_image(case: Case) -> Case:
    lab = np.asarray(case.labels.array).copy()
    lab[lab == 0] = 1  # "body" everywhere the phantom had air: the image edge cuts through the body
    image = case.image.with_array(np.full(lab.shape, 40, np.int16))
    return Case(case.patient, image, case.labels.with_array(lab), case.label_table)


def test_catheters_leaving_the_body_inside_the_image_are_verified() -> None:
    plan = plan_ibt(make_case(spacing_mm=3.0, shape=(40, 54, 54)), "lesion_1")
    assert plan.metrics["trajectory_verified"] is True
    assert not any("cannot be verified" in c for c in plan.caveats)


def test_catheters_in_a_body_cut_by_the_image_edge_cannot_be_verified() -> None:
    plan = plan_ibt(_body_fills_image(make_case(spacing_mm=3.0, shape=(40, 54, 54))), "lesion_1")
    assert plan.metrics["trajectory_verified"] is False
    unverified = [c for c in plan.caveats if "cannot be verified" in c]
    assert len(unverified) == plan.metrics["n_catheters"]
    assert all("abdominal wall" in c for c in unverified)
