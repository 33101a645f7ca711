"""Measurements on real CT anatomy (../shared/data/external/totalseg-ct-3mm, TotalSegmentator example,
Apache-2.0) with a synthetic lesion inserted by latplan.imaging.insert_lesion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latplan.anatomy import measure_case, validate_measurements

pytestmark = pytest.mark.shared_data


def test_real_ct_with_inserted_lesion(shared_data):
    """Reference: data README (liver ≈ 1.04 l in the field of view); analytic sphere volume (±15 % at 3 mm
    voxels); unsegmented hepatic veins/bile duct/segments → null + listed; FLR unknown without segments."""
    from latplan.imaging.case_folder import load_case_folder
    from latplan.imaging.insert import insert_lesion

    folder = shared_data / "external" / "totalseg-ct-3mm"
    case = load_case_folder(folder, patient={"id": "TS-3MM", "primary": "colorectal"})
    liver = case.mask_array("liver")
    centre = case.labels.index_to_mm(np.argwhere(liver).mean(0)) + np.array([-25.0, 0.0, 0.0])
    case = insert_lesion(case, centre, 21.0)
    m = measure_case(case)
    validate_measurements(m)
    les = m["lesions"][0]
    assert les["organ"] == "liver"
    assert les["volume_ml"] == pytest.approx(4 / 3 * math.pi * 10.5**3 / 1000, rel=0.15)
    assert abs(les["max_diameter_mm"] - 21.0) <= 2 * 3.0
    for name in ("hepatic_vein_right", "bile_duct", "liver_segment_8"):
        assert name in les["not_segmented"]
    assert les["distances_mm"]["bile_duct"] is None
    assert les["segments"] is None
    assert les["distances_mm"]["stomach"] is not None and les["distances_mm"]["stomach"] > 0
    assert any(v["name"] == "inferior_vena_cava" and 15 < v["calibre_mm"] < 35 for v in les["nearest_vessels"])
    assert m["patient"]["liver_volume_ml"] == pytest.approx(1040, rel=0.05)
    assert m["patient"]["future_liver_remnant"] is None
    assert m["patient"]["oligometastatic"]["status"] == "unknown"


def test_real_mr_tumour_outside_the_liver(shared_data):
    """Reference: data README (pyradiomics brain1: manual tumour label ≈ 16 ml, 0.78 × 0.78 × 6.5 mm MR).
    No liver: the lesion's organ is unknown, it is counted but not planned, liver values are null."""
    from latplan.imaging.case_folder import load_case_folder

    case = load_case_folder(shared_data / "external" / "pyradiomics-brain1", patient={"id": "BRAIN1", "primary": "other"})
    m = measure_case(case)
    validate_measurements(m)
    # [L]: the one label holds two separate pieces (26-connected components) → two lesions; their sum is
    # the README's label volume
    assert sum(les["volume_ml"] for les in m["lesions"]) == pytest.approx(16.0, rel=0.1)
    for les in m["lesions"]:
        assert les["organ"] == "unknown" and les["planned_in_this_release"] is False
        assert les["capsule_distance_mm"] is None and les["segments"] is None
    assert m["patient"]["liver_volume_ml"] is None and m["patient"]["future_liver_remnant"] is None
