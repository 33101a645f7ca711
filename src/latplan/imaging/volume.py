"""`Volume`: a numpy array that always travels with its 4×4 affine (DICOM patient LPS, mm).

Convention (docs/architecture.md, "Conventions"; DICOM patient coordinates, LPS): arrays are indexed ``(k, j, i)`` = (slice, row, column);
the affine maps the homogeneous *index* vector ``(i, j, k, 1)`` to LPS millimetres.
So ``affine[:3, 0]`` is the step (mm) along the last array axis (i), ``affine[:3, 2]``
along the first (k). This is the ITK/DICOM ordering of columns, with numpy's C order.

Why a frozen dataclass: a constructor never leaves an invalid object (highdicom habit);
shape, spacing and finiteness are checked once, then trusted downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from latplan.errors import GeometryMismatchError, InvalidImageError

__all__ = ["Volume"]


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D array with its index→LPS-mm affine.

    Parameters
    ----------
    array:
        3-D array indexed (k, j, i).
    affine:
        4×4 matrix mapping (i, j, k, 1) to (x, y, z, 1) in LPS mm.
    """

    array: np.ndarray
    affine: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise InvalidImageError(
                f"a Volume needs a 3-D array (k, j, i); got {arr.ndim}-D with shape {arr.shape}. "
                "Stack 2-D slices along the first axis or squeeze extra axes."
            )
        if min(arr.shape) < 1:
            raise InvalidImageError(f"a Volume needs at least one voxel per axis; got shape {arr.shape}.")
        aff = np.asarray(self.affine, dtype=float)
        if aff.shape != (4, 4):
            raise InvalidImageError(f"the affine must be 4×4; got shape {aff.shape}.")
        if not np.all(np.isfinite(aff)):
            raise InvalidImageError("the affine holds NaN or infinite values: check the image header spacing/origin.")
        if not np.allclose(aff[3], [0, 0, 0, 1]):
            raise InvalidImageError(f"the affine's last row must be [0, 0, 0, 1]; got {aff[3].tolist()}.")
        spacing = np.linalg.norm(aff[:3, :3], axis=0)
        if np.any(spacing <= 1e-9):
            raise InvalidImageError(
                f"voxel spacing must be positive; got {spacing.tolist()} mm (i, j, k). "
                "Fix PixelSpacing/slice positions or the NIfTI pixdim."
            )
        if abs(np.linalg.det(aff[:3, :3])) < 1e-12:
            raise InvalidImageError("the affine's direction matrix is singular: axes are not independent.")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise InvalidImageError("the image holds NaN or infinite voxel values; mask or replace them before loading.")
        aff.setflags(write=False)
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "affine", aff)

    # --- geometry -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (k, j, i)."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel spacing in mm, in (i, j, k) order (columns of the affine)."""
        out: np.ndarray = np.linalg.norm(self.affine[:3, :3], axis=0)
        return out

    @property
    def spacing_kji_mm(self) -> np.ndarray:
        """Voxel spacing in mm in array-axis order (k, j, i): use with numpy/scipy on ``array``."""
        return self.spacing_mm[::-1].copy()

    @property
    def direction(self) -> np.ndarray:
        """3×3 unit direction cosines (columns = i, j, k axes in LPS)."""
        out: np.ndarray = self.affine[:3, :3] / self.spacing_mm
        return out

    @property
    def origin_mm(self) -> np.ndarray:
        """LPS position (mm) of the centre of voxel (i, j, k) = (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in ml (1 ml = 1000 mm³)."""
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    def index_to_mm(self, kji: np.ndarray) -> np.ndarray:
        """Convert array indices (..., 3) in (k, j, i) order to LPS mm (..., 3)."""
        kji = np.asarray(kji, dtype=float)
        ijk = kji[..., ::-1]
        out: np.ndarray = ijk @ self.affine[:3, :3].T + self.affine[:3, 3]
        return out

    def mm_to_index(self, xyz_mm: np.ndarray) -> np.ndarray:
        """Convert LPS mm points (..., 3) to fractional array indices (..., 3) in (k, j, i) order."""
        xyz = np.asarray(xyz_mm, dtype=float)
        inv = np.linalg.inv(self.affine)
        ijk = xyz @ inv[:3, :3].T + inv[:3, 3]
        return ijk[..., ::-1]

    def grid_mm(self) -> np.ndarray:
        """LPS coordinates (mm) of every voxel centre, shape (k, j, i, 3). Memory: 24 B/voxel."""
        k, j, i = np.meshgrid(*(np.arange(n) for n in self.shape), indexing="ij")
        return self.index_to_mm(np.stack([k, j, i], axis=-1))

    def same_geometry(self, other: Volume, tol_mm: float = 1e-3) -> bool:
        """True when shape and affine agree within ``tol_mm`` (mm) / 1e-4 (direction)."""
        return self.geometry_difference(other, tol_mm) is None

    def geometry_difference(self, other: Volume, tol_mm: float = 1e-3) -> str | None:
        """Describe how the grid of ``other`` differs from this one, or None when they match."""
        if self.shape != other.shape:
            return f"shape differs: {self.shape} vs {other.shape} (k, j, i)"
        ds = np.abs(self.spacing_mm - other.spacing_mm)
        if np.any(ds > tol_mm):
            return (
                f"spacing differs by up to {ds.max():.4g} mm: {np.round(self.spacing_mm, 4).tolist()} vs "
                f"{np.round(other.spacing_mm, 4).tolist()} mm (i, j, k)"
            )
        dd = np.abs(self.direction - other.direction)
        if np.any(dd > 1e-4):
            return (
                f"direction differs by up to {dd.max():.4g}: {np.round(self.direction, 4).tolist()} vs "
                f"{np.round(other.direction, 4).tolist()} (an axis may be flipped, e.g. RAS vs LPS)"
            )
        do = np.linalg.norm(self.origin_mm - other.origin_mm)
        if do > tol_mm:
            return (
                f"origin differs by {do:.4g} mm: {np.round(self.origin_mm, 3).tolist()} vs "
                f"{np.round(other.origin_mm, 3).tolist()} mm (LPS)"
            )
        return None

    def require_same_geometry(self, other: Volume, what: str = "the two volumes", tol_mm: float = 1e-3) -> None:
        """Raise :class:`GeometryMismatchError` naming what differs."""
        diff = self.geometry_difference(other, tol_mm)
        if diff is not None:
            raise GeometryMismatchError(
                f"{what} do not share geometry: {diff}. Resample one onto the other's grid "
                "(latplan.imaging.resample_labels_to) or export both from the same series."
            )

    def with_array(self, array: np.ndarray) -> Volume:
        """A Volume on the same grid holding ``array`` (same shape required)."""
        array = np.asarray(array)
        if array.shape != self.shape:
            raise GeometryMismatchError(
                f"new array shape {array.shape} does not match the grid {self.shape}; it cannot share this affine."
            )
        return Volume(array, self.affine)

    def crop(self, lo_kji: tuple[int, int, int], hi_kji: tuple[int, int, int]) -> Volume:
        """Sub-volume [lo, hi) in index space with the affine shifted accordingly."""
        lo = np.clip(np.asarray(lo_kji, int), 0, np.asarray(self.shape))
        hi = np.clip(np.asarray(hi_kji, int), 0, np.asarray(self.shape))
        if np.any(hi <= lo):
            raise InvalidImageError(f"empty crop window {lo.tolist()}..{hi.tolist()} for shape {self.shape}.")
        arr = self.array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        aff = np.array(self.affine)
        aff[:3, 3] = self.index_to_mm(lo.astype(float))
        return Volume(arr, aff)
