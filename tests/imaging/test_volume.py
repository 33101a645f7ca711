"""Volume: the array+affine contract every module relies on (LPS mm, (k, j, i) indexing)."""

from __future__ import annotations

import numpy as np
import pytest

from latplan.errors import GeometryMismatchError, InvalidImageError, LatplanError
from latplan.imaging import Volume


def _affine(spacing_ijk=(0.8, 0.9, 2.5), origin=(-100.0, -50.0, 20.0)) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = np.diag(spacing_ijk)
    a[:3, 3] = origin
    return a


def test_index_mm_round_trip_and_axis_order() -> None:
    """Index (k, j, i) → mm uses affine columns i, j, k; reference: hand-computed positions."""
    v = Volume(np.zeros((4, 5, 6)), _affine())
    xyz = v.index_to_mm([3, 2, 1])  # k=3, j=2, i=1
    np.testing.assert_allclose(xyz, [-100 + 0.8 * 1, -50 + 0.9 * 2, 20 + 2.5 * 3])
    np.testing.assert_allclose(v.mm_to_index(xyz), [3, 2, 1], atol=1e-12)
    np.testing.assert_allclose(v.spacing_kji_mm, [2.5, 0.9, 0.8])
    assert v.voxel_volume_ml == pytest.approx(0.8 * 0.9 * 2.5 / 1000)


@pytest.mark.parametrize(
    ("affine", "match"),
    [
        (np.diag([1.0, 0.0, 1.0, 1.0]), "spacing must be positive"),
        (np.diag([1.0, np.nan, 1.0, 1.0]), "NaN"),
        (np.eye(3), "4×4"),
    ],
)
def test_invalid_affine_named_error(affine: np.ndarray, match: str) -> None:
    with pytest.raises(InvalidImageError, match=match):
        Volume(np.zeros((2, 2, 2)), affine)


def test_invalid_array() -> None:
    with pytest.raises(InvalidImageError, match="3-D array"):
        Volume(np.zeros((2, 2)), np.eye(4))
    with pytest.raises(InvalidImageError, match="NaN or infinite voxel"):
        Volume(np.full((2, 2, 2), np.nan), np.eye(4))
    with pytest.raises(LatplanError):
        Volume(np.zeros((0, 2, 2)), np.eye(4))


def test_geometry_difference_names_what_differs() -> None:
    a = Volume(np.zeros((4, 5, 6)), _affine())
    flipped = _affine()
    flipped[:3, 1] *= -1  # RAS-like flip of the j axis
    with pytest.raises(GeometryMismatchError, match="direction differs"):
        a.require_same_geometry(Volume(np.zeros((4, 5, 6)), flipped), "image and label map")
    with pytest.raises(GeometryMismatchError, match="shape differs"):
        a.require_same_geometry(Volume(np.zeros((4, 5, 7)), _affine()))
    with pytest.raises(GeometryMismatchError, match="origin differs by 2"):
        a.require_same_geometry(Volume(np.zeros((4, 5, 6)), _affine(origin=(-98.0, -50.0, 20.0))))
    with pytest.raises(GeometryMismatchError, match="spacing differs"):
        a.require_same_geometry(Volume(np.zeros((4, 5, 6)), _affine(spacing_ijk=(0.8, 0.9, 3.0))))


def test_crop_keeps_physical_positions() -> None:
    arr = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    v = Volume(arr, _affine())
    c = v.crop((1, 2, 3), (3, 5, 6))
    assert c.array[0, 0, 0] == arr[1, 2, 3]
    np.testing.assert_allclose(c.index_to_mm([0, 0, 0]), v.index_to_mm([1, 2, 3]))
