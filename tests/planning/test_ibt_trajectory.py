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


def _cropped_on_minus_x(case: Case, keep_from_i: int) -> Case:
    """The same phantom with the image cut at column ``keep_from_i`` (−x side): the body reaches that edge."""
    aff = np.array(case.labels.affine, float)
    aff[:3, 3] = aff[:3, 3] + aff[:3, :3] @ np.array([0.0, 0.0, float(keep_from_i)])  # (k, j, i) → shift along i
    lab = np.asarray(case.labels.array)[:, :, keep_from_i:].copy()
    img = np.asarray(case.image.array)[:, :, keep_from_i:].copy()
    return Case(case.patient, case.image.__class__(img, aff), case.labels.__class__(lab, aff), case.label_table)


def test_placement_prefers_paths_with_the_skin_entry_on_the_image() -> None:
    """Reference: geometry. The image is cut 14 mm from the lesion on the −x side (the body runs into that edge),
    so the shortest path leaves the image there still inside the body — its entry is not skin and cannot be
    verified. With verifiable paths available (the body's skin is on the image in every other direction),
    every planned catheter's entry lies where the image shows the abdominal wall: trajectory_verified, no
    "cannot be verified" caveat, and each entry is inside the image."""
    case = _cropped_on_minus_x(make_case(spacing_mm=3.0, shape=(40, 54, 54)), 15)
    plan = plan_ibt(case, "lesion_1")
    assert plan.metrics["trajectory_verified"] is True
    assert not any("cannot be verified" in c for c in plan.caveats)
    shape = np.asarray(case.labels.shape)
    for app in plan.applicators:
        idx = case.labels.mm_to_index(np.asarray(app["entry_mm"], float))
        assert np.all(idx > -1.0) and np.all(idx < shape)  # the skin entry is on the image (±1 voxel)
