"""TG-43 formalism pieces against analytic references (Rivard et al., Med Phys 31:633, 2004)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from latplan.errors import InvalidInputError, SourceDataError
from latplan.physics import tg43


def _flat_source(length_cm: float, lam: float = 1.1) -> tg43.SourceModel:
    """Synthetic source with g_L ≡ 1 and F ≡ 1: dose is Λ·G_L/G_L(1, 90°) exactly."""
    return tg43.source_from_mapping({
        "name": "flat", "dose_rate_constant_cgy_per_h_per_u": lam, "active_length_cm": length_cm,
        "radial_dose_function": {"r_cm": [0.1, 1.0, 10.0], "g_l": [1.0, 1.0, 1.0]},
        "anisotropy_function": {"r_cm": [0.5, 5.0], "theta_deg": [0.0, 90.0, 180.0], "f": [[1, 1], [1, 1], [1, 1]]},
    })


def test_geometry_factor_line_source_analytic() -> None:
    """Reference: line-source G_L = β/(L·r·sinθ); at θ = 90° β = 2·atan(L/2r); on the axis
    G_L = 1/(r² − L²/4). Tolerance 1e-12 relative."""
    length = 0.35
    src = _flat_source(length)
    g0 = 2 * math.atan(length / 2) / length
    for r in (0.5, 1.0, 2.5, 7.0):
        expect_90 = src.dose_rate_constant_cgy_per_h_per_u * (2 * math.atan(length / (2 * r)) / (length * r)) / g0
        assert float(tg43.dose_rate_per_sk_rtheta(src, r, 90.0)) == pytest.approx(expect_90, rel=1e-12)
        expect_axis = src.dose_rate_constant_cgy_per_h_per_u * (1 / (r * r - length**2 / 4)) / g0
        assert float(tg43.dose_rate_per_sk_zy(src, r, 0.0)) == pytest.approx(expect_axis, rel=1e-12)
        assert float(tg43.dose_rate_per_sk_zy(src, -r, 0.0)) == pytest.approx(expect_axis, rel=1e-12)
        # just off the axis the general formula joins the on-axis limit continuously
        assert float(tg43.dose_rate_per_sk_zy(src, r, 1e-6)) == pytest.approx(expect_axis, rel=1e-6)


def test_point_source_limit_is_inverse_square() -> None:
    """Reference: L → 0 gives G = 1/r² (point source); tolerance 1e-12."""
    src = _flat_source(0.0)
    r = np.array([0.5, 1, 2, 4, 8])
    np.testing.assert_allclose(tg43.dose_rate_per_sk_rtheta(src, r, 37.0), 1.1 / r**2, rtol=1e-12)


def test_radial_dose_extrapolation_rules() -> None:
    """Reference: TG-43U1 App. C — nearest neighbour below the table, log-linear beyond it."""
    src = tg43.source_from_mapping({
        "name": "g", "dose_rate_constant_cgy_per_h_per_u": 1.0, "active_length_cm": 0.0,
        "radial_dose_function": {"r_cm": [0.5, 1.0, 4.0, 5.0], "g_l": [0.99, 1.0, 0.9, 0.8]},
        "anisotropy_function": {"r_cm": [1.0], "theta_deg": [0.0, 180.0], "f": [[1.0], [1.0]]},
    })
    r = np.array([0.3, 2.5, 7.0])
    d = tg43.dose_rate_per_sk_rtheta(src, r, 90.0) * r**2
    slope = math.log(0.8 / 0.9) / 1.0
    np.testing.assert_allclose(d, [0.99, 1.0 + (0.9 - 1.0) * 0.5, 0.8 * math.exp(slope * 2.0)], rtol=1e-12)


def test_anisotropy_nearest_neighbour_outside_r_range_and_nulls(tmp_path: Path) -> None:
    """Reference: TG-43U1 App. C nearest neighbour for F beyond the tabulated radii; ``null``
    entries take the nearest published value of the same θ row (documented decision)."""
    text = """name: t
dose_rate_constant_cgy_per_h_per_u: 1.0
active_length_cm: 0.0
radial_dose_function: {r_cm: [0.1, 20.0], g_l: [1.0, 1.0]}
anisotropy_function:
  r_cm: [1.0, 2.0]
  theta_deg: [0.0, 90.0, 180.0]
  f:
    - [null, 0.6]
    - [1.0, 1.0]
    - [0.5, 0.7]
"""
    p = tmp_path / "s.yaml"
    p.write_text(text)
    src = tg43.load_source(p)
    assert src.f_table[0, 0] == 0.6
    # beyond r = 2 cm: F(2, θ); below 1 cm: F(1, θ)
    assert float(tg43.dose_rate_per_sk_rtheta(src, 5.0, 180.0)) * 25 == pytest.approx(0.7, rel=1e-12)
    assert float(tg43.dose_rate_per_sk_rtheta(src, 0.5, 180.0)) * 0.25 == pytest.approx(0.5, rel=1e-12)


def test_near_source_clamp_is_finite_and_documented() -> None:
    """Points closer than r_min = max(L/2 + 0.5 mm, 1 mm) are evaluated at r_min (same direction)."""
    src = tg43.default_source()
    assert src.r_min_cm == pytest.approx(0.18 + 0.05)
    inside = tg43.dose_rate_per_sk_zy(src, np.array([0.0, 0.1, 0.0]), np.array([0.0, 0.0, 0.05]))
    assert np.all(np.isfinite(inside)) and np.all(inside > 0)
    at_rmin = float(tg43.dose_rate_per_sk_zy(src, 0.0, src.r_min_cm))
    assert float(inside[0]) == pytest.approx(at_rmin, rel=1e-12)


def test_load_source_errors_name_the_problem(tmp_path: Path) -> None:
    """Malformed files raise SourceDataError saying which field is wrong."""
    p = tmp_path / "bad.yaml"
    p.write_text("dose_rate_constant_cgy_per_h_per_u: 1.1\nactive_length_cm: 0.35\n")
    with pytest.raises(SourceDataError, match="radial_dose_function"):
        tg43.load_source(p)
    p.write_text("""dose_rate_constant_cgy_per_h_per_u: 1.1
active_length_cm: 0.35
radial_dose_function: {r_cm: [1, 2], g_l: [1, 1]}
anisotropy_function: {r_cm: [1, 2], theta_deg: [0, 180], f: [[1, 1], [1]]}
""")
    with pytest.raises(SourceDataError, match="must have 2 values"):
        tg43.load_source(p)
    with pytest.raises(SourceDataError, match="does not exist"):
        tg43.load_source(tmp_path / "nope.yaml")


def test_api_rejects_bad_inputs() -> None:
    """Wrong shapes, zero directions and negative times are refused with a message."""
    with pytest.raises(InvalidInputError, match=r"\(n, 3\)"):
        tg43.dose_rate_per_sk(np.zeros((4, 2)), np.zeros((1, 3)), [0, 0, 1])
    with pytest.raises(InvalidInputError, match="direction"):
        tg43.dose_rate_per_sk(np.ones((4, 3)), np.zeros((1, 3)), [0, 0, 0])
    with pytest.raises(InvalidInputError, match="dwell times"):
        tg43.dose_gy(np.ones((4, 3)), np.zeros((1, 3)), [0, 0, 1], [-1.0], 40700)
    with pytest.raises(InvalidInputError, match="S_K"):
        tg43.dose_gy(np.ones((4, 3)), np.zeros((1, 3)), [0, 0, 1], [1.0], 0.0)


def test_unseen_source_layout_variants(tmp_path: Path) -> None:
    """A source in the same layout but with other grids (null g_L entries, θ grid without 0°/180°,
    long active length) loads; Λ holds at (1 cm, 90°) and the lookup agrees with direct beyond 5 mm (0.2 %)."""
    text = """name: test-long
dose_rate_constant_cgy_per_h_per_u: 1.12
active_length_cm: 0.5
radial_dose_function: {r_cm: [0.25, 0.5, 1.0, 2.0, 5.0, 8.0], g_l: [null, 0.99, 1.0, 1.01, 1.0, 0.96]}
anisotropy_function:
  r_cm: [0.5, 1.0, 3.0, 6.0]
  theta_deg: [2.0, 10.0, 30.0, 60.0, 90.0, 120.0, 150.0, 170.0, 178.0]
  f:
    - [0.6, 0.62, 0.7, 0.75]
    - [0.75, 0.76, 0.8, 0.83]
    - [0.9, 0.9, 0.92, 0.93]
    - [0.98, 0.98, 0.99, 0.99]
    - [1.0, 1.0, 1.0, 1.0]
    - [0.98, 0.98, 0.99, 0.99]
    - [0.9, 0.9, 0.92, 0.93]
    - [0.7, 0.72, 0.76, 0.8]
    - [0.5, 0.52, 0.6, 0.66]
"""
    p = tmp_path / "long.yaml"
    p.write_text(text)
    src = tg43.load_source(p)
    assert src.g_r_cm[0] == 0.5
    assert float(tg43.dose_rate_per_sk_rtheta(src, 1.0, 90.0)) == pytest.approx(1.12, rel=1e-12)
    rng = np.random.default_rng(9)
    pts = rng.uniform(-40, 40, (3000, 3))
    pos = rng.uniform(-10, 10, (20, 3))
    dirs = rng.normal(size=(20, 3))
    direct = tg43.dose_rate_per_sk(pts, pos, dirs, src, method="direct")
    look = tg43.dose_rate_per_sk(pts, pos, dirs, src, method="lookup")
    dist = np.linalg.norm(pts[:, None] - pos[None], axis=2)
    assert np.abs(look / direct - 1)[dist > 5].max() < 0.002
