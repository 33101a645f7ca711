"""Property tests (hypothesis) and oblique grids for the measurement geometry.

Reference: construction of the synthetic case (anatomy_cases.synthetic_case): a sphere of radius r and
a straight tube placed so that the surface-to-surface gap is g; the measurement must return g and the
tube diameter within one voxel (largest spacing) for any spacing, radius and gap.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from anatomy_cases import synthetic_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latplan.anatomy import measure_case
from latplan.case import Case
from latplan.imaging.volume import Volume


@settings(max_examples=12, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sx=st.floats(0.7, 1.6), sz=st.floats(0.7, 2.5),
    lesion_r=st.floats(4.0, 10.0), pv_r=st.floats(1.5, 5.0), gap=st.floats(0.0, 8.0),
)
def test_gap_and_calibre_within_one_voxel(sx, sz, lesion_r, pv_r, gap):
    """Any anisotropic grid: measured lesion–vessel gap and vessel calibre within one voxel of the truth."""
    case = synthetic_case((sx, sx, sz), lesion_r=lesion_r, pv_r=pv_r, pv_gap=gap)
    les = next(x for x in measure_case(case)["lesions"] if x["id"] == "lesion_1")
    h = max(sx, sz)
    assert abs(les["distances_mm"]["portal_vein"] - gap) <= h + 1e-6
    pv = next(v for v in les["nearest_vessels"] if v["name"] == "portal_vein")
    assert abs(pv["calibre_mm"] - 2 * pv_r) <= h + 1e-6
    assert les["volume_ml"] == pytest.approx(4 / 3 * math.pi * lesion_r**3 / 1000, rel=0.12)


def _rotated(case: Case, angle_deg: float) -> Case:
    """Same voxels, affine rotated about the x axis: the S-I axis is no longer an array axis."""
    a = math.radians(angle_deg)
    rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    aff = np.array(case.labels.affine)
    aff[:3, :3] = rot @ aff[:3, :3]
    aff[:3, 3] = rot @ aff[:3, 3]
    return Case(patient=case.patient, image=Volume(case.image.array, aff), labels=Volume(case.labels.array, aff),
                label_table=case.label_table)


@pytest.mark.parametrize("angle", [0.0, 25.0, 60.0])
def test_oblique_grid_gives_same_sizes_and_distances(angle):
    """A rigid rotation of the affine (oblique acquisition) changes no 3-D size or distance; the axial
    (⊥ S-I) diameter of a sphere stays its diameter within one voxel (slab binning for oblique grids)."""
    base = synthetic_case()
    ref = next(x for x in measure_case(base)["lesions"] if x["id"] == "lesion_1")
    got = next(x for x in measure_case(_rotated(base, angle))["lesions"] if x["id"] == "lesion_1")
    for key in ("volume_ml", "max_diameter_mm", "capsule_distance_mm"):
        assert got[key] == pytest.approx(ref[key], abs=1e-6)
    assert got["distances_mm"]["portal_vein"] == pytest.approx(ref["distances_mm"]["portal_vein"], abs=1e-6)
    assert abs(got["axial_diameter_mm"] - 16.0) <= 1.0 + 1e-6
