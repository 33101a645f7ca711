"""Resampling by physical position (SimpleITK): labels nearest-neighbour, images linear.

Why SimpleITK: its resampler maps every output voxel centre through both affines (LPS mm),
so flipped or permuted axes, different spacing and oblique directions are handled alike.
Both volumes must share a frame of reference (same patient coordinate system); a `Volume`
does not carry the FrameOfReferenceUID, so the caller vouches for that.
"""

from __future__ import annotations

import numpy as np

from latplan.imaging.nifti import volume_from_sitk, volume_to_sitk
from latplan.imaging.volume import Volume

__all__ = ["resample_image_to", "resample_labels_to", "same_physical_grid"]


def _resample(moving: Volume, reference: Volume, interpolator: int, default: float, pixel_id: int | None) -> Volume:
    import SimpleITK as sitk

    mov = volume_to_sitk(moving)
    ref = sitk.Image([int(n) for n in reference.shape[::-1]], sitk.sitkUInt8)
    ref.SetSpacing([float(s) for s in reference.spacing_mm])
    ref.SetDirection([float(x) for x in reference.direction.reshape(-1)])
    ref.SetOrigin([float(x) for x in reference.origin_mm])
    out = sitk.Resample(
        mov, ref, sitk.Transform(), interpolator, float(default), pixel_id if pixel_id is not None else mov.GetPixelID()
    )
    vol = volume_from_sitk(out, "resampled volume")
    # keep the reference's exact affine (avoid float drift through ITK's direction storage)
    return Volume(vol.array, reference.affine)


def resample_labels_to(labels: Volume, reference: Volume) -> Volume:
    """Label map resampled onto ``reference``'s grid, nearest neighbour by LPS position; outside = 0."""
    import SimpleITK as sitk

    arr = labels.array
    src = labels if arr.dtype != bool else labels.with_array(arr.astype(np.uint8))
    out = _resample(src, reference, sitk.sitkNearestNeighbor, 0, None)
    return out.with_array(out.array.astype(arr.dtype if arr.dtype != bool else bool))


def resample_image_to(image: Volume, reference: Volume, default_value: float = -1024.0) -> Volume:
    """Image resampled onto ``reference``'s grid, trilinear, float32; outside = ``default_value``
    (−1024 HU = air for CT; pass 0 for MR)."""
    import SimpleITK as sitk

    src = image.with_array(image.array.astype(np.float32))
    return _resample(src, reference, sitk.sitkLinear, default_value, sitk.sitkFloat32)


def same_physical_grid(a: Volume, b: Volume, tol_mm: float = 1e-2) -> bool:
    """True when both grids hold the same set of voxel centres (maybe stored with permuted/flipped axes).

    Tested on the 8 corners: the set of corner positions and the voxel volume must agree, and the
    axis steps must match up to sign and order.
    """
    if sorted(a.shape) != sorted(b.shape):
        return False
    if abs(a.voxel_volume_ml - b.voxel_volume_ml) > 1e-6 * max(a.voxel_volume_ml, 1e-12):
        return False

    def corners(v: Volume) -> np.ndarray:
        hi = np.asarray(v.shape) - 1
        c = np.array([[x, y, z] for x in (0, hi[0]) for y in (0, hi[1]) for z in (0, hi[2])], dtype=float)
        return v.index_to_mm(c)

    ca, cb = corners(a), corners(b)
    d = np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=-1)
    if not np.all(d.min(axis=1) <= tol_mm):
        return False
    steps_a = sorted(tuple(np.round(np.abs(col), 4)) for col in a.affine[:3, :3].T)
    steps_b = sorted(tuple(np.round(np.abs(col), 4)) for col in b.affine[:3, :3].T)
    return steps_a == steps_b
