"""Tests of latplan.physics.margins (ablative margin, histogram, coverage)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from latplan.errors import EmptyStructureError, GeometryMismatchError
from latplan.imaging.volume import Volume
from latplan.knowledge.margins import margin_histogram_percent
from latplan.physics.margins import ablative_margin, ablative_margin_arrays


def _spheres(r_tumour_mm: float, r_zone_mm: float, spacing_kji_mm: tuple[float, float, float],
             offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> tuple[Volume, Volume]:
    ext = max(r_tumour_mm, r_zone_mm) + 3 * max(spacing_kji_mm) + float(np.abs(offset_mm).max())
    axes = [np.arange(-ext, ext + 1e-9, s) for s in spacing_kji_mm]
    k, j, i = np.meshgrid(*axes, indexing="ij")
    r_t = np.sqrt(k**2 + j**2 + i**2)
    r_z = np.sqrt((k - offset_mm[0]) ** 2 + (j - offset_mm[1]) ** 2 + (i - offset_mm[2]) ** 2)
    aff = np.diag([spacing_kji_mm[2], spacing_kji_mm[1], spacing_kji_mm[0], 1.0])
    return Volume(r_t <= r_tumour_mm, aff), Volume(r_z <= r_zone_mm, aff)


@settings(max_examples=40, deadline=None)
@given(
    r_mm=st.floats(3.0, 15.0),
    m_mm=st.floats(-2.5, 10.0),
    h_mm=st.floats(0.6, 2.0),
)
def test_margins_concentric_spheres_property(r_mm: float, m_mm: float, h_mm: float) -> None:
    """Reference: analytic geometry — a sphere of radius R in a concentric sphere of radius
    R + m has minimal margin m everywhere. Tolerance: one voxel (h) over R ∈ [3, 15] mm,
    m ∈ [−2.5, 10] mm (negative = zone too small), isotropic voxel h ∈ [0.6, 2] mm."""
    assume(r_mm + m_mm >= 2.0 * h_mm)  # the zone must hold voxels to have a boundary
    tumour, zone = _spheres(r_mm, r_mm + m_mm, (h_mm, h_mm, h_mm))
    res = ablative_margin(tumour, zone)
    assert abs(res.min_margin_mm - m_mm) <= h_mm + 1e-9
    assert abs(sum(margin_histogram_percent(res.surface_margins_mm).values()) - 100.0) < 1e-9


@pytest.mark.parametrize("spacing", [(2.0, 0.8, 0.8), (0.8, 1.5, 0.8), (1.0, 1.0, 2.5)])
def test_margins_anisotropic_voxels_mm_true(spacing: tuple[float, float, float]) -> None:
    """Reference: analytic geometry; R = 10 mm, m = 6 mm on anisotropic voxels. The margin
    must be in mm, not voxels: tolerance = largest spacing."""
    tumour, zone = _spheres(10.0, 16.0, spacing)
    res = ablative_margin(tumour, zone)
    assert abs(res.min_margin_mm - 6.0) <= max(spacing)
    assert res.coverage_percent == pytest.approx(100.0)
    assert margin_histogram_percent(res.surface_margins_mm)["<0"] == 0.0
    assert margin_histogram_percent(res.surface_margins_mm)[">=5"] > 50.0


def test_margins_offset_zone_histogram_and_min() -> None:
    """Reference: analytic geometry — tumour R = 10 mm, zone R = 14 mm shifted 6 mm along k:
    surface margins range from 14 − 10 − 6 = −2 mm (uncovered side) to 14 − 10 + 6 = 10 mm.
    Expect min margin −2 ± 1 mm, part of the surface in every histogram bin, coverage < 100 %."""
    tumour, zone = _spheres(10.0, 14.0, (1.0, 1.0, 1.0), offset_mm=(6.0, 0.0, 0.0))
    res = ablative_margin(tumour, zone)
    assert abs(res.min_margin_mm - (-2.0)) <= 1.0
    assert res.surface_margins_mm.max() == pytest.approx(10.0, abs=1.0)
    assert all(v > 0 for v in margin_histogram_percent(res.surface_margins_mm).values())
    assert 80.0 < res.coverage_percent < 100.0
    assert not res.covered and not res.reaches(5.0)


def test_margins_translation_invariant() -> None:
    """Metamorphic: translating both masks by whole voxels leaves every metric unchanged."""
    tumour, zone = _spheres(8.0, 13.0, (1.0, 1.0, 1.0), offset_mm=(1.0, 2.0, 0.0))
    a = ablative_margin_arrays(tumour.array, zone.array, (1.0, 1.0, 1.0))
    t2 = np.roll(np.pad(tumour.array, 5), (3, -2, 4), axis=(0, 1, 2))
    z2 = np.roll(np.pad(zone.array, 5), (3, -2, 4), axis=(0, 1, 2))
    b = ablative_margin_arrays(t2, z2, (1.0, 1.0, 1.0))
    assert a.min_margin_mm == b.min_margin_mm
    assert margin_histogram_percent(a.surface_margins_mm) == margin_histogram_percent(b.surface_margins_mm)
    assert a.coverage_percent == b.coverage_percent


def test_margins_errors_name_the_problem() -> None:
    """Empty masks and mismatched grids raise latplan errors that say what is wrong."""
    tumour, zone = _spheres(5.0, 8.0, (1.0, 1.0, 1.0))
    with pytest.raises(EmptyStructureError, match="zone mask is empty"):
        ablative_margin(tumour, zone.with_array(np.zeros(zone.shape, bool)))
    with pytest.raises(EmptyStructureError, match="tumour mask is empty"):
        ablative_margin(tumour.with_array(np.zeros(zone.shape, bool)), zone)
    aff = np.array(zone.affine)
    aff[0, 3] += 5.0
    shifted = Volume(zone.array, aff)
    with pytest.raises(GeometryMismatchError, match="origin differs"):
        ablative_margin(tumour, shifted)

