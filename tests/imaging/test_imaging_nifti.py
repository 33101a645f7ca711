"""NIfTI/NRRD reading and writing: round trip and an independent check of the RAS↔LPS conversion."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from latplan.errors import InvalidImageError, InvalidInputError
from latplan.imaging import Volume
from latplan.imaging.nifti import read_image, read_labels, write_nifti


def _oblique(dtype=np.float32) -> Volume:
    rng = np.random.default_rng(2)
    theta = 0.4
    rot = np.array([[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.8, 1.2, 3.0])
    aff[:3, 3] = [12.0, -40.0, 100.0]
    return Volume(rng.normal(size=(5, 6, 7)).astype(dtype), aff)


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii"])
def test_nifti_round_trip(tmp_path, name):
    """write_nifti then read_image: same array and affine (round-trip habit; affine tol 1e-4 mm)."""
    vol = _oblique()
    back = read_image(write_nifti(vol, tmp_path / name))
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)


def test_nifti_affine_against_nibabel(tmp_path):
    """Independent reference: nibabel reads our file in RAS with the voxel axes reversed relative to our
    (k, j, i) array; its affine must equal diag(−1, −1, 1) · our LPS affine (tol 1e-4 mm)."""
    vol = _oblique()
    path = write_nifti(vol, tmp_path / "v.nii.gz")
    img = nib.load(str(path))
    ras = img.affine
    np.testing.assert_allclose(ras, np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), vol.array)


def test_labels_from_float_map_and_rejects_fractions(tmp_path):
    """A float label map of whole numbers reads as int32; fractional values are refused with a message."""
    vol = _oblique()
    write_nifti(vol.with_array(np.round(np.abs(vol.array) * 3).astype(np.float32)), tmp_path / "l.nii.gz")
    assert read_labels(tmp_path / "l.nii.gz").array.dtype == np.int32
    write_nifti(vol, tmp_path / "f.nii.gz")
    with pytest.raises(InvalidImageError, match=r"non-integer values"):
        read_labels(tmp_path / "f.nii.gz")


def test_bad_paths(tmp_path):
    """Missing file, a lone .dcm file and an unreadable file each give an actionable message."""
    with pytest.raises(InvalidInputError, match=r"does not exist"):
        read_image(tmp_path / "nope.nii.gz")
    (tmp_path / "x.dcm").write_bytes(b"0")
    with pytest.raises(InvalidInputError, match=r"pass the folder holding the whole series"):
        read_image(tmp_path / "x.dcm")
    (tmp_path / "x.nrrd").write_text("not an image")
    with pytest.raises(InvalidImageError, match=r"cannot read image"):
        read_image(tmp_path / "x.nrrd")
    with pytest.raises(InvalidInputError, match=r".nii or .nii.gz"):
        write_nifti(_oblique(), tmp_path / "x.nrrd")
