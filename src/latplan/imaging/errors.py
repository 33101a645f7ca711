"""Named imaging errors (subclasses of the shared `latplan.errors` bases).

Why here and not in ``latplan.errors``: the shared module is owned by the lead; these are
specific to the imaging readers and writers and each derives from the matching shared base
(:class:`~latplan.errors.DicomError`, :class:`~latplan.errors.InvalidImageError`,
:class:`~latplan.errors.CaseFolderError`...), so a caller catching the base (or
``LatplanError``) gets them all. docs/imaging.md lists which input raises which error.
"""

from __future__ import annotations

from latplan.errors import (
    CaseFolderError,
    DicomError,
    EmptyStructureError,
    InvalidImageError,
    InvalidInputError,
)

__all__ = [
    "ContoursOutsideImageError",
    "DuplicateSliceError",
    "DuplicateYamlKeyError",
    "EmptyLabelMapError",
    "GantryTiltError",
    "ImageTooLargeError",
    "InvalidSpacingError",
    "LesionOutsideOrganError",
    "LesionSizeError",
    "MissingSliceError",
    "MixedSeriesError",
    "NonFiniteVoxelError",
    "NonOrthonormalOrientationError",
    "NonUniformSpacingError",
    "NotDicomSeriesError",
    "NotLatplanOutputError",
    "OutputNotWritableError",
    "PathOutsideCaseError",
    "TruncatedDicomError",
    "TruncatedImageError",
    "YamlEncodingError",
    "YamlLimitError",
]


class TruncatedDicomError(DicomError):
    """A DICOM file cannot be parsed or its pixel data is shorter than its header says."""


class MixedSeriesError(DicomError):
    """A folder holds several series (or one series with several orientations/matrix sizes)."""


class MissingSliceError(DicomError):
    """The gap between two neighbouring slices exceeds 1.5× the median slice spacing."""


class NonUniformSpacingError(DicomError):
    """Slice spacing varies by more than 1 % (but no slice looks missing)."""


class DuplicateSliceError(DicomError):
    """Two slices share one position along the slice normal."""


class GantryTiltError(DicomError):
    """Slice positions do not advance along the slice normal (tilted gantry / sheared stack)."""


class NonOrthonormalOrientationError(DicomError):
    """ImageOrientationPatient row/column cosines are not unit length or not perpendicular."""


class NotDicomSeriesError(DicomError):
    """A folder or file holds no usable DICOM image (or the wrong kind of DICOM object)."""


# --- images (NIfTI / NRRD / any format) ---------------------------------------------------------
class TruncatedImageError(InvalidImageError):
    """An image file holds fewer voxel bytes than its header declares (cut copy, truncated .gz)."""


class InvalidSpacingError(InvalidImageError):
    """The raw header gives a zero, negative or non-finite voxel spacing."""


class NonFiniteVoxelError(InvalidImageError):
    """The image holds NaN or infinite voxel values."""


class ImageTooLargeError(InvalidImageError):
    """Loading the image would need more memory than the configured limit (LATPLAN_MAX_IMAGE_GB)."""


class LesionSizeError(InvalidInputError):
    """A synthetic lesion's requested size is outside the accepted range (not positive, too large)."""


class LesionOutsideOrganError(InvalidInputError):
    """A synthetic lesion would lie less than 95 % inside its target organ (or segment)."""


class EmptyLabelMapError(EmptyStructureError):
    """A label map holds no labelled voxel at all (all zero)."""


class ContoursOutsideImageError(DicomError):
    """RTSTRUCT contours lie (wholly or partly) outside the image they are meant for."""


# --- YAML files ---------------------------------------------------------------------------------
class DuplicateYamlKeyError(CaseFolderError):
    """A YAML mapping lists one key twice (the later value would silently win)."""


class YamlLimitError(CaseFolderError):
    """A YAML file is too large or expands too far through aliases (e.g. "billion laughs")."""


class YamlEncodingError(CaseFolderError):
    """A YAML file is not UTF-8 text."""


# --- paths and output folders -------------------------------------------------------------------
class PathOutsideCaseError(CaseFolderError):
    """case.yaml names a file outside the case folder (absolute path, ``..``, or a symlink leaving it)."""


class OutputNotWritableError(InvalidInputError):
    """The output folder cannot be created or written."""


class NotLatplanOutputError(InvalidInputError):
    """The output folder exists, is not empty and was not written by latplan (pass --overwrite)."""
