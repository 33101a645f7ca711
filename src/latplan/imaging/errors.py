"""Named imaging errors (subclasses of the shared `latplan.errors` bases).

Why here and not in ``latplan.errors``: the shared module is owned by the lead; these are
specific to the DICOM reader and all derive from :class:`~latplan.errors.DicomError`, so a
caller catching ``DicomError`` (or ``LatplanError``) gets them all.
"""

from __future__ import annotations

from latplan.errors import DicomError

__all__ = [
    "DuplicateSliceError",
    "GantryTiltError",
    "MissingSliceError",
    "MixedSeriesError",
    "NonOrthonormalOrientationError",
    "NonUniformSpacingError",
    "NotDicomSeriesError",
    "TruncatedDicomError",
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
