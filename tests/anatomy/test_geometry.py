"""CaseGeometry on a synthetic case with analytic truth (tests/anatomy/anatomy_cases.py): a portal
vein tube along z (radius pv_r), a hepatic vein tube along y (radius 5 mm), a liver block.

References: the construction (tube diameter 2r; distance from a point to a tube = distance to its
axis − r; liver = the liver block ∪ the lesion inside it); tolerance one voxel (largest spacing).
Large vessels: calibre ≥ 3 mm (Lu DSK et al., J Vasc Interv Radiol 2003;14:1267-1274).
"""

from __future__ import annotations

import numpy as np
import pytest
from anatomy_cases import synthetic_case

from latplan.anatomy import liver_mask, measure_case
from latplan.anatomy.geometry import LARGE_VESSEL_CALIBRE_MM, case_geometry

C = np.array([45.0, 45.0, 40.0])  # lesion centre (x, y, z) mm of the synthetic case


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 2.5)])
def test_vessel_calibre_is_the_tube_diameter(spacing: tuple[float, float, float]) -> None:
    h = max(spacing)
    case = synthetic_case(spacing)
    g = case_geometry(case)
    pv = case.mask_array("portal_vein")
    hv = case.mask_array("hepatic_vein_right")
    # the calibre map's maximum over a tube is its diameter (2 × 3 mm, 2 × 5 mm); measure_case agrees
    vessels = {v["name"]: v["calibre_mm"] for v in measure_case(case)["lesions"][0]["nearest_vessels"]}
    assert abs(float(g.vessel_calibre_mm[pv].max()) - vessels["portal_vein"]) <= 0.5 * h
    assert abs(float(g.vessel_calibre_mm[pv].max()) - 6.0) <= h
    assert abs(float(g.vessel_calibre_mm[hv].max()) - 10.0) <= h
    assert float(g.vessel_calibre_mm[~(pv | hv)].max()) == 0.0


def test_large_vessels_keep_wide_tubes_and_drop_thin_ones() -> None:
    wide = case_geometry(synthetic_case(pv_r=3.0))
    thin_case = synthetic_case(pv_r=1.0)  # Ø 2 mm < 3 mm
    thin = case_geometry(thin_case)
    assert LARGE_VESSEL_CALIBRE_MM == 3.0
    assert wide.large_vessels[wide.case.mask_array("portal_vein")].all()
    assert not thin.large_vessels[thin_case.mask_array("portal_vein")].any()
    assert thin.large_vessels[thin_case.mask_array("hepatic_vein_right")].all()


def test_distance_to_large_vessel_is_distance_to_the_tube_surface() -> None:
    """At the lesion centre: PV axis at x = 45 + 8 + 4 + 3 = 60 mm → surface 12 mm away; HV axis at
    z = 40 − 8 − 10 − 5 = 17 mm → surface 18 mm away; the nearer one counts."""
    case = synthetic_case()
    g = case_geometry(case)
    k, j, i = (np.round(C[::-1] - 0.5)).astype(int)
    assert abs(float(g.distance_to_large_vessel_mm[k, j, i]) - 12.0) <= 1.0


def test_liver_mask_is_the_anatomy_liver_mask_and_geometry_is_cached() -> None:
    case = synthetic_case()
    g = case_geometry(case)
    assert g.liver is not None
    np.testing.assert_array_equal(g.liver, liver_mask(case).array)
    assert g.liver[case.mask_array("lesion_1")].all()  # the lesion lies in the liver block
    assert case_geometry(case).large_vessels is g.large_vessels  # computed once per case
    assert g.fov_limited == {"liver": False, "lesion_1": False}


def test_body_without_a_body_label_is_the_ct_body() -> None:
    """The synthetic image is 60 HU inside structures and −100 HU (fat) elsewhere: all > −400 HU, so
    the CT body covers the grid; with a body label it is that label ∪ every labelled voxel."""
    g = case_geometry(synthetic_case())
    assert g.body.all()


def test_lesion_crop_pads_in_mm() -> None:
    case = synthetic_case()
    g = case_geometry(case)
    box = g.lesion_crop("lesion_1", 5.0)
    les = case.mask_array("lesion_1")
    assert les[box].sum() == les.sum()
    # lesion diameter 16 mm (± 1 voxel) + 2 × 5 mm padding on a 1 mm grid
    assert all(abs((s.stop - s.start) - 26) <= 2 for s in box)
