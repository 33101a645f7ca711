"""Field of view (latplan.imaging.fov): truncation, capsule distance inside the image, body from the image,
verifiable paths.

References: analytic geometry of boxes, ellipses and cylinders on the grid (distances between voxel
centres exact to the grid; ellipse area π·a·b within 3 %); the Hounsfield scale (air −1000 HU, lung
≈ −850 HU, soft tissue ≈ +50 HU) for the CT body threshold.
"""

from __future__ import annotations

import numpy as np
import pytest

from latplan.imaging import Volume
from latplan.imaging.fov import (
    body_mask_from_image,
    capsule_distance_in_fov,
    edge_faces,
    path_inside_image_and_through_body,
    skin_mask,
    touches_image_edge,
)


def _grid(shape=(40, 60, 60), spacing=1.0) -> Volume:
    aff = np.diag([spacing, spacing, spacing, 1.0])
    return Volume(np.zeros(shape, np.float32), aff)


def test_truncated_structures_are_flagged():
    """A box reaching the last slice touches face k1; one inside does not."""
    m = np.zeros((10, 10, 10), bool)
    m[3:6, 3:6, 3:6] = True
    assert not touches_image_edge(m)
    m[5:, 4, 4] = True
    assert edge_faces(m) == ["k1"]


def test_capsule_distance_ignores_the_image_edge():
    """Liver box cut by the top of the scan (k = 39); lesion voxel 3 mm below the top face, 22 mm from the
    liver's lateral surface: the capsule distance is 22 mm (not 3), flagged limited, edge distance 3 mm."""
    vol = _grid()
    liver = np.zeros(vol.shape, bool)
    liver[5:, 10:50, 10:50] = True  # reaches k = 39 (the image's top face)
    lesion = np.zeros(vol.shape, bool)
    lesion[36, 30, 32] = True  # k: 39 − 36 = 3 mm to the top face
    d = capsule_distance_in_fov(vol, lesion, liver)
    # nearest true surface voxel: i = 49 (17 mm), j = 10 / 49 (20 / 19 mm), k = 5 (31 mm) → 17 mm
    assert d.distance_mm == pytest.approx(17.0, abs=1e-9)
    assert d.edge_distance_mm == pytest.approx(3.0, abs=1e-9)
    assert d.limited_by_fov
    inner = np.zeros(vol.shape, bool)
    inner[5:35, 10:50, 10:50] = True  # not cut: k 5..34
    deep = np.zeros(vol.shape, bool)
    deep[20, 30, 32] = True  # nearest surface: k = 34 → 14 mm
    d2 = capsule_distance_in_fov(vol, deep, inner)
    assert d2.distance_mm == pytest.approx(14.0, abs=1e-9)
    assert not d2.limited_by_fov and d2.edge_distance_mm == float("inf")


def _ellipse(shape, a, b, c=(30, 30)) -> np.ndarray:
    j, i = np.ogrid[: shape[1], : shape[2]]
    return ((j - c[0]) / b) ** 2 + ((i - c[1]) / a) ** 2 <= 1.0


def test_body_from_ct_hu_and_mr_intensity():
    """CT: soft tissue +50 HU ellipse with −850 HU lungs inside, −1000 HU air outside → the filled ellipse
    (area π·25·18 per slice within 3 %). MR: body 300 ± 20, background 10 ± 5 → the same ellipse."""
    shape = (6, 60, 60)
    ell = _ellipse(shape, 25, 18)
    lungs = _ellipse(shape, 6, 5, (30, 18)) | _ellipse(shape, 6, 5, (30, 42))
    ct = np.where(ell, 50.0, -1000.0)
    ct[lungs] = -850.0
    vol = Volume(np.broadcast_to(ct, shape).astype(np.float32).copy(), np.eye(4))
    body = body_mask_from_image(vol, "CT")
    assert body[:, lungs].all()
    assert body[3].sum() == pytest.approx(np.pi * 25 * 18, rel=0.03)
    rng = np.random.default_rng(0)
    mr = np.where(ell, 300.0, 10.0) + rng.normal(0, 5, shape)
    mbody = body_mask_from_image(Volume(mr.astype(np.float32), np.eye(4)), "MR")
    assert mbody[3].sum() == pytest.approx(np.pi * 25 * 18, rel=0.03)
    assert not skin_mask(body)[3, 30, 30] and skin_mask(body)[3, 30, 5]


def test_path_verifiable_only_when_the_wall_is_in_the_image():
    """Cylinder body (r = 20 mm) along z through the whole scan: a lateral path leaves the body at r = 20 mm
    (±1 voxel) inside the image → verifiable; a path up along z reaches the top face still in the body →
    cannot be verified; an entry beyond the image is reported."""
    vol = _grid((40, 60, 60))
    j, i = np.ogrid[:60, :60]
    body = np.broadcast_to(((j - 30) ** 2 + (i - 30) ** 2) <= 20**2, (40, 60, 60)).copy()
    target = vol.index_to_mm(np.array([20.0, 30.0, 30.0]))
    lateral = path_inside_image_and_through_body(vol, body, target, target + np.array([25.0, 0.0, 0.0]))
    assert lateral.verifiable and lateral.entry_inside_image
    assert lateral.skin_point_mm is not None
    assert abs(lateral.skin_point_mm[0] - target[0]) == pytest.approx(20.0, abs=1.0)
    up = path_inside_image_and_through_body(vol, body, target, target + np.array([0.0, 0.0, 30.0]))
    assert not up.verifiable and up.skin_point_mm is None
    assert "does not show the abdominal wall" in (up.reason or "")
    assert not up.entry_inside_image
