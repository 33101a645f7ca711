"""insert-lesion's default centre respects the image edge and the organ's intensity (issue 13 part 3).

References: analytic voxel geometry (a sphere of radius r centred n voxels of spacing s from the face voxels
touches them when n·s ≤ r; exact to the grid), the sphere volume 4/3·π·r³ (tolerance 12 %: voxel-centre
discretisation at 3 mm of a 20 mm sphere), and the real TotalSegmentator CT
(../shared/data/external/totalseg-ct-3mm, wasserth/TotalSegmentator @0e65a448, Apache-2.0) whose top slice cuts
the liver (data README): round 2 put the default 20 mm lesion on that cut face (2.8 ml, half a lesion).
"""

from __future__ import annotations

import numpy as np
import pytest

from latplan.case import Case, LabelTable, Patient
from latplan.imaging.errors import LesionOutsideOrganError
from latplan.imaging.insert import EDGE_CLEARANCE_MM, insert_lesion
from latplan.imaging.volume import Volume


def _case(shape: tuple[int, int, int], liver: tuple[slice, slice, slice], hu: np.ndarray | None = None) -> Case:
    lab = np.zeros(shape, np.int16)
    lab[liver] = 1
    img = np.full(shape, 60.0, np.float32) if hu is None else hu
    table = LabelTable.from_mapping({1: "liver"})
    return Case(Patient(id="INS-C", primary="colorectal"), Volume(img, np.eye(4)), Volume(lab, np.eye(4)), table)


def _faces_touched(mask: np.ndarray) -> list[str]:
    idx = np.argwhere(mask)
    out = [f"axis {a} low" for a in range(3) if idx[:, a].min() == 0]
    return out + [f"axis {a} high" for a in range(3) if idx[:, a].max() == mask.shape[a] - 1]


def test_liver_cut_by_the_image_face_gets_a_whole_lesion():
    """Liver k 10..39 of 40 (cut by the top face; its deepest point ignoring the face lies on it). A 20 mm
    sphere by default: no voxel on any face, ≥ r + 5 mm from the face voxels, all voxels liver, volume ≈ 4.19 ml."""
    case = _case((40, 60, 60), (slice(10, 40), slice(5, 55), slice(5, 55)))
    placed = insert_lesion(case, None, 20.0)
    lesion = placed.mask_array("lesion_1")
    assert _faces_touched(lesion) == []
    centre = np.argwhere(lesion).mean(axis=0)
    assert 39 - centre[0] >= 10.0 + EDGE_CLEARANCE_MM - 1e-9
    assert case.mask_array("liver")[lesion].all()
    assert lesion.sum() * 1e-3 == pytest.approx(4 / 3 * np.pi, rel=0.12)


def test_fat_inside_the_segmentation_does_not_attract_the_centre():
    """A 3-slice slab (1 mm, like the dcmqi SEG) whose liver mask holds a fat band (−100 HU) at one side: every
    voxel ties on depth in z; the default 3 mm lesion lands on liver-like tissue (60 HU in the source image)."""
    hu = np.full((3, 80, 80), 60.0, np.float32)
    hu[:, 5:20, :] = -100.0
    case = _case((3, 80, 80), (slice(0, 3), slice(5, 75), slice(5, 75)), hu)
    placed = insert_lesion(case, None, 3.0)
    lesion = placed.mask_array("lesion_1")
    assert lesion.sum() >= 8
    assert float(case.image.array[lesion].min()) == 60.0


def test_image_thinner_than_the_lesion_asks_for_a_centre():
    """A 3-slice 1 mm slab cannot hold a 10 mm sphere: a named error that says to pass --at."""
    case = _case((3, 80, 80), (slice(0, 3), slice(5, 75), slice(5, 75)))
    with pytest.raises(LesionOutsideOrganError, match=r"does not fit inside this image.*--at"):
        insert_lesion(case, None, 10.0)


@pytest.mark.shared_data
def test_real_ct_default_lesion_is_whole(shared_data):
    """The real cropped CT: the default 20 mm lesion no longer touches the cut face (round 2: 2.8 ml); its volume
    is the sphere's within the discretisation tolerance and it replaces liver tissue only (≥ 0 HU before)."""
    from latplan.anatomy import measure_case
    from latplan.imaging.case_folder import load_case_folder

    case = load_case_folder(shared_data / "external" / "totalseg-ct-3mm", patient={"id": "TS-3MM", "primary": "colorectal"})
    placed = insert_lesion(case, None, 20.0)
    lesion = placed.mask_array("lesion_1")
    assert _faces_touched(lesion) == []
    assert lesion.sum() * placed.image.voxel_volume_ml == pytest.approx(4 / 3 * np.pi, rel=0.12)
    assert case.mask_array("liver")[lesion].all()
    assert float(case.image.array[lesion].mean()) > 0.0
    assert measure_case(placed)["lesions"][0]["truncated_by_fov"] is False
