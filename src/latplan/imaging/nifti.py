"""NIfTI / NRRD / MHA images and label maps (SimpleITK), with input-integrity checks.

Every reader returns a :class:`~latplan.imaging.volume.Volume` (array indexed (k, j, i),
affine (i, j, k, 1) → LPS mm). Geometry comes from the file's own header (ITK
direction/origin/spacing). Before any voxel is read, :mod:`latplan.imaging.integrity` checks
the raw header spacing, the file size against the header, and the memory the array needs;
after reading, NaN/Inf voxels are refused. Each problem is a named
:class:`~latplan.errors.LatplanError` subclass whose message names the file and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from latplan.errors import InvalidImageError, InvalidInputError
from latplan.imaging.dicom_series import read_dicom_series
from latplan.imaging.errors import EmptyLabelMapError, InvalidSpacingError, NotDicomSeriesError
from latplan.imaging.integrity import check_header_before_reading, require_file, require_finite_voxels
from latplan.imaging.volume import Volume

__all__ = ["read_image", "read_labels", "volume_from_sitk", "volume_to_sitk", "write_nifti"]


def volume_from_sitk(image: Any, source: str = "image") -> Volume:
    """Convert a SimpleITK image (LPS, ITK index order i, j, k) to a `Volume` (array k, j, i)."""
    import SimpleITK as sitk

    assert isinstance(image, sitk.Image)
    if image.GetDimension() != 3:
        raise InvalidImageError(
            f"{source}: expected a 3-D image, got {image.GetDimension()}-D (size {image.GetSize()}). "
            "Split 4-D series or stack 2-D slices first."
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidImageError(
            f"{source}: expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()} components "
            "(RGB or vector image); convert to a scalar image."
        )
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InvalidSpacingError(
            f"{source}: voxel spacing {spacing.tolist()} mm (i, j, k) is not positive and finite. "
            "Fix the header (NIfTI pixdim / NRRD space directions)."
        )
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction @ np.diag(spacing)
    aff[:3, 3] = image.GetOrigin()
    arr = sitk.GetArrayFromImage(image)
    require_finite_voxels(arr, source)
    try:
        return Volume(arr, aff)
    except InvalidImageError as exc:
        raise InvalidImageError(f"{source}: {exc}") from None


def volume_to_sitk(volume: Volume) -> Any:
    """Convert a `Volume` to a SimpleITK image (bool → uint8, int64 → int32 when it fits)."""
    import SimpleITK as sitk

    arr = volume.array
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.int64 or arr.dtype == np.uint64:
        if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
            raise InvalidImageError("label values exceed the int32 range; renumber the labels.")
        arr = arr.astype(np.int32)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing([float(s) for s in volume.spacing_mm])
    img.SetDirection([float(x) for x in volume.direction.reshape(-1)])
    img.SetOrigin([float(x) for x in volume.origin_mm])
    return img


def read_image(path: str | os.PathLike[str], max_gb: float | None = None) -> Volume:
    """Read a 3-D image: NIfTI/NRRD/MHA file (SimpleITK) or a DICOM series folder (pydicom).

    CT images keep their stored values (HU for NIfTI exports; DICOM is rescaled to HU float32).
    ``max_gb`` overrides the memory limit (default ``LATPLAN_MAX_IMAGE_GB``, see
    :mod:`latplan.imaging.integrity`), which is checked from the header before any voxel is read.
    """
    p = Path(path)
    require_file(p, "image")
    if p.is_dir():
        return read_dicom_series(p, max_gb=max_gb)
    if p.suffix.lower() == ".dcm":
        raise NotDicomSeriesError(
            f"{p} is a single DICOM file; pass the folder holding the whole series (read_dicom_series)."
        )
    import SimpleITK as sitk

    check_header_before_reading(p, max_gb)
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        if "spacing" in str(exc).lower():
            raise InvalidSpacingError(
                f"image {p}: the header gives a zero, negative or NaN voxel spacing ({first.strip()}). "
                "Fix the NIfTI pixdim / NRRD space directions; spacing must be positive mm."
            ) from None
        raise InvalidImageError(
            f"cannot read image {p}: {first}. Supported: .nii, .nii.gz, .nrrd, .mha/.mhd, or a DICOM folder."
        ) from None
    return volume_from_sitk(img, str(p))


def read_labels(path: str | os.PathLike[str], max_gb: float | None = None, allow_empty: bool = False) -> Volume:
    """Read an integer label map (NIfTI/NRRD); float maps holding whole numbers are accepted.

    An all-zero map is an :class:`~latplan.imaging.errors.EmptyLabelMapError` unless ``allow_empty``.
    """
    vol = read_image(path, max_gb)
    arr = vol.array
    if arr.dtype.kind == "f":
        if not np.allclose(arr, np.round(arr)):
            raise InvalidImageError(
                f"label map {path} holds non-integer values (e.g. {arr[arr != np.round(arr)][:3].tolist()}); "
                "a label map must hold integer label values. Is this an image rather than labels?"
            )
        arr = np.round(arr).astype(np.int32)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.int32)
    else:
        arr = arr.astype(np.int32)
    if arr.size and arr.min() < 0:
        raise InvalidImageError(f"label map {path} holds negative values ({int(arr.min())}); labels must be ≥ 0.")
    if not allow_empty and not arr.any():
        raise EmptyLabelMapError(
            f"label map {path} is empty (every voxel is 0): no structure is segmented. Export the segmentation "
            "again (or check that the right file was copied)."
        )
    return vol.with_array(arr)


def write_nifti(volume: Volume, path: str | os.PathLike[str]) -> Path:
    """Write a `Volume` as NIfTI (.nii or .nii.gz) with its LPS affine (ITK converts to RAS on disk)."""
    import SimpleITK as sitk

    p = Path(path)
    if not (p.name.endswith(".nii") or p.name.endswith(".nii.gz")):
        raise InvalidInputError(f"write_nifti needs a .nii or .nii.gz file name; got {p.name}.")
    d = volume.direction
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
        raise InvalidImageError("NIfTI cannot store a non-orthonormal direction matrix; resample the volume first.")
    sitk.WriteImage(volume_to_sitk(volume), str(p), useCompression=p.name.endswith(".gz"))
    return p
