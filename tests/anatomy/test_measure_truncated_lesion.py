"""A lesion cut by the field of view is detected and said (issue 13 part 1).

References: analytic voxel boxes on a 1 mm grid with the identity affine (index i, j, k → x, y, z mm; so the
k = 39 face is superior in LPS), the box volume (n voxels × 1 µl, exact), and the real TotalSegmentator CT
(../shared/data/external/totalseg-ct-3mm, wasserth/TotalSegmentator @0e65a448, Apache-2.0), whose top slice
k = 29 cuts the liver (data README).
"""

from __future__ import annotations

import numpy as np
import pytest

from latplan.anatomy import measure_case, validate_measurements
from latplan.anatomy.measurements import CaseMeasurements
from latplan.case import Case, LabelTable, Patient
from latplan.imaging.volume import Volume


def _case(lesion: tuple[slice, slice, slice]) -> Case:
    lab = np.zeros((40, 40, 40), np.int16)
    lab[5:40, 5:35, 5:35] = 1
    lab[lesion] = 2
    aff = np.eye(4)
    return Case(Patient(id="FOV-T", primary="colorectal"), Volume(np.zeros(lab.shape, np.float32), aff),
                Volume(lab, aff), LabelTable.from_mapping({1: "liver", 2: "lesion_1"}))


def test_lesion_on_the_top_face_is_a_lower_bound():
    """A 3 × 4 × 5 voxel box on the k = 39 face: truncated, face 'superior (k = 39)', volume lower bound 0.06 ml
    = volume_ml (a number, unchanged), diameter lower bound = max_diameter_mm."""
    m = measure_case(_case((slice(37, 40), slice(18, 22), slice(18, 23))))
    validate_measurements(m)
    les = m["lesions"][0]
    assert les["truncated_by_fov"] is True
    assert les["truncated_by_fov_faces"] == ["superior (k = 39)"]
    assert les["size_is_lower_bound"] is True
    assert les["volume_ml"] == pytest.approx(0.06, abs=1e-9)
    assert les["volume_lower_bound_ml"] == les["volume_ml"]
    assert les["max_diameter_lower_bound_mm"] == les["max_diameter_mm"]
    assert isinstance(les["volume_ml"], float) and isinstance(les["max_diameter_mm"], float)
    assert CaseMeasurements.from_json(m).to_json() == m


def test_lesion_inside_the_image_has_no_bounds():
    m = measure_case(_case((slice(20, 23), slice(18, 22), slice(18, 23))))
    les = m["lesions"][0]
    assert les["truncated_by_fov"] is False and les["truncated_by_fov_faces"] == []
    assert les["size_is_lower_bound"] is False
    assert les["volume_lower_bound_ml"] is None and les["max_diameter_lower_bound_mm"] is None


@pytest.mark.shared_data
def test_real_ct_lesion_on_the_cut_face(shared_data):
    """The real CT, a 20 mm sphere centred on the top slice (k = 29, the issue's round-2 placement): truncated at
    the superior face; its volume (inside the image) is below the whole sphere's 4.19 ml, said as a lower bound."""
    from latplan.imaging.case_folder import load_case_folder
    from latplan.imaging.insert import insert_lesion

    case = load_case_folder(shared_data / "external" / "totalseg-ct-3mm", patient={"id": "TS-3MM", "primary": "colorectal"})
    liver_top = np.argwhere(case.mask_array("liver")[29])
    j, i = liver_top[len(liver_top) // 2]
    placed = insert_lesion(case, case.labels.index_to_mm(np.array([29.0, j, i])), 20.0, min_inside_fraction=0.5)
    les = measure_case(placed)["lesions"][0]
    assert les["truncated_by_fov"] is True
    assert any(f.startswith("superior") and f.endswith("(k = 29)") for f in les["truncated_by_fov_faces"])
    assert les["size_is_lower_bound"] is True
    assert les["volume_lower_bound_ml"] == les["volume_ml"] < 4 / 3 * np.pi
