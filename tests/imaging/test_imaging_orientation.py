"""Metamorphic checks of `reorient`: same physical content in all 48 storage orders."""

from __future__ import annotations

import numpy as np
import pytest

from latplan.errors import InvalidInputError
from latplan.imaging import Volume
from latplan.imaging.orientation import all_orientations, axis_codes, reorient


def _oblique_volume() -> Volume:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 50, size=(4, 5, 6)).astype(np.int16)
    theta = 0.3
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.7, 1.1, 2.5])
    aff[:3, 3] = [-10.0, 20.0, 5.0]
    return Volume(arr, aff)


@pytest.mark.parametrize(("perm", "flips"), list(all_orientations()))
def test_reorient_keeps_every_voxel_at_its_mm_position(perm, flips):
    """Reference: definition of the affine. Every voxel value sits at the same LPS point (tol 1e-9 mm)."""
    vol = _oblique_volume()
    new = reorient(vol, perm, flips)
    assert sorted(new.shape) == sorted(vol.shape)
    assert new.voxel_volume_ml == pytest.approx(vol.voxel_volume_ml)
    old_pts = vol.grid_mm().reshape(-1, 3)
    old_vals = vol.array.reshape(-1)
    # look up each old point in the new grid
    idx = np.rint(new.mm_to_index(old_pts)).astype(int)
    np.testing.assert_allclose(new.index_to_mm(idx), old_pts, atol=1e-9)
    assert np.array_equal(new.array[idx[:, 0], idx[:, 1], idx[:, 2]], old_vals)


def test_reorient_round_trip_and_codes():
    """Flipping twice is the identity; LPS identity affine reads 'LPS', i-flip reads 'RPS'."""
    vol = Volume(np.arange(24).reshape(2, 3, 4), np.eye(4))
    assert axis_codes(vol) == "LPS"
    once = reorient(vol, (0, 1, 2), (False, False, True))
    assert axis_codes(once) == "RPS"
    back = reorient(once, (0, 1, 2), (False, False, True))
    assert np.array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine)


def test_reorient_rejects_bad_permutation():
    """A permutation must order (0, 1, 2); the message names what was given."""
    with pytest.raises(InvalidInputError, match=r"ordering of the array axes"):
        reorient(Volume(np.zeros((2, 2, 2)), np.eye(4)), (0, 0, 1), (False, False, False))
