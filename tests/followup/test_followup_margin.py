"""Post-ablation margin check and predicted-vs-observed comparison (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest

from latplan.followup.margin_check import compare_zones, margin_check
from latplan.imaging.volume import Volume


def _grid(shape=(40, 40, 40), spacing=(1.5, 1.5, 2.0)) -> tuple[np.ndarray, np.ndarray]:
    """Voxel-centre coordinates (mm) along (k, j, i) and an affine with spacing (i, j, k)."""
    aff = np.diag([spacing[0], spacing[1], spacing[2], 1.0])
    aff[:3, 3] = [-30.0, -30.0, -40.0]
    vol = Volume(np.zeros(shape, np.uint8), aff)
    return vol.grid_mm(), aff


def _sphere(xyz, centre, radius_mm):
    return np.linalg.norm(xyz - np.asarray(centre), axis=-1) <= radius_mm


@pytest.mark.parametrize("margin_mm", [0.0, 3.0, 5.0, 8.0])
def test_followup_margin_known_concentric(margin_mm: float) -> None:
    """Reference: geometry — a tumour sphere R=8 mm inside a concentric zone R+m has margin m.

    Tolerance: ± one voxel (the largest spacing, 2 mm), as issue 8 states. Anisotropic grid
    (1.5 × 1.5 × 2 mm) so the mm-true distance is exercised.
    """
    xyz, aff = _grid()
    tumour = Volume(_sphere(xyz, (0, 0, 0), 8.0), aff)
    zone = Volume(_sphere(xyz, (0, 0, 0), 8.0 + margin_mm), aff)
    res = margin_check("lesion_1", tumour, zone, target_margin_mm=5.0)
    assert abs(res.margin.min_margin_mm - margin_mm) <= 2.0
    assert res.target_reached == (res.margin.min_margin_mm >= 5.0)
    if margin_mm >= 8.0:
        assert res.histogram_percent[">=5"] > 95.0


def test_followup_margin_eccentric_zone_negative() -> None:
    """Reference: geometry — zone R=10 shifted 6 mm from a tumour R=8 leaves the tumour uncovered
    on one side; the minimal margin is ≈ (10 − 8 − 6) = −4 mm (± one voxel, 2 mm), and the
    histogram has a non-empty '<0' bin."""
    xyz, aff = _grid()
    tumour = Volume(_sphere(xyz, (0, 0, 0), 8.0), aff)
    zone = Volume(_sphere(xyz, (6.0, 0, 0), 10.0), aff)
    res = margin_check("lesion_1", tumour, zone)
    assert abs(res.margin.min_margin_mm - (-4.0)) <= 2.0
    assert res.histogram_percent["<0"] > 0.0
    assert res.margin.coverage_percent < 100.0


@pytest.mark.parametrize("shift_vox", [0, 2, 5, 10])
def test_followup_dice_cubes_known_shift(shift_vox: int) -> None:
    """Reference: analytic Dice of two equal cubes of side a shifted by d along one axis = (a − d)/a.

    Exact on the voxel grid (integer shifts); tolerance 1e-12. Surface distances: the mean is
    positive for d > 0 and 0 for d = 0; HD95 ≤ d·spacing (the farthest face moves d voxels).
    """
    a = 16
    arr_p = np.zeros((30, 40, 30), bool)
    arr_o = np.zeros_like(arr_p)
    arr_p[5 : 5 + a, 5 : 5 + a, 5 : 5 + a] = True
    arr_o[5 : 5 + a, 5 + shift_vox : 5 + shift_vox + a, 5 : 5 + a] = True
    aff = np.diag([1.0, 1.25, 2.0, 1.0])
    comp = compare_zones(Volume(arr_p, aff), Volume(arr_o, aff))
    assert comp.dice == pytest.approx((a - shift_vox) / a, abs=1e-12)
    if shift_vox == 0:
        assert comp.mean_surface_distance_mm == 0.0 and comp.hd95_mm == 0.0
    else:
        assert 0.0 < comp.mean_surface_distance_mm <= comp.hd95_mm <= shift_vox * 1.25 + 1e-9


@pytest.mark.parametrize("shift_mm", [0.0, 4.0, 8.0])
def test_followup_dice_spheres_known_shift(shift_mm: float) -> None:
    """Reference: analytic Dice of two spheres of radius R with centres d apart:
    V∩ = π(4R + d)(2R − d)²/12, Dice = V∩/V. R = 12 mm on a 1 mm grid; tolerance 0.03
    (voxelisation of the sphere surface). Mean surface distance of the shifted pair ≈ d/2·(…)
    is only checked to grow with d."""
    xyz, aff = _grid(shape=(50, 50, 50), spacing=(1.0, 1.0, 1.0))
    r = 12.0
    p = Volume(_sphere(xyz, (-5, -5, -5), r), aff)
    o = Volume(_sphere(xyz, (-5 + shift_mm, -5, -5), r), aff)
    expected = np.pi * (4 * r + shift_mm) * (2 * r - shift_mm) ** 2 / 12 / (4 / 3 * np.pi * r**3)
    comp = compare_zones(p, o)
    assert comp.dice == pytest.approx(expected, abs=0.03)
    if shift_mm > 0:
        assert comp.hd95_mm <= shift_mm + 1.0
