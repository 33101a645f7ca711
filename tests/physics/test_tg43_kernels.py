"""Fast TG-43 kernels vs the direct formalism, and metamorphic properties of the dose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latplan.imaging.volume import Volume
from latplan.physics import dvh, tg43


def _random_geometry(seed: int, n_pts: int = 6000, n_dw: int = 40) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-50, 50, (n_pts, 3))
    pos = rng.uniform(-20, 20, (n_dw, 3))
    dirs = rng.normal(size=(n_dw, 3))  # free-hand, non-parallel catheters
    return pts, pos, dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def test_numba_direct_equals_numpy_reference() -> None:
    """Reference: the plain numpy implementation of the same formalism; tolerance 1e-10 relative."""
    src = tg43.default_source()
    pts, pos, dirs = _random_geometry(0, 3000, 30)
    a = tg43.dose_rate_per_sk(pts, pos, dirs, src, method="numpy")
    b = tg43.dose_rate_per_sk(pts, pos, dirs, src, method="direct")
    np.testing.assert_allclose(b, a, rtol=1e-10)


@pytest.mark.parametrize("which", ["default", "hdr"])
def test_lookup_within_tolerance_of_direct(which: str, request: pytest.FixtureRequest) -> None:
    """Reference: direct formalism. Tolerance (issue 3): 0.2 % beyond 5 mm, 1 % from 2 to 5 mm.
    Measured: ≤ 0.1 % beyond 5 mm, ≤ 0.5 % at 2–5 mm (default and GammaMed HDR sources)."""
    if which == "default":
        src = tg43.default_source()
    else:
        shared: Path = request.getfixturevalue("shared_data")
        src = tg43.load_source(shared / "tg43" / "gammamed-plus-hdr.consensus.yaml")
    pts, pos, dirs = _random_geometry(1)
    # plus points near the source axes (θ < 15°, > 165°: polar table, Valdés 2015 region)
    rng = np.random.default_rng(5)
    axis_pts = pos[:8, None, :] + dirs[:8, None, :] * rng.uniform(-80, 80, (8, 300, 1)) + rng.normal(
        scale=0.3, size=(8, 300, 3))
    pts = np.concatenate([pts, axis_pts.reshape(-1, 3)])
    direct = tg43.dose_rate_per_sk(pts, pos, dirs, src, method="direct")
    look = tg43.dose_rate_per_sk(pts, pos, dirs, src, method="lookup")
    dist = np.linalg.norm(pts[:, None] - pos[None], axis=2)
    rel = np.abs(look / direct - 1)
    assert rel[dist > 5].max() < 0.002
    assert rel[(dist > 2) & (dist <= 5)].max() < 0.01
    cos_t = np.abs(np.einsum("pdk,dk->pd", pts[:, None] - pos[None], dirs)) / dist
    near_axis = cos_t > np.cos(np.radians(15))
    assert (near_axis & (dist > 5)).sum() > 1000
    assert rel[near_axis & (dist > 5)].max() < 0.002
    # the summed kernel (used for dose grids) agrees with the matrix kernel
    t = np.random.default_rng(2).uniform(0, 20, len(pos))
    np.testing.assert_allclose(tg43.dose_gy(pts, pos, dirs, t, 40700, src, method="lookup"),
                               tg43.dose_matrix_gy_per_s(pts, pos, dirs, 40700, src, method="lookup") @ t, rtol=1e-9)


def test_dose_linear_in_time_and_sk() -> None:
    """Metamorphic: D(a·t, b·S_K) = a·b·D(t, S_K) and D(t1 + t2) = D(t1) + D(t2); tolerance 1e-12."""
    pts, pos, dirs = _random_geometry(3, 500, 20)
    rng = np.random.default_rng(4)
    t1, t2 = rng.uniform(0, 10, 20), rng.uniform(0, 10, 20)
    for method in ("direct", "lookup"):
        d1 = tg43.dose_gy(pts, pos, dirs, t1, 40700, method=method)
        d2 = tg43.dose_gy(pts, pos, dirs, t2, 40700, method=method)
        np.testing.assert_allclose(tg43.dose_gy(pts, pos, dirs, t1 + t2, 40700, method=method), d1 + d2, rtol=1e-12)
        np.testing.assert_allclose(tg43.dose_gy(pts, pos, dirs, 3 * t1, 0.5 * 40700, method=method), 1.5 * d1,
                                   rtol=1e-12)


def test_dose_in_gy_from_units() -> None:
    """Reference: Ḋ = S_K·Λ at 1 cm, 90°: a new 40 700 U source for 100 s gives
    40 700 × 1.109 cGy/h × 100/3600 h = 12.54 Gy; tolerance 1e-9."""
    src = tg43.default_source()
    d = tg43.dose_gy(np.array([[10.0, 0, 0]]), np.zeros((1, 3)), [0, 0, 1.0], [100.0], 40700, src)[0]
    assert d == pytest.approx(40700 * 1.109 * 100 / 3600 / 100, rel=1e-9)


def _rotation(seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_rotating_and_translating_catheters_with_grid_gives_same_dvh() -> None:
    """Metamorphic: rigidly moving grid, structure and catheters together leaves the DVH unchanged
    (tolerance 1e-6 Gy on D100/D90/D50 and 1e-9 % on V100)."""
    shape = (30, 30, 30)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-29, -29, -29]
    grid = Volume(np.zeros(shape, np.float32), aff)
    structure = dvh.occupancy_from_shape(grid, lambda p: np.linalg.norm(p, axis=1) <= 15.0, factor=3)
    entry = np.array([[-40.0, -5.0, 3.0], [40.0, 6.0, -2.0]])
    tip = np.array([[20.0, 4.0, 1.0], [-20.0, -3.0, 5.0]])
    pos = np.concatenate([e + np.linspace(0.3, 0.9, 6)[:, None] * (t - e) for e, t in zip(entry, tip, strict=True)])
    dirs = np.repeat((tip - entry) / np.linalg.norm(tip - entry, axis=1, keepdims=True), 6, axis=0)
    times = np.linspace(5, 30, 12)

    def metrics(g: Volume, s: Volume, p: np.ndarray, d: np.ndarray) -> dict[str, float]:
        dose = tg43.dose_on_volume_gy(g, p, d, times, 40700, method="direct")
        sd = dvh.sample_structure_dose(dose, g.with_array(s.array), "s")
        return dvh.brachy_metrics(sd, 20.0)

    base = metrics(grid, structure, pos, dirs)
    rot = _rotation(7)
    shift = np.array([13.5, -120.25, 431.0])
    moved = np.eye(4)
    moved[:3, :3] = rot
    moved[:3, 3] = shift
    grid2 = Volume(grid.array, moved @ grid.affine)
    m2 = metrics(grid2, structure, pos @ rot.T + shift, dirs @ rot.T)
    for k in ("d100_gy", "d90_gy", "d50_gy"):
        assert m2[k] == pytest.approx(base[k], abs=1e-6)
    assert m2["v100_percent"] == pytest.approx(base["v100_percent"], abs=1e-9)


@pytest.mark.parametrize("which", ["default", "hdr", "catheter"])
def test_fast_direct_kernel_matches_independent_tg43_beyond_5mm(which: str, request: pytest.FixtureRequest) -> None:
    """Reference: the independent plain TG-43U1 implementation (tests/support/independent_tg43.py, Rivard 2004
    eq. 1/4 and App. C: β from the vectors to the source ends, scipy bilinear F, np.interp g_L), not latplan's
    engine. Tolerance: 1e-8 relative at every pair beyond 5 mm and more than 1° off the source axis (measured
    ≤ 2.2e-10: the uniform resampled tables hold every published knot, so the interpolation is the published
    one; the reference's β = arccos(cos β) loses digits nearer the axis). Within 1° of the axis the reference
    is latplan's plain numpy formalism, 1e-6 relative (measured 1.4e-8: y = √(r² − z²) cancels there; the
    reference's arccos gives up to 100 % there, and 0 on the axis). Covers the vectorised
    pair path (uniform tables, atan2 by the rational approximation) and the scalar second pass (pairs beyond
    the last g_L radius of the GammaMed table, 10 cm: log-linear tail), summed and matrix kernels."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
    from independent_tg43 import DEFAULT_SOURCE, PlainTG43

    path = DEFAULT_SOURCE
    if which == "hdr":
        path = request.getfixturevalue("shared_data") / "tg43" / "gammamed-plus-hdr.consensus.yaml"
    src = tg43.load_source(path)
    if which == "catheter":
        src = src.with_catheter_clamp(0.1)  # tissue beyond 5 mm is never clamped
    ref = PlainTG43(path)
    rng = np.random.default_rng(11)
    pts = rng.uniform(-70, 70, (2500, 3))
    pos = rng.uniform(-15, 15, (25, 3))
    dirs = rng.normal(size=(25, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    # points on and near the source axes (θ ≈ 0°, 180°: the on-axis branch and the steep F rows)
    axis_pts = pos[:5, None, :] + dirs[:5, None, :] * rng.uniform(-60, 60, (5, 100, 1))
    axis_pts[:, :50] += rng.normal(scale=0.05, size=(5, 50, 3))
    pts = np.concatenate([pts, axis_pts.reshape(-1, 3)])
    dist = np.linalg.norm(pts[:, None] - pos[None], axis=2)
    mat = tg43.dose_rate_per_sk(pts, pos, dirs, src, method="direct")
    expect = np.stack([ref.rate_per_u(pts, p, u) for p, u in zip(pos, dirs, strict=True)], axis=1)
    z = np.einsum("pdk,dk->pd", pts[:, None] - pos[None], dirs)
    sin_t = np.sqrt(np.maximum(dist**2 - z**2, 0.0)) / dist
    far = (dist > 5.0) & (sin_t > np.sin(np.radians(1.0)))
    axis = (dist > 5.0) & ~far
    assert far.sum() > 50000 and (dist > 100.0).sum() > 100 and axis.sum() > 200
    np.testing.assert_allclose(mat[far], expect[far], rtol=1e-8)
    np.testing.assert_allclose(mat[axis], tg43.dose_rate_per_sk(pts, pos, dirs, src, method="numpy")[axis], rtol=1e-6)
    t = rng.uniform(0, 20, len(pos))
    keep = far.all(axis=1)
    assert keep.sum() > 1000
    np.testing.assert_allclose(tg43.dose_gy(pts[keep], pos, dirs, t, 40700, src, method="direct"),
                               ref.dose_gy(pts[keep], pos, dirs, t, 40700), rtol=1e-8)
